"""Issue 4 end to end, the management API: `GET /tiergate/events` (server-sent events: one `usage` event per
request, budget and privacy events), `GET /tiergate/usage`, `GET/PUT /tiergate/privacy`, `GET /tiergate/status`
— master key only (agent keys get 403) — and the public `/health`, `/health/upstreams`."""

from __future__ import annotations

import asyncio
import json
from typing import Any, AsyncIterator

import aiohttp
import pytest

from tests.fakes import Reply

CONFIG = """
model_list:
  - model_name: orchestrator
    litellm_params: {{model: anthropic/claude-opus-4-1, api_base: "{anthropic}", api_key: os.environ/ANTHROPIC_API_KEY}}
    model_info: {{location: cloud}}
  - model_name: coder
    litellm_params: {{model: openai/gpt-4o-mini, api_base: "{openai}/v1", api_key: os.environ/OPENAI_API_KEY}}
    model_info: {{location: cloud}}
  - model_name: helper
    litellm_params: {{model: ollama_chat/llama3.2:latest, api_base: "{ollama}"}}
router_settings:
  num_retries: 0
tiergate_settings:
  port: 0
  cache:
    enabled: false
  budgets:
    tiers:
      coder:
        period: day
        limit: 0.40
        warn_at: 0.5
"""

MSG = [{"role": "user", "content": "hello there"}]
MANAGEMENT = [("GET", "/tiergate/status"), ("GET", "/tiergate/usage"), ("GET", "/tiergate/privacy"),
              ("PUT", "/tiergate/privacy"), ("GET", "/tiergate/events")]


class EventStream:
    """A reader of `GET /tiergate/events`: `await next_event(name)` returns the next event of that name."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response
        self._buffer = b""
        self.seen: list[tuple[str, dict[str, Any]]] = []

    async def _frames(self) -> AsyncIterator[bytes]:
        while True:
            while b"\n\n" not in self._buffer:
                data = await self.response.content.readany()
                if not data:
                    return
                self._buffer += data
            frame, self._buffer = self._buffer.split(b"\n\n", 1)
            yield frame

    async def next_event(self, name: str, timeout: float = 5.0) -> dict[str, Any]:
        async def find() -> dict[str, Any]:
            async for frame in self._frames():
                fields = dict(line.split(b": ", 1) for line in frame.split(b"\n") if b": " in line
                              and not line.startswith(b":"))
                if b"event" not in fields:
                    continue  # a comment (keep-alive)
                event, data = fields[b"event"].decode(), json.loads(fields[b"data"])
                self.seen.append((event, data))
                if event == name:
                    return data
            raise AssertionError("the event stream ended")

        return await asyncio.wait_for(find(), timeout)

    async def close(self, p: Any) -> None:
        """Disconnect. The server's handler notices at its next write, so send it one event: otherwise it
        waits for its 15 s keep-alive, and stopping the core waits out aiohttp's 2 s shutdown timeout."""
        self.response.close()
        await asyncio.sleep(0.01)
        await p.request("POST", "/v1/chat/completions", json={"model": "nope", "messages": MSG})  # a usage event
        await asyncio.sleep(0.01)

    def names(self) -> list[str]:
        return [n for n, _ in self.seen]


async def open_events(session: aiohttp.ClientSession, p: Any) -> EventStream:
    r = await session.get(p.base_url + "/tiergate/events", headers={"authorization": f"Bearer {p.master}"})
    assert r.status == 200 and r.headers["content-type"].startswith("text/event-stream")
    assert await r.content.readuntil(b"\n\n") == b": tiergate events\n\n"
    return EventStream(r)


