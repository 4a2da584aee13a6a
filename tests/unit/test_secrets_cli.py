"""`tiergate keys …` through the real argument parser, and the planted-secrets redaction check."""

from __future__ import annotations

import io
import logging
import textwrap
from pathlib import Path

import pytest

from app.cli import build_parser
from app.config import load_config
from app.errors import TiergateError
from app.secrets.store import SERVICE, SecretStore
from tests.keyring_fixtures import (  # noqa: F401
    MemoryKeyring,
    PlantedSecrets,
    memory_keyring,
    no_keyring,
    secrets_test_plant,
)

LITERAL = "sk-literal-key-in-config-1234567890"
CONFIG = textwrap.dedent(f"""\
    # Tiergate config (this comment mentions os.environ/OPENAI_API_KEY and must stay as it is)
    model_list:
      - model_name: coder
        litellm_params:
          model: openai/gpt-4o-mini
          api_key: os.environ/OPENAI_API_KEY   # from my shell
      - model_name: orchestrator
        litellm_params:
          model: anthropic/claude-sonnet-4-5
          api_key: "os.environ/ANTHROPIC_API_KEY"
      - model_name: helper
        litellm_params:
          model: openai/llama
          api_base: os.environ/LOCAL_BASE
          api_key: 'keychain/LOCAL_KEY'
      - model_name: helper
        litellm_params:
          model: openai/other
          api_key: {LITERAL}
      - model_name: coder
        litellm_params:
          model: openai/gpt-4.1-mini
          api_key: os.environ/MISSING_KEY
    """)


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("TIERGATE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LOCAL_BASE", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "openai-env-value-0123456789")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "anthropic-env-value-0123456789")
    monkeypatch.delenv("MISSING_KEY", raising=False)
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG)
    return path


def run(argv: list[str], stdin: str | None = None) -> tuple[int, str, str]:
    """Like `tiergate ARGV`: returns (exit code, stdout, stderr)."""
    args = build_parser().parse_args(argv)
    out, err = io.StringIO(), io.StringIO()
    kwargs: dict = {"out": out}
    if args.func.__name__ == "run_master":
        kwargs["err"] = err
    if args.func.__name__ == "run_set":
        kwargs["stdin"] = io.StringIO(stdin or "")
    try:
        code = args.func(args, **kwargs)
    except TiergateError as e:
        return 2, out.getvalue(), f"{e.title}: {e.message}"
    return code, out.getvalue(), err.getvalue()


def test_keys_set_from_stdin(env: Path, memory_keyring: MemoryKeyring) -> None:
    code, out, _ = run(["--config", str(env), "keys", "set", "LOCAL_KEY"], stdin="local-value-abcdef\n")
    assert code == 0
    assert memory_keyring.entries[(SERVICE, "LOCAL_KEY")] == "local-value-abcdef"
    assert "Stored LOCAL_KEY" in out and "Used by: helper/openai/llama" in out
    assert "local-value-abcdef" not in out
    code, out, _ = run(["--config", str(env), "keys", "set", "OPENAI_API_KEY"], stdin="x-value-123456\n")
    assert "still reads os.environ/OPENAI_API_KEY" in out


def test_keys_set_refuses_empty_and_bad_names(env: Path, memory_keyring: MemoryKeyring) -> None:
    code, _, err = run(["--config", str(env), "keys", "set", "K_NAME"], stdin="\n")
    assert code == 2 and "Empty key" in err
    code, _, err = run(["--config", str(env), "keys", "set", "bad/name"], stdin="v-123456\n")
    assert code == 2 and "Invalid key name" in err
    assert [k for k in memory_keyring.entries if k[1] != "tiergate:index"] == []


def test_keys_set_without_keychain_fails_before_reading_the_value(env: Path, no_keyring) -> None:
    args = build_parser().parse_args(["--config", str(env), "keys", "set", "K_NAME"])
    stdin = io.StringIO("never-read-value\n")
    with pytest.raises(TiergateError) as info:
        args.func(args, stdin=stdin, out=io.StringIO())
    assert info.value.title == "No keychain available"
    assert stdin.tell() == 0


