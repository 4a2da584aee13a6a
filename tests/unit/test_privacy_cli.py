"""`tiergate privacy`: switch through the API or the state file; `test` names rules and places only."""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import socket
from pathlib import Path

import pytest
from aiohttp import web

from app.cli import build_parser
from app.cli.privacy import detect_dialect, run_switch, run_test
from tests.unit.test_privacy_corpus import AWS


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TIERGATE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("TIERGATE_CONFIG_DIR", str(tmp_path / "cfg"))
    return tmp_path


def write_config(home: Path, port: int, privacy: str = "") -> Path:
    path = home / "cfg" / "config.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("model_list:\n  - model_name: coder\n    litellm_params:\n      model: ollama_chat/qwen3:8b\n"
                    f"tiergate_settings:\n  port: {port}\n{privacy}")
    return path


def run(argv: list[str]) -> str:
    args = build_parser().parse_args(["privacy", *argv])
    out = io.StringIO()
    assert args.func(args, out=out) == 0
    return out.getvalue()


# -------------------------------------------------------------------------------------------- switch
def test_offline_switch_writes_the_state_file(home: Path) -> None:
    write_config(home, free_port())
    assert "Privacy mode: off" in run(["status"])
    out = run(["on"])
    assert "Privacy mode: on" in out and "no server running" in out
    assert json.loads((home / "data" / "privacy.json").read_text())["mode"] == "on"
    assert "Privacy mode: on" in run(["status"])
    run(["off"])
    assert "Privacy mode: off" in run(["status"])


def test_status_reports_a_broken_state_file(home: Path) -> None:
    write_config(home, free_port())
    (home / "data").mkdir()
    (home / "data" / "privacy.json").write_text("{oops")
    out = run(["status"])
    assert "Privacy mode: on" in out and "unusable" in out


async def test_switch_goes_through_the_running_server(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = {"mode": "off"}
    seen: list[tuple[str, str | None]] = []

    async def get(request: web.Request) -> web.Response:
        seen.append(("GET", request.headers.get("Authorization")))
        return web.json_response(state)

    async def put(request: web.Request) -> web.Response:
        seen.append(("PUT", request.headers.get("Authorization")))
        state["mode"] = (await request.json())["mode"]
        return web.json_response(state)

    app = web.Application()
    app.router.add_get("/tiergate/privacy", get)
    app.router.add_put("/tiergate/privacy", put)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    write_config(home, port)
    monkeypatch.setenv("TIERGATE_MASTER_KEY", "tg-master-test")
    try:
        out = await asyncio.to_thread(run, ["on"])
        status = await asyncio.to_thread(run, ["status"])
    finally:
        await runner.cleanup()
    assert "Privacy mode: on" in out and f"running server at 127.0.0.1:{port}" in out
    assert "Privacy mode: on" in status
    assert seen == [("PUT", "Bearer tg-master-test"), ("GET", "Bearer tg-master-test")]
    assert not (home / "data" / "privacy.json").exists()  # the server owns the state


# ---------------------------------------------------------------------------------------------- test
ANTHROPIC_BODY = {
    "model": "claude-sonnet-4-5", "max_tokens": 100, "system": "be brief",
    "messages": [{"role": "user", "content": f"deploy with {AWS}"},
                 {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "Read",
                                                    "input": {"file_path": "/srv/medical/scan.txt"}}]},
                 {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1",
                                               "content": "patient jane.doe@acme.io"}]}]}


def test_privacy_test_names_rules_and_places_but_never_the_text(home: Path) -> None:
    write_config(home, free_port(), "  privacy:\n    rules:\n      - name: medical\n        paths: [/srv/medical/**]\n")
    body = home / "req.json"
    body.write_text(json.dumps(ANTHROPIC_BODY))
    out = run(["test", str(body)])
    assert "Dialect: anthropic (detected)" in out
    assert "secret.aws_access_key  messages[0].content[0].text  [12:32]" in out
    assert "rule.medical" in out and "messages[1].content[0].arguments.file_path" in out
    assert "pii.email" in out and "messages[2].content[0].content[0].text" in out
    assert "Decision: local (secret.aws_access_key; raised by detector)" in out
    assert AWS not in out and "jane.doe" not in out and "/srv/medical/scan" not in out


def test_privacy_test_json_and_explicit_dialect(home: Path) -> None:
    write_config(home, free_port())
    body = home / "req.json"
    body.write_text(json.dumps({"model": "coder", "messages": [{"role": "system", "content": "hi"},
                                                               {"role": "user", "content": "sort a list"}]}))
    result = json.loads(run(["test", str(body), "--json", "--dialect", "openai_chat", "--agent-policy", "local"]))
    assert result["dialect"] == "openai_chat" and result["dialect_detected"] is False
    assert result["findings"] == []
    assert result["decision"] == {"level": "local", "rule": "agent_policy", "sources": ["agent"], "redact": False}


def test_privacy_test_bad_file(home: Path) -> None:
    from app.errors import BadRequest

    write_config(home, free_port())
    (home / "bad.json").write_text("{nope")
    with pytest.raises(BadRequest):
        run_test(argparse.Namespace(file=str(home / "bad.json"), dialect=None, agent_policy=None, header=None,
                                    json=False, config=None), out=io.StringIO())


@pytest.mark.parametrize("body,dialect", [
    ({"model": "m", "input": "hi"}, "openai_responses"),
    ({"model": "m", "instructions": "x", "input": [{"role": "user", "content": "hi"}]}, "openai_responses"),
    ({"model": "m", "max_tokens": 5, "system": "s", "messages": []}, "anthropic"),
    ({"model": "m", "messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "x"}]}]},
     "anthropic"),
    ({"model": "m", "messages": [{"role": "tool", "tool_call_id": "x", "content": "r"}]}, "openai_chat"),
    ({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "u"}}]}]},
     "openai_chat"),
    ({"model": "m", "messages": [{"role": "user", "content": "hi", "images": ["AAAA"]}]}, "ollama"),
    ({"model": "m", "messages": [{"role": "user", "content": "hi"}], "options": {"num_ctx": 8192}}, "ollama"),
    ({"model": "m", "messages": [{"role": "user", "content": "hi"}]}, "openai_chat"),
])
def test_detect_dialect(body: dict, dialect: str) -> None:
    assert detect_dialect(body) == dialect


def test_run_switch_is_registered() -> None:
    args = build_parser().parse_args(["privacy", "on"])
    assert args.func is run_switch and args.privacy_action == "on"
