"""Response cache: keys, per-agent scope, bypass controls, TTL, eviction, persistence, streaming hits."""

from __future__ import annotations

import dataclasses
import sqlite3

import pytest

from app.assembly import ResponseAssembler, events_from_response
from app.canonical import (
    ChatRequest, ChatResponse, Dialect, Message, StopReason, TextDelta, TextPart, ThinkingPart, ToolCallPart,
    ToolChoice, ToolSpec, Usage,
)
from app.config import parse_config
from app.errors import ConfigError
from app.router import cache as cache_mod
from app.router.cache import CacheControl, CacheSettings, ResponseCache, decode_response, encode_response


def request(**kw) -> ChatRequest:
    base = dict(model="coder", messages=[Message("user", [TextPart("What is 2+2?")])], system=[TextPart("Be brief")],
                max_tokens=100, temperature=0.7)
    base.update(kw)
    return ChatRequest(**base)


def response(text: str = "4", **kw) -> ChatResponse:
    base = dict(id="msg_1", model="gpt-5", parts=[TextPart(text)], stop_reason=StopReason.END_TURN,
                usage=Usage(input_tokens=12, output_tokens=3, cache_read_tokens=5, reasoning_tokens=1), created=1_700_000_000)
    base.update(kw)
    return ChatResponse(**base)


@pytest.fixture
async def cache(tmp_path):
    c = ResponseCache(tmp_path / "cache.sqlite3")
    await c.start()
    yield c
    await c.close()


# ----------------------------------------------------------------------------------------------- keys
def test_key_is_stable_and_ignores_transport_details():
    c = ResponseCache(None)
    k = c.key(request(), "coder", "aider")
    assert k is not None and len(k) == 40
    assert c.key(request(), "coder", "aider") == k
    same = [
        request(stream=True, include_usage=True),
        request(dialect=Dialect.ANTHROPIC, raw={"metadata": {"user_id": "x"}}),
        request(user="someone"),
        request(messages=[Message("user", [TextPart("What is 2+2?", cache_control={"type": "ephemeral"})])]),
    ]
    assert all(c.key(r, "coder", "aider") == k for r in same)


def test_key_changes_with_anything_that_changes_the_answer():
    c = ResponseCache(None)
    k = c.key(request(), "coder", "aider")
    different = [
        (request(), "orchestrator", "aider"),
        (request(), "coder", "codex"),  # per-agent scope
        (request(temperature=0.0), "coder", "aider"),
        (request(max_tokens=101), "coder", "aider"),
        (request(system=[]), "coder", "aider"),
        (request(messages=[Message("user", [TextPart("What is 2+3?")])]), "coder", "aider"),
        (request(tools=[ToolSpec("calc", None, {"type": "object"})]), "coder", "aider"),
        (request(tool_choice=ToolChoice("required")), "coder", "aider"),
        (request(stop=["\n"]), "coder", "aider"),
        (request(seed=1), "coder", "aider"),
        (request(response_format={"type": "json_object"}), "coder", "aider"),
        (request(reasoning_effort="high"), "coder", "aider"),
        (request(raw={"top_k": 5}), "coder", "aider"),
        (request(headers={"anthropic-beta": "context-1m-2025-08-07"}), "coder", "aider"),
        (request(messages=[Message("user", [ThinkingPart("What is 2+2?")])]), "coder", "aider"),
    ]
    keys = [c.key(*args) for args in different]
    assert k not in keys and len(set(keys)) == len(keys)


def test_tool_schemas_with_reordered_keys_share_a_key():
    c = ResponseCache(None)
    a = request(tools=[ToolSpec("calc", "adds", {"type": "object", "properties": {"a": {"type": "number"}}})])
    b = request(tools=[ToolSpec("calc", "adds", {"properties": {"a": {"type": "number"}}, "type": "object"})])
    assert c.key(a, "coder", "x") == c.key(b, "coder", "x")


def test_uncacheable_requests_have_no_key():
    assert ResponseCache(None).key(request(raw={"n": 2}), "coder", "a") is None
    assert ResponseCache(None).key(request(raw={"n": 1}), "coder", "a") is not None
    assert ResponseCache(None, CacheSettings(enabled=False)).key(request(), "coder", "a") is None
    det = ResponseCache(None, CacheSettings(only_deterministic=True))
    assert det.key(request(temperature=0.7), "coder", "a") is None
    assert det.key(request(temperature=None), "coder", "a") is None
    assert det.key(request(temperature=0), "coder", "a") is not None


