"""Agent keys: creation, hashing, constant-time authentication, revocation, config policies, CLI."""

from __future__ import annotations

import io
import json
import os
import stat
import textwrap

import pytest

import app.agents as agents_mod
from app.agents import (
    ANONYMOUS,
    MASTER,
    AgentExists,
    AgentIdentity,
    AgentPolicy,
    AgentRegistry,
    InvalidAgentName,
    UnknownAgent,
    hash_key,
    parse_agent_policies,
)
from app.config import parse_config
from app.errors import ConfigError, Forbidden, TiergateError

KEY_SHAPE = r"tg-{name}-[0-9a-f]{{64}}"


@pytest.fixture
def registry(tmp_path) -> AgentRegistry:
    return AgentRegistry(tmp_path / "data" / "agents.json")


def test_add_returns_key_once_and_stores_only_a_hash(registry: AgentRegistry) -> None:
    key = registry.add("claude-code")
    assert key.startswith("tg-claude-code-") and len(key) == len("tg-claude-code-") + 64
    int(key[-64:], 16)
    raw = registry.path.read_text()
    assert key not in raw and key[-64:] not in raw and key[-16:] not in raw
    data = json.loads(raw)
    assert data["agents"]["claude-code"]["hash"] == hash_key(key).hex()
    if os.name == "posix":
        assert stat.S_IMODE(registry.path.stat().st_mode) == 0o600


def test_two_keys_for_two_agents_differ_and_authenticate_to_their_agent(registry: AgentRegistry) -> None:
    k1, k2 = registry.add("aider"), registry.add("codex")
    assert k1 != k2
    assert registry.authenticate(k1) == AgentIdentity(name="aider")
    assert registry.authenticate(k2).name == "codex"


@pytest.mark.parametrize("mangle", [
    lambda k: k[:-1] + ("0" if k[-1] != "0" else "1"),  # one character off
    lambda k: k + "0",
    lambda k: k[:-1],
    lambda k: k.upper(),
    lambda k: " " + k,
    lambda k: "",
    lambda k: "tg-master-" + k[-64:],
])
def test_near_miss_keys_are_refused(registry: AgentRegistry, mangle) -> None:
    key = registry.add("aider")
    assert registry.authenticate(mangle(key)) is None


def test_revoked_key_stops_working_and_hash_is_dropped(registry: AgentRegistry) -> None:
    key = registry.add("aider")
    registry.revoke("aider")
    assert registry.authenticate(key) is None
    [record] = registry.list()
    assert record.name == "aider" and not record.active and record.revoked is not None
    assert json.loads(registry.path.read_text())["agents"]["aider"]["hash"] is None
    with pytest.raises(UnknownAgent):
        registry.revoke("aider")
    with pytest.raises(UnknownAgent):
        registry.revoke("nobody")
    # adding again after revocation gives a fresh key; the old one stays dead
    new = registry.add("aider")
    assert registry.authenticate(new).name == "aider" and registry.authenticate(key) is None


def test_existing_agent_needs_replace(registry: AgentRegistry) -> None:
    old = registry.add("aider")
    with pytest.raises(AgentExists):
        registry.add("aider")
    assert registry.authenticate(old).name == "aider"
    new = registry.add("aider", replace=True)
    assert registry.authenticate(old) is None and registry.authenticate(new).name == "aider"


@pytest.mark.parametrize("name", ["master", "MASTER", "anonymous", "tiergate", "", "-x", "a b", "a/b", "x" * 65, "ü"])
def test_invalid_or_reserved_names(registry: AgentRegistry, name: str) -> None:
    with pytest.raises(InvalidAgentName):
        registry.add(name)


def test_changes_by_another_process_take_effect_without_restart(tmp_path) -> None:
    path = tmp_path / "agents.json"
    server_side = AgentRegistry(path)
    assert server_side.authenticate("tg-x-" + "0" * 64) is None  # loads the (missing) file
    cli_side = AgentRegistry(path)
    key = cli_side.add("aider")
    # The request path looks at the file at most once per `recheck_seconds`: not yet…
    assert server_side.authenticate(key) is None
    server_side._checked_at -= server_side.recheck_seconds  # …one interval later it does
    assert server_side.authenticate(key).name == "aider"
    AgentRegistry(path).revoke("aider")
    server_side._checked_at -= server_side.recheck_seconds
    assert server_side.authenticate(key) is None


def test_compare_digest_runs_against_every_agent_without_early_exit(registry: AgentRegistry, monkeypatch) -> None:
    keys = [registry.add(f"agent{i}") for i in range(5)]
    calls: list[int] = []
    real = agents_mod.hmac.compare_digest

    def counting(a, b):
        calls.append(1)
        return real(a, b)

    monkeypatch.setattr(agents_mod.hmac, "compare_digest", counting)
    assert registry.authenticate(keys[0]).name == "agent0"
    assert len(calls) == 5
    calls.clear()
    assert registry.authenticate("tg-nobody-" + "f" * 64) is None
    assert len(calls) == 5


