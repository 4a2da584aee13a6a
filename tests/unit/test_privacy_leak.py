"""Leak properties at the decision level: sensitive text in any place any dialect allows is kept local, and
a redacted request carries none of it to any upstream dialect.

The end-to-end leak tests (server, recording cloud fakes, streaming, fallbacks, cooldowns, cache) live
with the proxy tests; these pin the privacy package's share: every place is seen, the decision is `local`,
no cloud deployment is allowed, and `build_request` of a masked request contains no detected span.
"""

from __future__ import annotations

import json
from typing import Any, Callable

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.config.schema import Deployment
from app.dialects import anthropic_messages, ollama_chat, openai_chat, openai_responses
from app.privacy.policy import PrivacyPolicy, PrivacySettings
from app.privacy.redact import RedactionFailed, Redactor
from tests.unit.test_privacy_corpus import POSITIVES

KEEP = PrivacyPolicy()
REDACT = PrivacyPolicy(PrivacySettings(action="redact"))
CLOUD = {
    "openai": Deployment(id="c1", tier="t", provider="openai", model="gpt-4.1", api_base="https://api.openai.com/v1"),
    "anthropic": Deployment(id="c2", tier="t", provider="anthropic", model="claude-sonnet-4-5",
                            api_base="https://api.anthropic.com"),
}
LOCAL = Deployment(id="l1", tier="t", provider="ollama", model="gemma3:4b", api_base="http://127.0.0.1:11434")

Carrier = Callable[[str], dict[str, Any]]


def _openai(messages: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"model": "coder", "messages": messages, **extra}


def _anthropic(messages: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"model": "coder", "max_tokens": 256, "messages": messages, **extra}


def _call(args: dict[str, Any]) -> dict[str, Any]:
    return {"role": "assistant", "content": None,
            "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "run", "arguments": json.dumps(args)}}]}


CARRIERS: dict[str, tuple[Any, Carrier]] = {
    "openai.system": (openai_chat, lambda x: _openai([{"role": "system", "content": x},
                                                      {"role": "user", "content": "hi"}])),
    "openai.developer": (openai_chat, lambda x: _openai([{"role": "developer", "content": x},
                                                         {"role": "user", "content": "hi"}])),
    "openai.user": (openai_chat, lambda x: _openai([{"role": "user", "content": x}])),
    "openai.user_parts": (openai_chat, lambda x: _openai([{"role": "user", "content": [
        {"type": "text", "text": "see"}, {"type": "text", "text": x}]}])),
    "openai.assistant": (openai_chat, lambda x: _openai([{"role": "user", "content": "hi"},
                                                         {"role": "assistant", "content": x},
                                                         {"role": "user", "content": "go on"}])),
    "openai.tool_call": (openai_chat, lambda x: _openai([{"role": "user", "content": "hi"}, _call({"cmd": x})])),
    "openai.tool_result": (openai_chat, lambda x: _openai([{"role": "user", "content": "hi"}, _call({"cmd": "ls"}),
                                                           {"role": "tool", "tool_call_id": "c1", "content": x}])),
    "anthropic.system": (anthropic_messages, lambda x: _anthropic([{"role": "user", "content": "hi"}], system=x)),
    "anthropic.system_blocks": (anthropic_messages, lambda x: _anthropic(
        [{"role": "user", "content": "hi"}], system=[{"type": "text", "text": x}])),
    "anthropic.user": (anthropic_messages, lambda x: _anthropic([{"role": "user", "content": x}])),
    "anthropic.tool_use": (anthropic_messages, lambda x: _anthropic([
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "run", "input": {"cmd": x}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "ok"}]}])),
    "anthropic.tool_result": (anthropic_messages, lambda x: _anthropic([
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "run", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1",
                                      "content": [{"type": "text", "text": x}]}]}])),
    "anthropic.document": (anthropic_messages, lambda x: _anthropic([{"role": "user", "content": [
        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": x}},
        {"type": "text", "text": "summarise"}]}])),
    "anthropic.search_result": (anthropic_messages, lambda x: _anthropic([{"role": "user", "content": [
        {"type": "search_result", "source": "https://wiki.internal/p", "title": "page",
         "content": [{"type": "text", "text": x}]}, {"type": "text", "text": "use it"}]}])),
    "responses.instructions": (openai_responses, lambda x: {"model": "coder", "instructions": x, "input": "hi"}),
    "responses.input": (openai_responses, lambda x: {"model": "coder", "input": x}),
    "responses.message": (openai_responses, lambda x: {"model": "coder", "input": [
        {"role": "user", "content": [{"type": "input_text", "text": x}]}]}),
    "responses.function_call": (openai_responses, lambda x: {"model": "coder", "input": [
        {"role": "user", "content": "hi"},
        {"type": "function_call", "call_id": "c1", "name": "run", "arguments": json.dumps({"cmd": x})},
        {"type": "function_call_output", "call_id": "c1", "output": "ok"}]}),
    "responses.function_output": (openai_responses, lambda x: {"model": "coder", "input": [
        {"role": "user", "content": "hi"},
        {"type": "function_call", "call_id": "c1", "name": "run", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": x}]}),
    "responses.custom_tool": (openai_responses, lambda x: {"model": "coder", "input": [
        {"role": "user", "content": "hi"},
        {"type": "custom_tool_call", "call_id": "c1", "name": "apply_patch", "input": x}]}),
    "ollama.system": (ollama_chat, lambda x: {"model": "coder", "messages": [
        {"role": "system", "content": x}, {"role": "user", "content": "hi"}]}),
    "ollama.user": (ollama_chat, lambda x: {"model": "coder", "messages": [{"role": "user", "content": x}]}),
    "ollama.tool_call": (ollama_chat, lambda x: {"model": "coder", "messages": [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "run", "arguments": {"cmd": x}}}]},
        {"role": "tool", "content": "ok", "tool_name": "run"}]}),
    "ollama.tool_result": (ollama_chat, lambda x: {"model": "coder", "messages": [
        {"role": "user", "content": "hi"}, {"role": "tool", "content": x, "tool_name": "run"}]}),
}