def test_same_request_in_openai_and_anthropic_form_shares_a_key():
    from app.dialects import anthropic_messages, openai_chat

    o = openai_chat.parse_request({"model": "coder", "max_tokens": 100, "temperature": 0.2, "stream": True,
                                   "messages": [{"role": "system", "content": "Be brief"},
                                                {"role": "user", "content": "hi"}]}, {})
    a = anthropic_messages.parse_request({"model": "coder", "max_tokens": 100, "temperature": 0.2,
                                          "system": "Be brief", "messages": [{"role": "user", "content": "hi"}]}, {})
    c = ResponseCache(None)
    assert c.key(o, "coder", "aider") == c.key(a, "coder", "aider")


# ------------------------------------------------------------------------------------------- controls
@pytest.mark.parametrize("headers,body,expected", [
    ({}, None, CacheControl()),
    ({"Cache-Control": "no-cache"}, None, CacheControl(read=False)),
    ({"cache-control": "no-store"}, None, CacheControl(write=False)),
    ({"Cache-Control": "no-cache, no-store"}, None, CacheControl(read=False, write=False)),
    ({"Cache-Control": "max-age=60"}, None, CacheControl(max_age=60)),
    ({"X-Tiergate-Cache": "off"}, None, CacheControl(read=False, write=False)),
    ({"x-tiergate-cache": "refresh"}, None, CacheControl(read=False)),
    ({}, {"cache": {"no-cache": True}}, CacheControl(read=False)),
    ({}, {"cache": {"no-store": True}}, CacheControl(write=False)),
    ({}, {"cache": {"ttl": 30, "s-maxage": 10}}, CacheControl(ttl=30, max_age=10)),
    ({}, {"cache": "nonsense"}, CacheControl()),
])
def test_cache_control(headers, body, expected):
    assert CacheControl.from_request(headers, body) == expected


def test_settings_from_config_section():
    cfg = parse_config("model_list:\n  - model_name: coder\n    litellm_params: {model: ollama_chat/qwen3}\n"
                       "tiergate_settings:\n  cache:\n    ttl: 10m\n    max_bytes: 64MB\n    max_entries: 50\n"
                       "    only_deterministic: true\n", "config.yaml")
    s = CacheSettings.from_section(cfg.section("cache"))
    assert (s.enabled, s.ttl, s.max_bytes, s.max_entries, s.only_deterministic) == (True, 600.0, 64_000_000, 50, True)
    bad = parse_config("model_list:\n  - model_name: coder\n    litellm_params: {model: ollama_chat/qwen3}\n"
                       "tiergate_settings:\n  cache:\n    ttl: soon\n", "config.yaml")
    with pytest.raises(ConfigError) as e:
        CacheSettings.from_section(bad.section("cache"))
    assert e.value.line == 6 and "duration" in e.value.reason


# ----------------------------------------------------------------------------------------- get & put
def test_codec_round_trip():
    r = response(parts=[ThinkingPart("hmm", signature="sig"), TextPart("4"),
                        ToolCallPart("call_1", "calc", '{"a": 2}')], stop_reason=StopReason.TOOL_USE)
    assert decode_response(encode_response(r)) == r


async def test_hit_returns_an_equal_fresh_copy(cache):
    k = cache.key(request(), "coder", "aider")
    assert cache.lookup(k) is None and await cache.get(k) is None
    assert cache.store(k, response(), agent="aider", tier="coder", deployment="coder/openai/gpt-5")
    e = cache.lookup(k)
    assert e is not None and e.response == response() and e.deployment == "coder/openai/gpt-5"
    e.response.parts.append(TextPart("mutated"))
    assert (await cache.get(k)) == response()
    assert (cache.hits, cache.misses) == (2, 2)


async def test_other_agents_never_see_an_answer(cache):
    k = cache.key(request(), "coder", "aider")
    cache.store(k, response())
    assert cache.lookup(cache.key(request(), "coder", "codex")) is None


async def test_incomplete_answers_are_not_stored(cache):
    k = cache.key(request(), "coder", "a")
    assert not cache.store(k, response(stop_reason=StopReason.CONTENT_FILTER))
    assert not cache.store(k, response(stop_reason=StopReason.PAUSE))
    assert not cache.store(k, response(parts=[]))
    assert cache.store(k, response(stop_reason=StopReason.MAX_TOKENS))