# -------------------------------------------------------------------------------------------- events
async def test_every_request_is_one_usage_event_on_the_event_stream(proxy, fake_openai, fake_anthropic):
    p = await proxy(CONFIG)
    async with aiohttp.ClientSession() as session:
        events = await open_events(session, p)
        fake_openai.replies.append(Reply(text="ok", input_tokens=1_200, cache_read_tokens=800, output_tokens=300))
        raw = await p.openai().chat.completions.with_raw_response.create(model="coder", messages=MSG)
        usage = await events.next_event("usage")
        rec = usage["record"]
        assert rec["request_id"] == raw.headers["x-request-id"]
        assert {k: rec[k] for k in ("agent", "tier", "deployment", "provider", "status", "input_tokens",
                                    "cache_read_tokens", "output_tokens", "cost", "price_known", "cache_hit",
                                    "fallback_path", "privacy", "stream")} == {
            "agent": "tester", "tier": "coder", "deployment": "coder/openai/gpt-4o-mini", "provider": "openai",
            "status": "ok", "input_tokens": 1_200, "cache_read_tokens": 800, "output_tokens": 300,
            "cost": 0.00042, "price_known": True, "cache_hit": False, "fallback_path": [], "privacy": "any",
            "stream": False}
        assert rec["latency_ms"] > 0 and usage["ts"] >= rec["ts"]

        fake_anthropic.replies.append(Reply(text="streamed", input_tokens=10, cache_write_tokens=2_000))
        async with p.anthropic().messages.stream(model="orchestrator", max_tokens=10, messages=MSG) as s:
            await s.get_final_message()
        rec = (await events.next_event("usage"))["record"]
        assert (rec["tier"], rec["stream"], rec["input_tokens"], rec["cache_write_tokens"]) == \
            ("orchestrator", True, 10, 2_000)
        assert rec["ttft_ms"] is not None

        status, _, _ = await p.request("POST", "/v1/chat/completions", json={"model": "nope", "messages": MSG})
        assert status == 404
        rec = (await events.next_event("usage"))["record"]
        assert (rec["status"], rec["http_status"], rec["requested_model"]) == ("refused", 404, "nope")
        assert events.names().count("usage") == 3
        await events.close(p)


async def test_budget_and_privacy_events_reach_the_event_stream(proxy, fake_openai):
    p = await proxy(CONFIG)
    async with aiohttp.ClientSession() as session:
        events = await open_events(session, p)
        fake_openai.replies.append(Reply(text="ok", input_tokens=1_000_000, output_tokens=100_000))  # $0.21
        await p.openai().chat.completions.create(model="coder", messages=MSG)
        warning = await events.next_event("budget_warning")
        assert (warning["budget"], warning["spent"], warning["limit"]) == ("tier:coder/day", 0.21, 0.40)
        status, _, body = await p.request("PUT", "/tiergate/privacy", key=p.master, json={"mode": "on"})
        assert (status, body["mode"]) == (200, "on")
        privacy = await events.next_event("privacy")
        assert (privacy["mode"], privacy["source"]) == ("on", "api")
        await events.close(p)


# ------------------------------------------------------------------------------------------- access
@pytest.mark.parametrize("method,path", MANAGEMENT)
async def test_agent_keys_get_403_on_the_management_api(proxy, method, path):
    p = await proxy(CONFIG)
    kw = {"json": {"mode": "on"}} if method == "PUT" else {}
    status, _, body = await p.request(method, path, **kw)
    assert status == 403
    assert body["error"]["type"] == "permission_error"
    assert "master key" in body["error"]["message"]
    assert p.core.privacy_mode() == "off"
    status, _, _ = await p.request(method, path, key="tg-wrong-" + "0" * 64, **kw)
    assert status == 401


async def test_management_api_needs_a_key_at_all(proxy):
    p = await proxy(CONFIG)
    async with aiohttp.ClientSession() as s:
        for method, path in MANAGEMENT:
            async with s.request(method, p.base_url + path) as r:
                assert r.status == 401, path


@pytest.mark.parametrize("method,path", [m for m in MANAGEMENT if m[1] != "/tiergate/events"])
async def test_master_key_is_served(proxy, method, path):
    p = await proxy(CONFIG)
    kw = {"json": {"mode": "off"}} if method == "PUT" else {}
    status, _, body = await p.request(method, path, key=p.master, **kw)
    assert status == 200, body