def test_keys_list_shows_names_status_and_users_never_values(env: Path, memory_keyring: MemoryKeyring) -> None:
    store = SecretStore()
    store.set("LOCAL_KEY", "local-value-abcdef")
    store.set("UNUSED_KEY", "unused-value-abcdef")
    code, out, _ = run(["--config", str(env), "keys", "list"])
    assert code == 0
    rows = {line.split()[0]: line for line in out.splitlines() if line and not line.startswith(" ")}
    assert "stored" in rows["LOCAL_KEY"] and "helper/openai/llama" in rows["LOCAL_KEY"]
    assert "stored" in rows["UNUSED_KEY"] and rows["UNUSED_KEY"].rstrip().endswith("-")
    assert "not created" in rows["(master"]
    assert "OPENAI_API_KEY (set in this shell): coder/openai/gpt-4o-mini" in out
    assert "MISSING_KEY (not set in this shell)" in out
    assert "helper/openai/other (line 16)" in out  # literal key warning, by deployment, no value
    for value in ("local-value-abcdef", "unused-value-abcdef", LITERAL, "openai-env-value-0123456789"):
        assert value not in out


def test_keys_list_with_locked_keychain(env: Path, memory_keyring: MemoryKeyring) -> None:
    SecretStore().set("LOCAL_KEY", "local-value-abcdef")
    memory_keyring.locked = True
    code, out, _ = run(["--config", str(env), "keys", "list"])
    assert code == 0
    assert "Keychain locked" in out
    assert [line for line in out.splitlines() if line.startswith("LOCAL_KEY")][0].split()[1] == "locked"


def test_keys_delete(env: Path, memory_keyring: MemoryKeyring) -> None:
    SecretStore().set("LOCAL_KEY", "local-value-abcdef")
    code, out, _ = run(["--config", str(env), "keys", "delete", "LOCAL_KEY"])
    assert code == 0 and "unavailable until it is set again: helper/openai/llama" in out
    assert (SERVICE, "LOCAL_KEY") not in memory_keyring.entries
    code, out, _ = run(["--config", str(env), "keys", "delete", "LOCAL_KEY"])
    assert code == 1 and "no key named LOCAL_KEY" in out


def test_keys_master_prints_only_the_key_on_stdout(env: Path, memory_keyring: MemoryKeyring) -> None:
    code, out, err = run(["keys", "master"])
    key = out.strip()
    assert code == 0 and key.startswith("tg-master-") and out == key + "\n"
    assert "management API" in err
    assert run(["keys", "master"])[1].strip() == key
    code, out, _ = run(["keys", "master", "--rotate"])
    assert out.strip() != key and SecretStore().master_key() == out.strip()


def test_import_env_moves_keys_and_rewrites_only_the_references(env: Path, memory_keyring: MemoryKeyring) -> None:
    code, out, _ = run(["--config", str(env), "keys", "import-env"])
    assert code == 0
    entries = memory_keyring.entries
    assert entries[(SERVICE, "OPENAI_API_KEY")] == "openai-env-value-0123456789"
    assert entries[(SERVICE, "ANTHROPIC_API_KEY")] == "anthropic-env-value-0123456789"
    assert entries[(SERVICE, "HELPER_OPENAI_API_KEY")] == LITERAL
    expected = (CONFIG
                .replace("api_key: os.environ/OPENAI_API_KEY   #", "api_key: keychain/OPENAI_API_KEY   #")
                .replace('"os.environ/ANTHROPIC_API_KEY"', '"keychain/ANTHROPIC_API_KEY"')
                .replace(f"api_key: {LITERAL}", "api_key: keychain/HELPER_OPENAI_API_KEY"))
    assert env.read_text() == expected  # comments, quotes, api_base and the missing one untouched
    assert "MISSING_KEY: not set in this shell" in out
    assert "Left alone (not key fields): api_base (line 14)" in out
    assert "Rewrote 3 lines" in out
    for value in ("openai-env-value-0123456789", "anthropic-env-value-0123456789", LITERAL):
        assert value not in out
    refs = {d.id: d.api_key_ref for d in load_config(env).deployments}
    assert refs["coder/openai/gpt-4o-mini"] == "keychain/OPENAI_API_KEY"
    assert refs["helper/openai/other"] == "keychain/HELPER_OPENAI_API_KEY"
    assert refs["coder/openai/gpt-4.1-mini"] == "os.environ/MISSING_KEY"
    # running it again finds nothing left to move
    code, out, _ = run(["--config", str(env), "keys", "import-env"])
    assert "Rewrote 0 lines" in out