def test_corrupt_file_is_an_error_at_start_and_last_good_set_is_kept_later(tmp_path) -> None:
    path = tmp_path / "agents.json"
    good = AgentRegistry(path)
    key = good.add("aider")
    path.write_text("{broken")
    assert good.authenticate(key).name == "aider"  # keeps the keys it had
    with pytest.raises(TiergateError) as info:
        AgentRegistry(path).list()
    assert info.value.title == "Agent keys unreadable"
    assert str(tmp_path) not in info.value.message


def test_master_and_anonymous_identities() -> None:
    assert MASTER.is_master and MASTER.name == "master" and MASTER.may_use_tier("anything")
    assert not ANONYMOUS.is_master and ANONYMOUS.name == "anonymous"


CONFIG = textwrap.dedent("""\
    model_list:
      - model_name: coder
        litellm_params:
          model: ollama_chat/qwen3:8b
      - model_name: orchestrator
        litellm_params:
          model: ollama_chat/qwen3:32b
    tiergate_settings:
      agents:
        aider:
          allowed_tiers: [coder]
          privacy: local
          budget: {day: 2.5}
        codex: {}
    """)


def test_policies_from_config_reach_the_identity(registry: AgentRegistry) -> None:
    policies = parse_agent_policies(parse_config(CONFIG, "config.yaml").section("agents"))
    assert policies == {"aider": AgentPolicy(allowed_tiers=("coder",), privacy="local", budget={"day": 2.5}),
                        "codex": AgentPolicy()}
    registry.set_policies(policies)
    aider = registry.authenticate(registry.add("aider"))
    assert aider == AgentIdentity(name="aider", allowed_tiers=("coder",), privacy="local", budget={"day": 2.5})
    assert aider.may_use_tier("coder") and not aider.may_use_tier("orchestrator")
    with pytest.raises(Forbidden) as info:
        aider.check_tier("orchestrator")
    assert "orchestrator" in info.value.message and "coder" in info.value.message
    codex = registry.authenticate(registry.add("codex"))
    assert codex.allowed_tiers is None and codex.may_use_tier("orchestrator")


@pytest.mark.parametrize("snippet,line,fragment", [
    ("aider: {privacy: cloud}", 10, "aider.privacy: must be 'local' or 'any'"),
    ("aider:\n      allowed_tiers: 3", 11, "aider.allowed_tiers: expected a list of tier names"),
    ("aider:\n      privacy: local\n      budgte: 3", 12, "unknown setting 'budgte'"),
    ("aider: [coder]", 10, "aider: expected a mapping"),
    ("codex: {}\n    master: {}", 11, "master: not a valid agent name"),
    ("aider:\n      budget: true", 11, "aider.budget: expected a number or a mapping"),
])
def test_policy_errors_carry_file_and_line(snippet: str, line: int, fragment: str) -> None:
    text = CONFIG.split("    aider:")[0].replace("  agents:\n", "  agents:\n    " + snippet + "\n")
    section = parse_config(text, "config.yaml").section("agents")
    with pytest.raises(ConfigError) as info:
        parse_agent_policies(section)
    assert fragment in info.value.message
    assert (info.value.path, info.value.line) == ("config.yaml", line)


# ------------------------------------------------------------------------------------------- CLI
def _cli(argv: list[str]) -> tuple[int, str, str]:
    from app.cli import build_parser

    args = build_parser().parse_args(argv)
    out, err = io.StringIO(), io.StringIO()
    kwargs = {"out": out}
    if args.func.__name__ == "run_add":
        kwargs["err"] = err
    try:
        code = args.func(args, **kwargs)
    except TiergateError as e:
        return 2, out.getvalue(), f"{e.title}: {e.message}"
    return code, out.getvalue(), err.getvalue()


def test_agents_cli_add_list_revoke(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TIERGATE_DATA_DIR", str(tmp_path / "data"))
    cfg = tmp_path / "config.yaml"
    cfg.write_text(CONFIG)
    code, out, err = _cli(["--config", str(cfg), "agents", "add", "aider"])
    assert code == 0
    key = out.strip()
    assert key.startswith("tg-aider-") and "shown only once" in err
    assert AgentRegistry(tmp_path / "data" / "agents.json").authenticate(key).name == "aider"

    code, out, _ = _cli(["--config", str(cfg), "agents", "list"])
    assert code == 0
    assert "aider" in out and "active" in out and "tiers: coder; privacy: local" in out
    assert "Configured but never added: codex" in out
    assert key not in out

    code, _, err = _cli(["--config", str(cfg), "agents", "add", "aider"])
    assert code == 2 and "already has a key" in err
    code, out, _ = _cli(["--config", str(cfg), "agents", "revoke", "aider"])
    assert code == 0 and "Revoked" in out
    _, out, _ = _cli(["--config", str(cfg), "agents", "list"])
    assert "revoked" in out
    assert AgentRegistry(tmp_path / "data" / "agents.json").authenticate(key) is None