# -------------------------------------------------------------------------------------------- usage
async def test_usage_endpoint_groups_and_validates(proxy, fake_openai):
    p = await proxy(CONFIG)
    fake_openai.replies.append(Reply(text="ok", input_tokens=1_200, cache_read_tokens=800, output_tokens=300))
    await p.openai().chat.completions.create(model="coder", messages=MSG)
    await p.openai().chat.completions.create(model="helper", messages=MSG)
    status, _, body = await p.request("GET", "/tiergate/usage", key=p.master)  # defaults: today, by tier
    assert status == 200 and (body["period"], body["by"]) == ("day", "tier")
    rows = {r["key"]: r for r in body["rows"]}
    assert set(rows) == {"coder", "helper"}
    assert (rows["coder"]["requests"], rows["coder"]["input_tokens"], rows["coder"]["cache_read_tokens"],
            rows["coder"]["output_tokens"], rows["coder"]["cost"]) == (1, 1_200, 800, 300, 0.00042)
    assert (rows["helper"]["cost"], rows["helper"]["input_tokens"], rows["helper"]["output_tokens"]) == (0.0, 3, 3)
    for by, keys in (("model", {"gpt-4o-mini", "llama3.2:latest"}), ("agent", {"tester"}),
                     ("deployment", {"coder/openai/gpt-4o-mini", "helper/ollama/llama3.2:latest"})):
        for period in ("day", "week", "month"):
            status, _, body = await p.request("GET", f"/tiergate/usage?period={period}&by={by}", key=p.master)
            assert status == 200 and {r["key"] for r in body["rows"]} == keys, (by, period)
    for query in ("period=year", "by=colour"):
        status, _, body = await p.request("GET", f"/tiergate/usage?{query}", key=p.master)
        assert status == 400 and body["error"]["type"] == "invalid_request_error", query


# ------------------------------------------------------------------------------------------ privacy
async def test_privacy_switch_through_the_api(proxy, fake_ollama):
    p = await proxy(CONFIG)
    status, _, body = await p.request("GET", "/tiergate/privacy", key=p.master)
    assert (status, body) == (200, {"mode": "off", "problem": None})
    status, _, body = await p.request("PUT", "/tiergate/privacy", key=p.master, json={"mode": "sideways"})
    assert status == 400
    status, _, body = await p.request("PUT", "/tiergate/privacy", key=p.master, json={"mode": "on"})
    assert (status, body) == (200, {"mode": "on", "problem": None})
    assert (await p.request("GET", "/tiergate/privacy", key=p.master))[2] == {"mode": "on", "problem": None}
    raw = await p.openai().chat.completions.with_raw_response.create(model="helper", messages=MSG)
    assert raw.headers["x-tiergate-privacy"] == "local"
    status, _, _ = await p.request("POST", "/v1/chat/completions", json={"model": "coder", "messages": MSG})
    assert status == 403  # coder has no local deployment: refused, never sent to the cloud
    await p.core.ledger.flush()
    recs = await p.core.ledger.records()
    assert [(r.tier or r.requested_model, r.privacy, r.status) for r in recs] == [
        ("helper", "local", "ok"), ("coder", "local", "refused")]


# ------------------------------------------------------------------------------------------- health
async def test_health_is_public_and_upstream_health_lists_every_deployment(proxy):
    p = await proxy(CONFIG)
    async with aiohttp.ClientSession() as s:
        async with s.get(p.base_url + "/health") as r:
            assert r.status == 200 and (await r.json())["status"] == "ok"
    status, _, body = await p.request("GET", "/health/upstreams", key=p.master)
    assert status == 200 and body["total"] == 3
    assert {d["deployment"]: (d["tier"], d["location"], d["state"]) for d in body["deployments"]} == {
        "orchestrator/anthropic/claude-opus-4-1": ("orchestrator", "cloud", "healthy"),
        "coder/openai/gpt-4o-mini": ("coder", "cloud", "healthy"),
        "helper/ollama/llama3.2:latest": ("helper", "local", "healthy")}
    status, _, body = await p.request("GET", "/tiergate/status", key=p.master)
    assert status == 200 and body["privacy"] == "off"
    assert body["tiers"] == {"orchestrator": ["orchestrator/anthropic/claude-opus-4-1"],
                             "coder": ["coder/openai/gpt-4o-mini"], "helper": ["helper/ollama/llama3.2:latest"]}