def test_import_env_dry_run_and_conflicts(env: Path, memory_keyring: MemoryKeyring) -> None:
    code, out, _ = run(["--config", str(env), "keys", "import-env", "--dry-run"])
    assert code == 0 and "Would rewrite 3 lines" in out
    assert env.read_text() == CONFIG
    assert [k for k in memory_keyring.entries] == []
    SecretStore().set("OPENAI_API_KEY", "a-different-value-123")
    code, out, _ = run(["--config", str(env), "keys", "import-env"])
    assert "OPENAI_API_KEY: the keychain already holds a different value" in out
    assert "os.environ/OPENAI_API_KEY   # from my shell" in env.read_text()
    assert memory_keyring.entries[(SERVICE, "OPENAI_API_KEY")] == "a-different-value-123"
    code, out, _ = run(["--config", str(env), "keys", "import-env", "--overwrite"])
    assert memory_keyring.entries[(SERVICE, "OPENAI_API_KEY")] == "openai-env-value-0123456789"
    assert "keychain/OPENAI_API_KEY   # from my shell" in env.read_text()


def test_import_env_keeps_crlf_and_mode(tmp_path, memory_keyring: MemoryKeyring, monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "openai-env-value-0123456789")
    path = tmp_path / "config.yaml"
    text = ("model_list:\r\n  - model_name: coder\r\n    litellm_params:\r\n      model: openai/gpt-4o-mini\r\n"
            "      api_key: os.environ/OPENAI_API_KEY\r\n")
    path.write_bytes(text.encode())
    path.chmod(0o640)
    code, _, _ = run(["--config", str(path), "keys", "import-env"])
    assert code == 0
    assert path.read_bytes() == text.replace("os.environ/", "keychain/").encode()
    assert path.stat().st_mode & 0o777 == 0o640


def test_planted_secrets_appear_nowhere(env: Path, secrets_test_plant: PlantedSecrets, tmp_path, caplog,
                                        monkeypatch, capsys) -> None:
    """Plant keys in the keychain and the environment, run every keys/agents command (including failing
    ones) with logging at DEBUG, and look for the values in every output, log record and file."""
    planted = secrets_test_plant
    caplog.set_level(logging.DEBUG)
    cfg = env.read_text().replace("os.environ/OPENAI_API_KEY", "os.environ/PLANTED_ENV_KEY")
    cfg = cfg.replace("keychain/LOCAL_KEY", "keychain/PLANTED_KEYCHAIN_KEY")
    env.write_text(cfg)
    outputs: dict[str, str] = {}
    for argv in (["keys", "list"], ["keys", "set", "PLANTED_KEYCHAIN_KEY"], ["keys", "import-env", "--dry-run"],
                 ["keys", "import-env"], ["keys", "list"], ["keys", "delete", "NOT_THERE"],
                 ["keys", "set", "bad name"], ["agents", "add", "bot"], ["agents", "list"]):
        stdin = planted.keychain["PLANTED_KEYCHAIN_KEY"] + "\n"
        if argv[0] == "agents":
            args = build_parser().parse_args(["--config", str(env), *argv])
            out = io.StringIO()
            try:
                args.func(args, out=out)
            except TiergateError as e:
                out.write(f"{e.title}: {e.message}")
            code, text, err = 0, out.getvalue(), ""
        else:
            code, text, err = run(["--config", str(env), *argv], stdin=stdin)
        outputs[" ".join(argv)] = text + err
    assert SecretStore().get("PLANTED_ENV_KEY") == planted.env["PLANTED_ENV_KEY"]  # import-env moved it
    captured = capsys.readouterr()
    hits = planted.find_anywhere(trees=[tmp_path], texts={**outputs, "stdout": captured.out, "stderr": captured.err},
                                 caplog=caplog)
    assert hits == []
    # the check itself can fail: a value written to a file is found
    (tmp_path / "leak.txt").write_text("oops " + planted.env["PLANTED_ENV_KEY"])
    assert planted.find_in_tree(tmp_path) == [f"{tmp_path / 'leak.txt'}: os.environ/PLANTED_ENV_KEY"]