async def test_ttl_and_max_age(cache, monkeypatch):
    clock = [1_000_000.0]
    monkeypatch.setattr(cache_mod.time, "time", lambda: clock[0])
    k = cache.key(request(), "coder", "a")
    cache.store(k, response())
    short = cache.key(request(), "coder", "b")
    cache.store(short, response(), ttl=5)
    clock[0] += 30
    assert cache.lookup(k) is not None
    assert cache.lookup(k, max_age=10) is None  # too old for this request
    assert cache.lookup(short) is None  # its own 5 s TTL passed
    clock[0] += cache.settings.ttl
    assert cache.lookup(k) is None and len(cache) == 0


async def test_lru_eviction_by_entries_and_bytes(tmp_path):
    c = ResponseCache(tmp_path / "c.sqlite3", CacheSettings(max_entries=3))
    await c.start()
    keys = [c.key(request(max_tokens=i), "coder", "a") for i in range(4)]
    for k in keys[:3]:
        c.store(k, response())
    assert c.lookup(keys[0]) is not None  # 0 is now the most recently used
    c.store(keys[3], response())
    assert [c.lookup(k) is not None for k in keys] == [True, False, True, True]
    await c.close()
    c2 = ResponseCache(tmp_path / "c.sqlite3", CacheSettings(max_entries=3))
    await c2.start()
    assert len(c2) == 3 and await c2.get(keys[1]) is None and await c2.get(keys[0]) is not None
    await c2.close()

    one = len(encode_response(response()))
    small = ResponseCache(None, CacheSettings(max_bytes=2 * one + 1))
    for k in keys[:3]:
        small.store(k, response())
    assert len(small) == 2 and small.size_bytes == 2 * one and small.lookup(keys[0]) is None


async def test_entries_persist_across_restarts_and_load_from_disk(tmp_path):
    path = tmp_path / "c.sqlite3"
    c = ResponseCache(path)
    await c.start()
    k = c.key(request(), "coder", "a")
    c.store(k, response(), agent="a", tier="coder", deployment="dep")
    await c.close()  # waits for the queued write
    row = sqlite3.connect(path).execute("SELECT agent, tier, deployment FROM entries").fetchone()
    assert row == ("a", "coder", "dep")

    c2 = ResponseCache(path, CacheSettings(memory_entries=0))
    await c2.start()
    assert c2.lookup(k) is None  # not in memory: the sync path never touches the disk
    e = await c2.get_entry(k)
    assert e is not None and e.response == response() and e.deployment == "dep"
    await c2.close()


async def test_clear_forgets_everything(tmp_path):
    c = ResponseCache(tmp_path / "c.sqlite3")
    await c.start()
    k = c.key(request(), "coder", "a")
    c.store(k, response())
    c.clear()
    assert c.lookup(k) is None
    await c.close()
    assert sqlite3.connect(tmp_path / "c.sqlite3").execute("SELECT COUNT(*) FROM entries").fetchone()[0] == 0


async def test_corrupt_entry_is_dropped(cache):
    k = cache.key(request(), "coder", "a")
    cache.store(k, response())
    cache._bodies[k] = b"{not json"
    assert cache.lookup(k) is None and len(cache) == 0


# -------------------------------------------------------------------------------------- streaming hits
async def test_streamed_answer_is_stored_and_replayed_as_a_stream(cache):
    original = response(text="Two plus two is four.", parts=[ThinkingPart("add", signature="sig"),
                                                            TextPart("Two plus two is four."),
                                                            ToolCallPart("call_1", "check", '{"n": 4}')],
                        stop_reason=StopReason.TOOL_USE)
    live = ResponseAssembler()
    for ev in events_from_response(original, text_chunk=4):  # the upstream's stream, in small pieces
        live.add(ev)
    assert live.done
    k = cache.key(request(stream=True), "coder", "a")
    assert cache.store(k, dataclasses.replace(live.response(), created=original.created))

    hit = cache.lookup(cache.key(request(stream=False), "coder", "a"))  # a buffered request shares the entry
    assert hit is not None and hit.response == original
    replay = events_from_response(hit.response, text_chunk=8)
    assert sum(isinstance(e, TextDelta) for e in replay) == 3
    again = ResponseAssembler()
    for ev in replay:
        again.add(ev)
    assert dataclasses.replace(again.response(), created=original.created) == original