SAMPLES = [text for _, text, _ in POSITIVES]
FILLER = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)


def _spans(text: str) -> list[str]:
    return [text[h.start:h.end] for h in KEEP.scanner.text_hits(text)]


@pytest.mark.parametrize("carrier", sorted(CARRIERS))
def test_every_carrier_is_seen(carrier: str) -> None:
    module, build = CARRIERS[carrier]
    req = module.parse_request(build("nothing to see here"), {})
    assert KEEP.decide(req).level == "any"
    d = KEEP.decide(module.parse_request(build("mail maria.gonzalez@acme-corp.eu"), {}))
    assert (d.level, d.rule) == ("local", "pii.email")


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(SAMPLES), st.sampled_from(sorted(CARRIERS)), FILLER, FILLER)
def test_sensitive_text_anywhere_stays_local(sample: str, carrier: str, before: str, after: str) -> None:
    module, build = CARRIERS[carrier]
    req = module.parse_request(build(f"{before}\n{sample}\n{after}"), {})
    decision = KEEP.decide(req, agent_policy=None, headers={})
    assert decision.level == "local"
    assert not KEEP.allowed(decision, CLOUD["openai"]) and not KEEP.allowed(decision, CLOUD["anthropic"])
    assert KEEP.allowed(decision, LOCAL)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(SAMPLES), st.sampled_from(sorted(CARRIERS)), FILLER)
def test_redacted_requests_carry_no_detected_span_upstream(sample: str, carrier: str, before: str) -> None:
    module, build = CARRIERS[carrier]
    req = module.parse_request(build(f"{before}\n{sample}"), {})
    decision = REDACT.decide(req)
    if not decision.redact:
        assert decision.level == "local"
        return
    try:
        redaction = Redactor(REDACT.scanner).redact(req)
    except RedactionFailed:
        return  # the caller keeps it local
    for name, out in (("openai", openai_chat), ("anthropic", anthropic_messages)):
        wire = orjson.dumps(out.build_request(redaction.request, CLOUD[name], stream=True)).decode()
        for span in _spans(sample):
            assert span not in wire and json.dumps(span)[1:-1] not in wire, (carrier, name)
