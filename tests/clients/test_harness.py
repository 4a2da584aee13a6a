"""The client harness's own checks work (these run without any client installed, and send nothing off the
machine: the loopback guard is tested over a stub that refuses every real connection)."""

from __future__ import annotations

import asyncio
import socket

import pytest

from tests.clients.harness import EgressTrap, LoopbackGuard, _is_loopback, base_env, tool_results


@pytest.mark.parametrize(("address", "loopback"), [
    (("127.0.0.1", 80), True), (("127.8.9.10", 1), True), (("::1", 443, 0, 0), True), (("localhost", 80), True),
    ("/tmp/socket", True), (("192.0.2.1", 443), False), (("api.anthropic.com", 443), False),
    (("::ffff:1.2.3.4", 1), False),
])
def test_loopback_addresses(address, loopback):
    assert _is_loopback(address) is loopback


def test_loopback_guard_refuses_and_records(monkeypatch):
    reached: list[object] = []

    def stub(sock, address):  # stands in for the real connect: nothing leaves the process
        reached.append(address)
        return 0

    monkeypatch.setattr(socket.socket, "connect", stub)
    monkeypatch.setattr(socket.socket, "connect_ex", stub)
    guard = LoopbackGuard()
    guard.install()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            with pytest.raises(OSError, match="non-loopback"):
                s.connect(("192.0.2.1", 443))
            with pytest.raises(OSError, match="non-loopback"):
                s.connect_ex(("192.0.2.1", 443))
            s.connect(("127.0.0.1", 9))
    finally:
        guard.uninstall()
    assert guard.refused == ["('192.0.2.1', 443)", "('192.0.2.1', 443)"]
    assert reached == [("127.0.0.1", 9)]
    assert socket.socket.connect is stub  # uninstalled


async def test_egress_trap_records_and_refuses():
    trap = EgressTrap()
    await trap.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", trap.port)
        writer.write(b"CONNECT api.example.com:443 HTTP/1.1\r\nHost: api.example.com:443\r\n\r\n")
        await writer.drain()
        answer = await reader.read()
        writer.close()
    finally:
        await trap.close()
    assert answer.startswith(b"HTTP/1.1 403 ")
    assert trap.attempts == ["CONNECT api.example.com:443 HTTP/1.1"]


def test_client_env_starts_from_scratch(tmp_path, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-real-key-of-the-developer")
    monkeypatch.setenv("OPENAI_BASE_URL", "https://example.invalid")
    trap = EgressTrap()
    trap.port = 5
    env = base_env(tmp_path, trap, {"X": "1"})
    assert "ANTHROPIC_API_KEY" not in env and "OPENAI_BASE_URL" not in env
    assert env["HOME"] == str(tmp_path) and env["X"] == "1"
    assert env["HTTPS_PROXY"] == env["https_proxy"] == env["ALL_PROXY"] == "http://127.0.0.1:5"
    assert env["NO_PROXY"] == "127.0.0.1,localhost"


def test_tool_results_per_dialect():
    assert tool_results({"messages": [{"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "ok"}]}]}]},
        "anthropic") == {"toolu_1": "ok"}
    assert tool_results({"messages": [{"role": "tool", "tool_call_id": "call_1", "content": "ok"}]}, "chat") == \
        {"call_1": "ok"}
    assert tool_results({"input": [{"type": "function_call_output", "call_id": "call_1", "output": "ok"}]},
                        "responses") == {"call_1": "ok"}
    assert tool_results({"messages": [{"role": "tool", "tool_name": "Write", "content": "ok"}]}, "ollama") == \
        {"Write": "ok"}
