"""`tiergate serve` as a user runs it: a fresh machine with no config, the port answering, a clean stop."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import yaml

from app.config.loader import load_config

ROOT = Path(__file__).resolve().parents[2]


def _serve(tmp_path: Path, *args: str, env: dict | None = None) -> tuple[subprocess.Popen, int, float]:
    e = {**os.environ, "TIERGATE_CONFIG_DIR": str(tmp_path / "config"), "TIERGATE_DATA_DIR": str(tmp_path / "data"),
         **(env or {})}
    e.pop("ANTHROPIC_API_KEY", None)
    e.pop("OPENAI_API_KEY", None)
    e.update(env or {})
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "app", "serve", "--port", "0", *args], cwd=ROOT, env=e,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    ready = time.perf_counter() - t0
    assert "listening on http://127.0.0.1:" in line, (line, proc.stderr.read() if proc.poll() is not None else "")
    port = int(line.split("http://127.0.0.1:")[1].split("/")[0])
    return proc, port, ready


def _stop(proc: subprocess.Popen) -> str:
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    return err


def test_first_start_writes_a_default_config_and_serves(tmp_path):
    proc, port, ready = _serve(tmp_path, env={"ANTHROPIC_API_KEY": "sk-ant-test-planted-0001"})
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:
            assert json.loads(r.read())["status"] == "ok"
        path = tmp_path / "config" / "config.yaml"
        text = path.read_text()
        config = load_config(path)
        assert {"orchestrator", "coder", "helper"} <= set(config.tiers)
        assert any(d.provider == "ollama" for d in config.tiers["helper"])
        # the Anthropic key exists, so a cloud deployment is there, by reference only
        assert any(d.provider == "anthropic" for d in config.deployments)
        assert "sk-ant-test-planted-0001" not in text
        assert not any(d.provider == "openai" for d in config.deployments)  # no OpenAI key: no OpenAI tier
        yaml.safe_load(text)
    finally:
        err = _stop(proc)
    assert "sk-ant-test-planted-0001" not in err
    assert ready < 5.0


def test_one_structured_log_line_per_request_without_content(tmp_path):
    config = tmp_path / "config"
    config.mkdir()
    (config / "config.yaml").write_text(
        "model_list:\n  - model_name: helper\n    litellm_params: {model: ollama_chat/qwen3:4b, api_base: 'http://127.0.0.1:9'}\n"
        "tiergate_settings: {require_auth: false}\n")
    proc, port, _ = _serve(tmp_path)
    try:
        req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", method="POST",
                                     data=json.dumps({"model": "helper", "messages": [
                                         {"role": "user", "content": "my secret diary entry"}]}).encode(),
                                     headers={"content-type": "application/json"})
        try:
            urllib.request.urlopen(req, timeout=10)
        except urllib.error.HTTPError as e:
            assert e.code in (502, 503)  # nothing listens on :9
    finally:
        err = _stop(proc)
    lines = [ln for ln in err.splitlines() if "tiergate.request" in ln and '"path":"/v1/chat/completions"' in ln]
    assert len(lines) == 1, err
    record = json.loads(lines[0].split("tiergate.request ", 1)[1])
    assert record["tier"] == "helper" and record["status"] in (502, 503) and record["model"] == "helper"
    assert "diary" not in err
