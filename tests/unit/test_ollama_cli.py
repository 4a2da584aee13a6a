"""`tiergate models ...` end to end: argument parsing, asyncio.run, the manager, a fake Ollama in a thread."""

import asyncio
import io
import os
import signal
import socket
import threading
import time

import orjson
import pytest

from app.cli import build_parser, main
from app.cli.models import ago, render_progress
from app.events import PullProgress
from app.ollama import SystemMemory
from app.ollama.units import GiB, MiB
from tests.fakes.ollama_server import FakeModel, FakeOllama, llama_info

WEIGHTS = "sha256:" + "7a" * 32


@pytest.fixture
def fake():
    """A FakeOllama served from its own thread, so the CLI can run its own event loop."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    fake = FakeOllama()
    fake.add_model(FakeModel("tiny:1b", layers=[(WEIGHTS, 24 * MiB), ("sha256:" + "1b" * 32, 1_429)],
                             model_info=llama_info(blocks=4)), installed=False)
    fake.pull_chunk = MiB
    asyncio.run_coroutine_threadsafe(fake.start(), loop).result(5)
    yield fake
    asyncio.run_coroutine_threadsafe(fake.close(), loop).result(5)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


@pytest.fixture(autouse=True)
def machine(monkeypatch, tmp_path):
    """A 32 GiB Linux machine with 20 GiB available; no user config; no OLLAMA_HOST."""
    memory = SystemMemory(32 * GiB, 20 * GiB, "linux", pressure="normal")
    monkeypatch.setattr("app.ollama.memory.SystemMemoryReader", lambda: (lambda: memory))
    monkeypatch.delenv("OLLAMA_HOST", raising=False)
    monkeypatch.setenv("TIERGATE_CONFIG", str(tmp_path / "none.yaml"))
    monkeypatch.setattr("app.cli.models.REGISTRY", None)  # no internet: tests opt in to the fake's registry
    return memory


def run(fake: FakeOllama | None, *argv: str, config: str | None = None,
        host: str | None = None) -> tuple[int, str, str]:
    args = ["--config", config or "/nonexistent/tiergate.yaml", "models"]
    if host or fake is not None:
        args += ["--host", host or fake.base_url]
    parsed = build_parser().parse_args([*args, *argv])
    out, err = io.StringIO(), io.StringIO()
    code = parsed.func(parsed, out, err)
    return code, out.getvalue(), err.getvalue()


def closed_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def test_list_table_and_json(fake):
    code, out, _ = run(fake, "list")
    lines = out.splitlines()
    assert code == 0 and lines[0].split() == ["NAME", "SIZE", "FAMILY", "PARAMS", "QUANT", "MODIFIED"]
    assert lines[1].split()[:6] == ["llama3.2:latest", "1.9", "GiB", "llama", "3.2B", "Q4_K_M"]
    assert lines[2].split()[:6] == ["gemma3:4b", "3.1", "GiB", "gemma3", "4.3B", "Q4_K_M"]
    assert lines[1].endswith("ago")
    code, out, _ = run(fake, "list", "--json")
    doc = orjson.loads(out)
    assert doc["host"] == fake.base_url
    assert doc["models"][1]["name"] == "gemma3:4b" and doc["models"][1]["size_bytes"] == 3_338_801_804


def test_ps_shows_size_processor_context_and_expiry(fake):
    code, out, _ = run(fake, "ps")
    assert (code, out) == (0, "No model is loaded.\n")
    fake.load("gemma3:4b", num_ctx=32768, keep_alive="10m")
    code, out, _ = run(fake, "ps")
    row = out.splitlines()[1]
    assert row.split()[:6] == ["gemma3:4b", "5.6", "GiB", "100%", "GPU", "32768"]
    assert row.endswith("minutes from now")
    doc = orjson.loads(run(fake, "ps", "--json")[1])
    assert doc["models"][0]["context_length"] == 32768 and doc["models"][0]["vram_bytes"] == 5_964_735_424


def test_pull_prints_the_fit_and_progress(fake, monkeypatch):
    monkeypatch.setattr("app.cli.models.REGISTRY", fake.base_url)
    code, out, err = run(fake, "pull", "tiny:1b")
    assert code == 0 and out == "Pulled tiny:1b (24.0 MiB).\n"
    lines = err.splitlines()
    assert lines[0].startswith("tiny:1b needs about") and lines[0].endswith("are free")
    assert lines[1] == "pulling manifest"
    assert lines[2].startswith("pulling 7a7a7a7a7a7a") and " 0% " in lines[2]
    assert any(line.startswith("success") and "100%" in line for line in lines)
    assert "tiny:1b" in fake.installed


def test_ctrl_c_stops_a_pull_and_the_next_one_resumes(fake):
    fake.pull_delay = 0.01
    sent = threading.Event()

    def interrupt_after_4mib():
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if fake.partial.get(WEIGHTS, 0) >= 4 * MiB:
                os.kill(os.getpid(), signal.SIGINT)
                sent.set()
                return
            time.sleep(0.005)

    watcher = threading.Thread(target=interrupt_after_4mib)
    watcher.start()
    code, out, err = run(fake, "pull", "tiny:1b")
    watcher.join()
    assert sent.is_set() and code == 130 and out == ""
    assert "run the same command again to resume" in err
    for _ in range(200):  # the fake notices the closed connection a moment later
        if not fake.active_pulls:
            break
        time.sleep(0.01)
    kept = fake.partial[WEIGHTS]
    assert 4 * MiB <= kept < 24 * MiB and "tiny:1b" not in fake.installed
    fake.pull_delay = 0
    code, out, _ = run(fake, "pull", "tiny:1b")
    assert code == 0 and fake.pull_starts[-1][WEIGHTS] == kept


def test_rm_cp_load_unload(fake):
    assert run(fake, "cp", "gemma3:4b", "gemma3:helper")[:2] == (0, "Copied gemma3:4b to gemma3:helper.\n")
    assert run(fake, "rm", "gemma3:helper")[:2] == (0, "Deleted gemma3:helper.\n")
    code, out, _ = run(fake, "load", "llama3.2", "--ctx", "8192", "--keep-alive", "1h")
    assert code == 0 and out == "Loaded llama3.2:latest: 2.4 GiB, 100% GPU, context 8192.\n"
    assert fake.requests[-2].json == {"model": "llama3.2:latest", "stream": False, "options": {"num_ctx": 8192},
                                      "keep_alive": "1h"}
    assert run(fake, "unload", "llama3.2")[:2] == (0, "Unloaded llama3.2.\n")
    assert fake.loaded == {}


def test_fit_exit_code_and_override(fake, monkeypatch):
    monkeypatch.setattr("app.cli.models.REGISTRY", fake.base_url)
    code, out, _ = run(fake, "fit", "gemma3:4b", "--ctx", "8192")
    assert code == 0
    assert out.splitlines()[0] == "gemma3:4b needs about 5.2 GiB; 20 GiB are free."
    assert out.splitlines()[1].startswith("  estimate   5.2 GiB = weights 3.1 GiB + KV cache")
    code, out, _ = run(fake, "fit", "llama3.3:70b")  # not installed, not in the fake registry: catalogue size
    assert code == 1 and "choose qwen3:14b" in out.splitlines()[0]
    code, out, _ = run(fake, "fit", "llama3.3:70b", "--size", "12")
    assert code == 0 and "12.0 GiB (set in config)" in out
    doc = orjson.loads(run(fake, "fit", "gemma3:4b", "--json")[1])
    assert doc["fits"] is True and doc["estimate"]["total_bytes"] > doc["estimate"]["weights_bytes"]


def test_recommend(fake):
    code, out, _ = run(fake, "recommend")
    lines = out.splitlines()
    assert code == 0
    assert lines[0] == ("This machine: 32.0 GiB RAM, 20.0 GiB available; memory pressure normal. "
                        "Budget for local models: 24.0 GiB.")
    assert lines[2].split()[:3] == ["helper", "gemma3:4b", "32768"]
    assert lines[3].split()[:3] == ["coder", "qwen3:14b", "32768"]
    assert lines[4].split()[:2] == ["large", "(cloud)"]
    doc = orjson.loads(run(fake, "recommend", "--json")[1])
    assert [r["model"] for r in doc["recommendations"]] == ["gemma3:4b", "qwen3:14b", ""]


def test_status_and_the_fix_when_ollama_is_down(fake, monkeypatch):
    code, out, _ = run(fake, "status")
    assert code == 0 and out.startswith(f"local ({fake.base_url}): Ollama 0.12.6 is running\n")
    monkeypatch.setattr("app.ollama.manager.ollama_installed", lambda: True)
    down = closed_port()
    code, out, _ = run(None, "status", host=down)
    assert code == 1 and "Ollama is not running" in out and "fix: Start Ollama" in out
    monkeypatch.setattr("app.ollama.manager.ollama_installed", lambda: False)
    code, out, _ = run(None, "status", host=down)
    assert code == 1 and "fix: Install Ollama from https://ollama.com/download" in out


def test_errors_reach_main_as_title_and_fix(monkeypatch, capsys):
    monkeypatch.setattr("app.ollama.manager.ollama_installed", lambda: False)
    code = main(["--config", "/nonexistent/x.yaml", "models", "--host", closed_port(), "list"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("Ollama unavailable: Ollama is not installed on this machine. Install Ollama from "
                          "https://ollama.com/download")
    code = main(["--config", "/nonexistent/x.yaml", "models", "pull", "registry.example.com/x/y:1"])
    assert code == 2 and capsys.readouterr().err.startswith("Invalid model name: ")


def test_host_from_environment_and_config(fake, monkeypatch, tmp_path):
    monkeypatch.setenv("OLLAMA_HOST", fake.base_url.removeprefix("http://"))
    parsed = build_parser().parse_args(["--config", "/nonexistent/x.yaml", "models", "list"])
    out, err = io.StringIO(), io.StringIO()
    assert parsed.func(parsed, out, err) == 0 and "gemma3:4b" in out.getvalue()
    monkeypatch.delenv("OLLAMA_HOST")
    config = tmp_path / "config.yaml"
    config.write_text(f"""model_list:
  - model_name: helper
    litellm_params:
      model: ollama_chat/gemma3:4b
      api_base: {fake.base_url}
tiergate_settings:
  ollama:
    hosts:
      - name: box
        url: {fake.base_url}
    memory_budget_gb: 5.5
""")
    code, out, _ = run(None, "recommend", config=str(config), host="box")
    assert code == 0 and "Budget for local models: 5.5 GiB." in out
    assert out.splitlines()[-2:] == [
        "Context length of the configured local deployments:",
        "  helper/ollama/gemma3:4b: gemma3:4b has no context_length: Ollama will use its default of 4096 tokens, "
        "too small for agents (they need 32768+); set context_length: 16384"]


def test_progress_line_and_relative_times():
    e = PullProgress(host="local", model="m", status="pulling 7a7a7a7a7a7a", completed=3 * GiB, total=4 * GiB,
                     bytes_per_second=50 * MiB, eta_seconds=20.4)
    assert render_progress(e, width=8) == (
        "pulling 7a7a7a7a7a7a    75% ▕██████  ▏ 3.0 GiB/4.0 GiB  50.0 MiB/s  20s")
    assert render_progress(PullProgress(host="l", model="m", status="pulling manifest")) == "pulling manifest"
    from datetime import datetime, timedelta, timezone

    now = datetime(2025, 1, 1, tzinfo=timezone.utc)
    assert ago(now - timedelta(days=3), now) == "3 days ago"
    assert ago(now + timedelta(minutes=4, seconds=50), now) == "4 minutes from now"
    assert ago(None) == "-"
