"""Issue 5 end to end through the real proxy: privacy decides before routing and sensitive traffic never
reaches a cloud upstream.

Every cloud upstream is a recording fake on 127.0.0.1 marked `model_info: {location: cloud}` (a loopback
address would otherwise be inferred `local`); the local upstream is the fake Ollama. Covered here: the
global switch, agent policy, the `X-Tiergate-Privacy` header and `metadata.tiergate_privacy`, "nothing lowers
the level", `local_equivalents`, the refusal in each dialect's shape, no cloud fallback whatever the local
deployments do (down, slow, failing, cooling down) and even with a fallback configured from a local tier to a
cloud tier, the `x-tiergate-privacy` header, the usage record (decision and rule, never the matched text), the
`redact` action (OpenAI and Anthropic SDKs and the Responses API, streaming and not, end-user ids), the cache,
location inference, Ollama cloud tags, fields only a same-dialect pass-through forwards, the other endpoints
that carry text (embeddings, count_tokens), the optional classifier, and upstream redirects.

Generated requests (hypothesis) are in test_privacy_leaks.py, which imports the helpers defined here.

What the cache tests assert (issue 5 asks us to think about it): a cache hit never contacts any upstream, so
it cannot leak anything *now*. A request that is local now may be served a cached answer that a cloud model
gave earlier for the identical request only when that earlier request was itself allowed to go to the cloud
(its recorded decision was `any`: nothing sensitive in it and no local source). Sensitive content is
therefore never answered from a cloud-made cache entry unless the cloud only ever saw it masked (redact).
"""

from __future__ import annotations

import json
import logging
import random
import socket
from pathlib import Path
from typing import Any

import anthropic
import openai
import orjson
import pytest

from tests.fakes import Fault, Reply

# ------------------------------------------------------------------------------------- planted values
_rnd = random.Random(2024_05)
_ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def rand(n: int, alphabet: str = _ALNUM, rnd: random.Random = _rnd) -> str:
    """Random text over `alphabet` using every character class it has (digits, upper, lower)."""
    classes = [f for f in (str.isdigit, str.isupper, str.islower) if any(f(c) for c in alphabet)]
    while True:
        s = "".join(rnd.choice(alphabet) for _ in range(n))
        if all(any(f(c) for c in s) for f in classes):
            return s


# Assembled at run time so this file holds no literal credential.
OPENAI_KEY = "sk-" + "proj-" + rand(48) + "_" + rand(20)
GITHUB_TOKEN = "gh" + "p_" + rand(36)
EMAIL = "maria.gonzalez@acme-corp.eu"
SECRET_TEXT = f"deploy with OPENAI_API_KEY={OPENAI_KEY} please"

# ------------------------------------------------------------------------------------------- config
# coder: cloud first, then a local model (the router prefers a loaded local model within a tier, so clean
# traffic to coder may be served locally once its model is loaded). orchestrator: cloud only, local
# equivalent helper-local. gpt: OpenAI chat, cloud only. codex: a Responses-only cloud model. helper-local: local, with a fallback to the cloud tier helper-cloud.
# helper-cloud: cloud only, no local equivalent (refused when local).
CONFIG = """
model_list:
  - model_name: orchestrator
    litellm_params: {{model: anthropic/claude-opus-4-1, api_base: "{anthropic}", api_key: os.environ/ANTHROPIC_API_KEY}}
    model_info: {{location: cloud}}
  - model_name: coder
    litellm_params: {{model: openai/gpt-4o-mini, api_base: "{openai}/v1", api_key: os.environ/OPENAI_API_KEY}}
    model_info: {{location: cloud}}
  - model_name: coder
    litellm_params: {{model: ollama_chat/llama3.2:latest, api_base: "{ollama}", timeout: {local_timeout}}}
  - model_name: gpt
    litellm_params: {{model: openai/gpt-4.1-mini, api_base: "{openai}/v1", api_key: os.environ/OPENAI_API_KEY}}
    model_info: {{location: cloud}}
  - model_name: codex
    litellm_params: {{model: openai/gpt-5-codex, api_base: "{openai}/v1", api_key: os.environ/OPENAI_API_KEY}}
    model_info: {{location: cloud}}
  - model_name: helper-local
    litellm_params: {{model: ollama_chat/gemma3:4b, api_base: "{ollama}", timeout: {local_timeout}}}
  - model_name: helper-cloud
    litellm_params: {{model: anthropic/claude-haiku-4-5, api_base: "{anthropic}", api_key: os.environ/ANTHROPIC_API_KEY}}
    model_info: {{location: cloud}}
router_settings:
  num_retries: 0
  retry_after: 0.01
  allowed_fails: {allowed_fails}
  cooldown_time: 60
  fallbacks: [{{helper-local: [helper-cloud]}}, {{coder: [orchestrator]}}]
tiergate_settings:
  port: 0
{extra}  privacy:
    local_equivalents: {{orchestrator: helper-local}}
{privacy}"""

LOCAL_DEPLOYMENTS = {"coder/ollama/llama3.2:latest", "helper-local/ollama/gemma3:4b"}
CLOUD_DEPLOYMENTS = {"orchestrator/anthropic/claude-opus-4-1", "coder/openai/gpt-4o-mini", "gpt/openai/gpt-4.1-mini",
                     "codex/openai/gpt-5-codex", "helper-cloud/anthropic/claude-haiku-4-5"}


def config(*, allowed_fails: int = 1000, privacy: str = "", extra: str = "", local_timeout: float = 10.0) -> str:
    """CONFIG with `privacy` lines added under tiergate_settings.privacy and `extra` under tiergate_settings
    (both indented by the caller: 4 and 2 spaces). Braces in them must be doubled."""
    out = CONFIG
    for key, value in (("allowed_fails", allowed_fails), ("local_timeout", local_timeout), ("privacy", privacy),
                       ("extra", extra)):
        out = out.replace("{" + key + "}", str(value))
    return out


# ------------------------------------------------------------------------------------ HTTP helpers
PATHS = {"openai": "/v1/chat/completions", "anthropic": "/v1/messages", "responses": "/v1/responses"}
CHAT_PATHS = ("/v1/chat/completions", "/v1/messages", "/v1/responses", "/api/chat")


def body_for(dialect: str, model: str, text: str, **extra: Any) -> dict[str, Any]:
    """The smallest body of `dialect` with `text` as the user turn."""
    if dialect == "openai":
        return {"model": model, "messages": [{"role": "user", "content": text}], **extra}
    if dialect == "anthropic":
        return {"model": model, "max_tokens": 200, "messages": [{"role": "user", "content": text}], **extra}
    return {"model": model, "input": text, **extra}


async def send(p: Any, dialect: str, body: dict[str, Any], **kw: Any) -> tuple[int, dict[str, str], Any]:
    """POST `body` to the dialect's endpoint; a stream's body comes back as its list of SSE events."""
    status, headers, parsed = await p.request("POST", PATHS[dialect], json=body, **kw)
    if isinstance(parsed, str) and "text/event-stream" in headers.get("Content-Type", ""):
        parsed = sse_events(parsed)
    return status, headers, parsed


def sse_events(text: str) -> list[dict[str, Any]]:
    out = []
    for frame in text.split("\n\n"):
        for line in frame.splitlines():
            if line.startswith("data:"):
                data = line[5:].strip()
                if data and data != "[DONE]":
                    out.append(json.loads(data))
    return out


def answer_of(dialect: str, parsed: Any) -> tuple[str, str]:
    """(text, tool-call arguments) of a buffered answer or a list of stream events, in any dialect."""
    text, args = [], []
    if isinstance(parsed, list):
        for ev in parsed:
            if dialect == "openai":
                for ch in ev.get("choices") or ():
                    d = ch.get("delta") or {}
                    text.append(d.get("content") or "")
                    for tc in d.get("tool_calls") or ():
                        args.append((tc.get("function") or {}).get("arguments") or "")
            elif dialect == "anthropic":
                d = ev.get("delta") or {}
                if ev.get("type") == "content_block_delta":
                    text.append(d.get("text") or "")
                    args.append(d.get("partial_json") or "")
            elif ev.get("type") == "response.output_text.delta":
                text.append(ev["delta"])
            elif ev.get("type") == "response.function_call_arguments.delta":
                args.append(ev["delta"])
        return "".join(text), "".join(args)
    if dialect == "openai":
        msg = parsed["choices"][0]["message"]
        return msg.get("content") or "", "".join(t["function"]["arguments"] for t in msg.get("tool_calls") or ())
    if dialect == "anthropic":
        return ("".join(b["text"] for b in parsed["content"] if b["type"] == "text"),
                "".join(json.dumps(b["input"]) for b in parsed["content"] if b["type"] == "tool_use"))
    for item in parsed["output"]:
        if item["type"] == "message":
            text.extend(c["text"] for c in item["content"] if c["type"] == "output_text")
        elif item["type"] == "function_call":
            args.append(item["arguments"])
    return "".join(text), "".join(args)


def error_message(dialect: str, body: Any) -> tuple[str, str]:
    """(type, message) of an error body in the dialect's shape (asserting the shape)."""
    assert isinstance(body, dict), body
    if dialect == "anthropic":
        assert body["type"] == "error" and set(body["error"]) >= {"type", "message"}, body
        return body["error"]["type"], body["error"]["message"]
    err = body["error"]
    assert isinstance(err, dict) and isinstance(err["message"], str), body
    return err.get("type") or err.get("code"), err["message"]


def chat_requests(*fakes: Any) -> list[Any]:
    return [r for f in fakes for r in f.requests if r.path in CHAT_PATHS]


def forms(value: str) -> list[str]:
    """The ways a value can appear in a JSON body: as is, JSON-escaped, and ASCII-escaped."""
    return list(dict.fromkeys([value, json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=True)[1:-1]]))


def assert_never_sent(value: str, *fakes: Any) -> None:
    for r in (r for f in fakes for r in f.requests):
        raw = r.body.decode("utf-8", "replace")
        for form in forms(value):
            assert form not in raw, f"planted value reached {r.path}"


def use_resolver(p: Any, names: dict[str, str]) -> None:
    """Resolve the names a test maps to 127.0.0.1 and refuse every other name (no DNS in tests)."""

    async def resolve(host: str, port: int) -> list[str]:
        if host not in names:
            raise OSError(f"test resolver: {host} is not mapped")
        return [names[host]]

    p.core.http.resolver = resolve


async def records(p: Any) -> list[Any]:
    await p.core.ledger.flush()
    return await p.core.ledger.records()


MSG = [{"role": "user", "content": "hello there"}]
NO_CACHE = {"x-tiergate-cache": "off"}


# =========================================================================================== control
async def test_control_clean_traffic_reaches_the_cloud_fakes(proxy, fake_openai, fake_anthropic, fake_ollama):
    """The cloud fakes really are cloud here: clean traffic reaches each of them."""
    p = await proxy(config())
    for dialect, tier, fake in (("openai", "coder", fake_openai), ("anthropic", "orchestrator", fake_anthropic),
                                ("responses", "codex", fake_openai), ("openai", "helper-cloud", fake_anthropic)):
        before = len(chat_requests(fake))
        status, headers, body = await send(p, dialect, body_for(dialect, tier, "what is a monad?"))
        assert status == 200, body
        assert headers["x-tiergate-privacy"] == "any"
        assert headers["x-tiergate-deployment"] in CLOUD_DEPLOYMENTS
        assert len(chat_requests(fake)) == before + 1
    assert chat_requests(fake_ollama) == []


# ===================================================================================== global switch
async def test_global_switch_forces_all_traffic_local_and_back(proxy, fake_openai, fake_anthropic, fake_ollama):
    p = await proxy(config())
    status, _, body = await p.request("PUT", "/tiergate/privacy", key=p.master, json={"mode": "on"})
    assert (status, body["mode"]) == (200, "on")
    for dialect in PATHS:
        for stream in (False, True):
            for tier, deployment in (("coder", "coder/ollama/llama3.2:latest"),
                                     ("orchestrator", "helper-local/ollama/gemma3:4b"),
                                     ("helper-local", "helper-local/ollama/gemma3:4b")):
                text = f"clean {tier} {stream} {dialect}"
                status, headers, body = await send(p, dialect, body_for(dialect, tier, text, stream=stream))
                assert status == 200, body
                assert (headers["x-tiergate-privacy"], headers["x-tiergate-deployment"]) == ("local", deployment)
                assert answer_of(dialect, body)[0] == text
            for tier in ("helper-cloud", "codex", "gpt"):  # no local deployment, no local equivalent
                status, headers, body = await send(p, dialect, body_for(dialect, tier, "clean", stream=stream))
                assert status == 403 and headers["x-tiergate-privacy"] == "local"
                assert "privacy_switch" in error_message(dialect, body)[1]
    assert chat_requests(fake_openai, fake_anthropic) == []
    # and off again: clean traffic goes to the cloud
    status, _, body = await p.request("PUT", "/tiergate/privacy", key=p.master, json={"mode": "off"})
    assert (status, body["mode"]) == (200, "off")
    status, headers, _ = await send(p, "openai", body_for("openai", "orchestrator", "clean again"))
    assert (status, headers["x-tiergate-privacy"], headers["x-tiergate-deployment"]) == (
        200, "any", "orchestrator/anthropic/claude-opus-4-1")
    assert len(chat_requests(fake_anthropic)) == 1


async def test_agent_keys_cannot_flip_the_switch(proxy):
    p = await proxy(config())
    status, _, _ = await p.request("PUT", "/tiergate/privacy", json={"mode": "on"})
    assert status == 403 and p.core.privacy_mode() == "off"


async def test_switch_survives_a_restart(proxy, fake_openai, fake_anthropic):
    """`tiergate privacy on` persists: a core started later on the same data directory keeps everything local."""
    from app.core import Tiergate
    from tests.proxy.conftest import ENV, Proxy

    p = await proxy(config())
    await p.request("PUT", "/tiergate/privacy", key=p.master, json={"mode": "on"})
    await p.core.stop()
    core = Tiergate(p.core.config, data_dir=p.core.data_dir, env=ENV, secret_store=p.core.secret_store)
    await core.start()
    try:
        p2 = Proxy(core, p.key, p.master)
        assert core.privacy_mode() == "on"
        status, headers, _ = await send(p2, "openai", body_for("openai", "coder", "after restart"))
        assert (status, headers["x-tiergate-deployment"]) == (200, "coder/ollama/llama3.2:latest")
    finally:
        await core.stop()
    assert chat_requests(fake_openai, fake_anthropic) == []


async def test_offline_switch_file_written_by_the_cli_is_honoured(proxy, tmp_path, fake_openai):
    """`tiergate privacy on` with no server running writes the state file; the next start honours it."""
    from app.privacy.state import PrivacyState

    PrivacyState(tmp_path / "data" / "privacy.json").set(True, source="cli")
    p = await proxy(config())
    status, headers, _ = await send(p, "openai", body_for("openai", "coder", "hello"))
    assert (status, headers["x-tiergate-privacy"]) == (200, "local")
    assert chat_requests(fake_openai) == []


async def test_unreadable_switch_file_fails_closed(proxy, tmp_path, fake_openai):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "privacy.json").write_text("{not json")
    p = await proxy(config())
    status, headers, _ = await send(p, "openai", body_for("openai", "coder", "hello"))
    assert (status, headers["x-tiergate-privacy"]) == (200, "local")
    assert chat_requests(fake_openai) == []


# ====================================================================================== agent policy
async def test_agent_policy_local(proxy, fake_openai, fake_anthropic):
    p = await proxy(config(extra="  agents:\n    tester: {{privacy: local}}\n"))
    other = p.core.agents.add("other")
    for dialect in PATHS:
        status, headers, body = await send(p, dialect, body_for(dialect, "coder", f"tester asks {dialect}"))
        assert (status, headers["x-tiergate-privacy"], headers["x-tiergate-deployment"]) == (
            200, "local", "coder/ollama/llama3.2:latest"), body
        status, headers, body = await send(p, dialect, body_for(dialect, "helper-cloud", "tester asks"))
        assert status == 403 and "agent_policy" in error_message(dialect, body)[1]
    assert chat_requests(fake_openai, fake_anthropic) == []
    status, headers, _ = await send(p, "openai", body_for("openai", "gpt", "other asks"), key=other)
    assert (status, headers["x-tiergate-privacy"], headers["x-tiergate-deployment"]) == (
        200, "any", "gpt/openai/gpt-4.1-mini")
    recs = await records(p)
    assert {(r.agent, r.privacy, r.privacy_rule) for r in recs} == {
        ("tester", "local", "agent_policy"), ("other", "any", "")}


# ============================================================================= header and metadata
@pytest.mark.parametrize("value", ["local", "LOCAL", " Local ", "strict"])
async def test_header_makes_a_request_local(proxy, fake_openai, fake_anthropic, value):
    """Any value other than empty/`any` raises the level (fail closed on typos)."""
    p = await proxy(config())
    for dialect in PATHS:
        status, headers, body = await send(p, dialect, body_for(dialect, "coder", f"clean {dialect}"),
                                           headers={"X-Tiergate-Privacy": value})
        assert (status, headers["x-tiergate-privacy"], headers["x-tiergate-deployment"]) == (
            200, "local", "coder/ollama/llama3.2:latest"), body
    assert chat_requests(fake_openai, fake_anthropic) == []
    assert {r.privacy_rule for r in await records(p)} == {"header"}


async def test_metadata_makes_a_request_local_and_is_never_forwarded(proxy, fake_openai, fake_anthropic):
    p = await proxy(config())
    meta = {"metadata": {"tiergate_privacy": "local", "user_id": "u-1"}}
    for dialect in PATHS:
        status, headers, body = await send(p, dialect, body_for(dialect, "coder", f"clean {dialect}", **meta))
        assert (status, headers["x-tiergate-privacy"], headers["x-tiergate-deployment"]) == (
            200, "local", "coder/ollama/llama3.2:latest"), body
    assert chat_requests(fake_openai, fake_anthropic) == []
    assert {r.privacy_rule for r in await records(p)} == {"metadata"}
    # `any` in metadata is allowed through to the cloud, without Tiergate's key
    for dialect, tier, fake in (("openai", "gpt", fake_openai), ("anthropic", "orchestrator", fake_anthropic),
                                ("responses", "codex", fake_openai)):
        body = body_for(dialect, tier, f"clean {dialect}", metadata={"tiergate_privacy": "any", "user_id": "u-1"})
        status, headers, _ = await send(p, dialect, body)
        assert (status, headers["x-tiergate-privacy"]) == (200, "any")
        assert b"tiergate_privacy" not in chat_requests(fake)[-1].body


@pytest.mark.parametrize("lowering", ["header", "metadata", "both"])
async def test_nothing_lowers_the_level(proxy, fake_openai, fake_anthropic, lowering):
    p = await proxy(config(extra="  agents:\n    tester: {{privacy: any}}\n"))
    headers = {"X-Tiergate-Privacy": "any"} if lowering in ("header", "both") else {}
    extra = {"metadata": {"tiergate_privacy": "any"}} if lowering in ("metadata", "both") else {}
    # 1. a detector finding with "any" everywhere
    status, h, _ = await send(p, "openai", body_for("openai", "coder", SECRET_TEXT, **extra), headers=headers)
    assert (status, h["x-tiergate-privacy"], h["x-tiergate-deployment"]) == (
        200, "local", "coder/ollama/llama3.2:latest")
    # 2. the switch on, "any" everywhere
    await p.request("PUT", "/tiergate/privacy", key=p.master, json={"mode": "on"})
    status, h, _ = await send(p, "anthropic", body_for("anthropic", "coder", "clean", **extra), headers=headers)
    assert (status, h["x-tiergate-privacy"]) == (200, "local")
    await p.request("PUT", "/tiergate/privacy", key=p.master, json={"mode": "off"})
    # 3. header local, metadata any (and the reverse)
    status, h, _ = await send(p, "responses", body_for("responses", "coder", "clean", metadata={
        "tiergate_privacy": "any"}), headers={"X-Tiergate-Privacy": "local"})
    assert (status, h["x-tiergate-privacy"]) == (200, "local")
    status, h, _ = await send(p, "responses", body_for("responses", "coder", "clean2", metadata={
        "tiergate_privacy": "local"}), headers={"X-Tiergate-Privacy": "any"})
    assert (status, h["x-tiergate-privacy"]) == (200, "local")
    assert chat_requests(fake_openai, fake_anthropic) == []
    assert [r.privacy_rule for r in await records(p)] == [
        "secret.openai_key", "privacy_switch", "header", "metadata"]


# ================================================================================= local equivalents
async def test_local_equivalent_serves_a_cloud_only_tier(proxy, fake_anthropic, fake_ollama):
    p = await proxy(config())
    for dialect in PATHS:
        for stream in (False, True):
            text = f"{SECRET_TEXT} ({dialect}, {stream})"
            status, headers, body = await send(p, dialect, body_for(dialect, "orchestrator", text, stream=stream))
            assert status == 200, body
            assert (headers["x-tiergate-privacy"], headers["x-tiergate-tier"], headers["x-tiergate-deployment"]) == (
                "local", "helper-local", "helper-local/ollama/gemma3:4b")
            assert answer_of(dialect, body)[0] == text  # the local model's echo
    assert chat_requests(fake_anthropic) == []
    assert {c.model for c in fake_ollama.chat_calls} == {"gemma3:4b"}
    recs = await records(p)
    assert {(r.requested_model, r.tier, r.privacy, r.privacy_rule, r.location) for r in recs} == {
        ("orchestrator", "helper-local", "local", "secret.openai_key", "local")}


# ========================================================================================= refusals
@pytest.mark.parametrize("stream", [False, True], ids=["buffered", "stream"])
async def test_refusal_in_each_dialects_shape_names_rule_and_fix_never_the_text(proxy, fake_anthropic, stream):
    p = await proxy(config())
    expected_type = {"openai": "permission_error", "anthropic": "permission_error", "responses": None}
    for dialect in PATHS:
        status, headers, body = await send(p, dialect, body_for(dialect, "helper-cloud", SECRET_TEXT,
                                                                stream=stream))
        assert status == 403, body
        assert headers["x-tiergate-privacy"] == "local"
        kind, message = error_message(dialect, body)
        if expected_type[dialect]:
            assert kind == expected_type[dialect]
        assert "secret.openai_key" in message  # the rule
        assert "local_equivalents.helper-cloud" in message and "Ollama" in message  # the fix
        for form in forms(OPENAI_KEY):
            assert form not in json.dumps(body)
        assert OPENAI_KEY[:12] not in json.dumps(body)
    if not stream:
        assert body["error"]["code"] == "privacy_refused"
        status, _, body = await send(p, "openai", body_for("openai", "helper-cloud", SECRET_TEXT))
        assert body["error"]["code"] == "privacy_refused" and body["error"]["type"] == "permission_error"
    assert chat_requests(fake_anthropic) == []


async def test_refusal_through_the_sdks(proxy, fake_anthropic):
    p = await proxy(config())
    with pytest.raises(openai.PermissionDeniedError) as e:
        await p.openai().chat.completions.create(model="helper-cloud",
                                                 messages=[{"role": "user", "content": SECRET_TEXT}])
    assert e.value.body["code"] == "privacy_refused" and "secret.openai_key" in e.value.message
    with pytest.raises(anthropic.PermissionDeniedError) as e2:
        async with p.anthropic().messages.stream(model="helper-cloud", max_tokens=50,
                                                 messages=[{"role": "user", "content": SECRET_TEXT}]) as s:
            await s.get_final_message()
    assert "secret.openai_key" in e2.value.message
    with pytest.raises(openai.PermissionDeniedError):
        await p.openai().responses.create(model="codex", input=SECRET_TEXT)
    assert chat_requests(fake_anthropic) == []


# =============================================================== never a cloud fallback for local traffic
LOCAL_FAULTS = ["down", "slow", "failing", "cooling"]


async def _break_local(kind: str, p: Any, fake_ollama: Any) -> None:
    if kind == "down":
        await fake_ollama.close()
    elif kind == "slow":
        for _ in range(6):
            fake_ollama.faults.append(Fault.hang(2.0, path="/api/chat"))
    elif kind == "failing":
        for _ in range(40):
            fake_ollama.faults.append(Fault.status(500, "boom", path="/api/chat"))
    elif kind == "cooling":  # one failure (allowed_fails: 1) puts both local deployments in cooldown
        fake_ollama.faults += [Fault.status(500, "boom", path="/api/chat"), Fault.status(500, "boom", path="/api/chat")]
        for tier in ("coder", "helper-local"):
            status, _, _ = await send(p, "openai", body_for("openai", tier, f"warm-up {tier}"),
                                      headers={**NO_CACHE, "X-Tiergate-Privacy": "local"})
            assert status == 403  # the local deployment failed: refused, nothing sent to a cloud
        health = p.core.router.health
        assert {health.get(d).state for d in LOCAL_DEPLOYMENTS} == {"cooling_down"}


@pytest.mark.parametrize("kind", LOCAL_FAULTS)
async def test_no_cloud_fallback_when_local_deployments_are_unusable(proxy, fake_openai, fake_anthropic,
                                                                    fake_ollama, kind):
    """coder lists a cloud deployment and falls back to orchestrator (cloud); helper-local falls back to
    helper-cloud; none of that may serve a local request."""
    p = await proxy(config(allowed_fails=1 if kind == "cooling" else 1000,
                           local_timeout=0.5 if kind == "slow" else 10))
    await _break_local(kind, p, fake_ollama)
    chats_before = len(chat_requests(fake_ollama)) if kind != "down" else 0
    for dialect in PATHS:
        for tier in ("coder", "helper-local", "orchestrator"):
            for stream in (False, True):
                if kind == "slow" and (dialect, stream) not in (("openai", False), ("anthropic", True)):
                    continue  # each slow case waits for the timeout: two are enough here
                status, headers, body = await send(p, dialect, body_for(dialect, tier, SECRET_TEXT, stream=stream),
                                                   headers=NO_CACHE)
                assert status >= 400, (dialect, tier, stream, body)
                assert headers["x-tiergate-privacy"] == "local"
                kind_, message = error_message(dialect, body)
                assert OPENAI_KEY not in message
    assert chat_requests(fake_openai, fake_anthropic) == []
    assert_never_sent(OPENAI_KEY, fake_openai, fake_anthropic)
    if kind == "cooling":
        assert len(chat_requests(fake_ollama)) == chats_before  # not even tried while cooling down
    recs = [r for r in await records(p) if not r.requested_model.startswith("warm")]
    assert all(r.privacy == "local" and r.location in ("", "local") for r in recs)


@pytest.mark.parametrize("kind", LOCAL_FAULTS)
async def test_unusable_local_deployments_give_a_clear_privacy_refusal(proxy, fake_openai, fake_anthropic,
                                                                      fake_ollama, kind):
    """The client is told the request was kept local on purpose, with the rule and the fix — not a bare
    'every deployment failed' 502 (PrivacyPolicy.refusal(all_down=True) has the message)."""
    p = await proxy(config(allowed_fails=1 if kind == "cooling" else 1000,
                           local_timeout=0.5 if kind == "slow" else 10))
    await _break_local(kind, p, fake_ollama)
    for dialect in ("openai", "anthropic", "responses"):
        status, headers, body = await send(p, dialect, body_for(dialect, "coder", SECRET_TEXT), headers=NO_CACHE)
        _, message = error_message(dialect, body)
        assert status == 403, (dialect, status, message)
        assert "secret.openai_key" in message and "not sent to a cloud" in message, message
        if kind == "slow":
            break
    assert chat_requests(fake_openai, fake_anthropic) == []


async def test_clean_traffic_does_use_the_configured_cloud_fallback(proxy, fake_anthropic, fake_ollama):
    """Control for the test above: the fallback from the local tier to the cloud tier is configured and works."""
    p = await proxy(config())
    fake_ollama.faults.append(Fault.status(500, "boom", path="/api/chat"))
    status, headers, _ = await send(p, "openai", body_for("openai", "helper-local", "clean"))
    assert (status, headers["x-tiergate-privacy"], headers["x-tiergate-deployment"]) == (
        200, "any", "helper-cloud/anthropic/claude-haiku-4-5")
    assert len(chat_requests(fake_anthropic)) == 1
    # the same with a secret: no fallback
    fake_ollama.faults.append(Fault.status(500, "boom", path="/api/chat"))
    status, headers, _ = await send(p, "openai", body_for("openai", "helper-local", SECRET_TEXT))
    assert status >= 400 and headers["x-tiergate-privacy"] == "local"
    assert len(chat_requests(fake_anthropic)) == 1


async def test_local_recovers_after_failures(proxy, fake_openai, fake_anthropic, fake_ollama):
    p = await proxy(config())
    fake_ollama.faults.append(Fault.status(500, "boom", path="/api/chat"))
    status, _, _ = await send(p, "openai", body_for("openai", "coder", SECRET_TEXT), headers=NO_CACHE)
    assert status >= 400
    status, headers, body = await send(p, "openai", body_for("openai", "coder", SECRET_TEXT), headers=NO_CACHE)
    assert (status, headers["x-tiergate-deployment"]) == (200, "coder/ollama/llama3.2:latest"), body
    assert chat_requests(fake_openai, fake_anthropic) == []


# ============================================================================ ledger and logs: no text
async def test_usage_record_has_decision_and_rule_never_the_matched_text(proxy, tmp_path, caplog, fake_openai,
                                                                        fake_ollama):
    caplog.set_level(logging.DEBUG)
    p = await proxy(config())
    fake_ollama.replies += [Reply(text="done"), Reply(text="done")]
    secret_email = f"contact {EMAIL} today"
    for dialect, text in (("openai", SECRET_TEXT), ("anthropic", secret_email)):
        status, headers, _ = await send(p, dialect, body_for(dialect, "coder", text))
        assert status == 200 and headers["x-tiergate-privacy"] == "local"
    status, _, body = await send(p, "responses", body_for("responses", "helper-cloud", SECRET_TEXT))
    assert status == 403
    recs = await records(p)
    assert [(r.privacy, r.privacy_rule, r.status, r.location) for r in recs] == [
        ("local", "secret.openai_key", "ok", "local"), ("local", "pii.email", "ok", "local"),
        ("local", "secret.openai_key", "refused", "")]
    await p.core.stop()
    data = tmp_path / "data"
    files = [f for f in data.iterdir() if f.is_file() and not f.name.startswith("cache.sqlite3")]
    assert any(f.name.startswith("usage.sqlite3") for f in files)
    for f in files:
        raw = f.read_bytes()
        for value in (OPENAI_KEY, EMAIL, GITHUB_TOKEN):
            assert value.encode() not in raw, f.name
    for value in (OPENAI_KEY, EMAIL, GITHUB_TOKEN):
        assert value not in caplog.text
    assert "secret.openai_key" in caplog.text or '"privacy":"local"' in caplog.text


async def test_cache_database_holds_no_request_text(proxy, tmp_path, fake_ollama):
    """The cache keys requests by hash: with an answer that does not quote the secret, no stored byte holds it.
    (An answer that quotes it is stored as the answer: local data, like the conversation itself.)"""
    p = await proxy(config())
    fake_ollama.replies.append(Reply(text="done"))
    status, _, _ = await send(p, "openai", body_for("openai", "coder", SECRET_TEXT))
    assert status == 200
    status, headers, _ = await send(p, "openai", body_for("openai", "coder", SECRET_TEXT))
    assert headers["x-tiergate-deployment"] == "cache"
    await p.core.stop()
    for f in (tmp_path / "data").iterdir():
        if f.is_file():
            assert OPENAI_KEY.encode() not in f.read_bytes(), f.name


# ===================================================================================== redact action
REDACT = config(privacy="    action: redact\n")


@pytest.mark.parametrize("stream", [False, True], ids=["buffered", "stream"])
async def test_redact_openai_sdk(proxy, fake_openai, fake_ollama, stream):
    p = await proxy(REDACT)
    text = f"mail {EMAIL} the key {OPENAI_KEY} and again {EMAIL}"
    fake_openai.replies.append(Reply(text="Sent to «TG_EMAIL_1» with «TG_SECRET_1».", chunks=9,
                                     tool_calls=[("send", json.dumps({"to": "«TG_EMAIL_1»",
                                                                      "key": "«TG_SECRET_1»"}))]))
    client = p.openai()
    if stream:
        s = await client.chat.completions.create(model="coder", messages=[{"role": "user", "content": text}],
                                                 stream=True)
        content, args = "", ""
        async for chunk in s:
            for ch in chunk.choices:
                content += ch.delta.content or ""
                for tc in ch.delta.tool_calls or ():
                    args += tc.function.arguments or ""
    else:
        raw = await client.chat.completions.with_raw_response.create(
            model="coder", messages=[{"role": "user", "content": text}])
        r = raw.parse()
        content, args = r.choices[0].message.content, r.choices[0].message.tool_calls[0].function.arguments
        assert raw.headers["x-tiergate-deployment"] == "coder/openai/gpt-4o-mini"
    assert content == f"Sent to {EMAIL} with {OPENAI_KEY}."
    assert json.loads(args) == {"to": EMAIL, "key": OPENAI_KEY}
    sent = chat_requests(fake_openai)[-1].json
    assert sent["messages"] == [
        {"role": "user", "content": "mail «TG_EMAIL_1» the key «TG_SECRET_1» and again «TG_EMAIL_1»"}]
    assert_never_sent(OPENAI_KEY, fake_openai)
    assert_never_sent(EMAIL, fake_openai)
    assert chat_requests(fake_ollama) == []
    rec = (await records(p))[-1]
    assert (rec.privacy, rec.privacy_rule, rec.location) == ("any", "pii.email", "cloud")


@pytest.mark.parametrize("stream", [False, True], ids=["buffered", "stream"])
async def test_redact_anthropic_sdk(proxy, fake_anthropic, stream):
    p = await proxy(REDACT)
    system = f"The deploy key is {OPENAI_KEY}."
    messages = [{"role": "user", "content": [{"type": "text", "text": f"write to {EMAIL}"}]},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "read_env",
                                                   "input": {"path": ".env"}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                                              "content": f"TOKEN={GITHUB_TOKEN}"}]}]
    fake_anthropic.replies.append(Reply(text="Using «TG_SECRET_1» for «TG_EMAIL_1» («TG_SECRET_2»).", chunks=11))
    client = p.anthropic()
    if stream:
        async with client.messages.stream(model="orchestrator", max_tokens=100, system=system,
                                          messages=messages) as s:
            final = await s.get_final_message()
    else:
        final = await client.messages.create(model="orchestrator", max_tokens=100, system=system, messages=messages)
    restored = final.content[0].text
    assert restored == f"Using {OPENAI_KEY} for {EMAIL} ({GITHUB_TOKEN})."
    sent = chat_requests(fake_anthropic)[-1].json
    system = sent["system"] if isinstance(sent["system"], str) else sent["system"][0]["text"]
    assert system == "The deploy key is «TG_SECRET_1»."
    assert sent["messages"][0]["content"][0]["text"] == "write to «TG_EMAIL_1»"
    assert sent["messages"][2]["content"][0]["content"] in ("TOKEN=«TG_SECRET_2»",
                                                            [{"type": "text", "text": "TOKEN=«TG_SECRET_2»"}])
    for value in (OPENAI_KEY, EMAIL, GITHUB_TOKEN):
        assert_never_sent(value, fake_anthropic)


IBAN = "DE89 3704 0044 0532 0130 00"


@pytest.mark.parametrize("stream", [False, True], ids=["buffered", "stream"])
async def test_redact_responses_api(proxy, fake_openai, stream):
    p = await proxy(REDACT)
    fake_openai.replies.append(Reply(text="Paying «TG_IBAN_1» for «TG_EMAIL_1».", chunks=13,
                                     tool_calls=[("pay", json.dumps({"iban": "«TG_IBAN_1»"}))]))
    body = {"model": "codex", "instructions": f"customer {EMAIL}", "stream": stream, "input": [
        {"role": "user", "content": [{"type": "input_text", "text": f"pay to {IBAN}"}]}]}
    status, headers, out = await send(p, "responses", body)
    assert (status, headers["x-tiergate-deployment"]) == (200, "codex/openai/gpt-5-codex"), out
    text, args = answer_of("responses", out)
    assert text == f"Paying {IBAN} for {EMAIL}." and json.loads(args) == {"iban": IBAN}
    sent = chat_requests(fake_openai)[-1]
    assert sent.path == "/v1/responses" and sent.json["instructions"] == "customer «TG_EMAIL_1»"
    for value in (EMAIL, IBAN, IBAN.replace(" ", "")):
        assert_never_sent(value, fake_openai)


async def test_redact_keeps_unmaskable_requests_local(proxy, fake_openai, fake_anthropic):
    """A path rule cannot be masked (what is sensitive is the file's content): the request stays local."""
    p = await proxy(config(privacy='    action: redact\n    rules: [{{name: medical, paths: ["/srv/medical/**"]}}]\n'))
    status, headers, body = await send(p, "openai", body_for("openai", "coder", f"cat /srv/medical/x.txt {EMAIL}"))
    assert (status, headers["x-tiergate-privacy"], headers["x-tiergate-deployment"]) == (
        200, "local", "coder/ollama/llama3.2:latest"), body
    assert chat_requests(fake_openai, fake_anthropic) == []
    assert (await records(p))[-1].privacy_rule == "rule.medical"


async def test_redact_with_a_local_source_stays_local(proxy, fake_openai, fake_anthropic):
    """Redaction is for detector findings only: the header (or switch, agent, metadata) keeps it local."""
    p = await proxy(REDACT)
    status, headers, _ = await send(p, "anthropic", body_for("anthropic", "coder", f"mail {EMAIL}"),
                                    headers={"X-Tiergate-Privacy": "local"})
    assert (status, headers["x-tiergate-privacy"], headers["x-tiergate-deployment"]) == (
        200, "local", "coder/ollama/llama3.2:latest")
    assert chat_requests(fake_openai, fake_anthropic) == []


# ============================================================================================= cache
async def test_cache_sensitive_requests_are_served_locally_or_from_their_own_local_answer(
        proxy, fake_openai, fake_anthropic, fake_ollama):
    p = await proxy(config())
    for dialect in PATHS:
        for stream in (False, True):
            status, headers, body = await send(p, dialect, body_for(dialect, "coder", SECRET_TEXT, stream=stream))
            assert status == 200 and headers["x-tiergate-privacy"] == "local"
            assert headers["x-tiergate-deployment"] == ("cache" if stream else "coder/ollama/llama3.2:latest") \
                or dialect == "responses"  # same key as the OpenAI chat request: a hit at once
            assert answer_of(dialect, body)[0] == SECRET_TEXT
    assert chat_requests(fake_openai, fake_anthropic) == []
    assert len(chat_requests(fake_ollama)) == 2  # OpenAI chat and Responses share an entry; Anthropic's has max_tokens


async def test_cache_hit_after_the_switch_comes_from_a_request_that_was_allowed_out(proxy, fake_openai,
                                                                                     fake_anthropic):
    """A clean answer from the cloud may be replayed once the switch is on: the identical content was allowed
    out then (decision `any`), and the hit contacts no upstream now."""
    p = await proxy(config())
    status, headers, _ = await send(p, "openai", body_for("openai", "coder", "what is a monad?"))
    assert (status, headers["x-tiergate-deployment"]) == (200, "coder/openai/gpt-4o-mini")
    await p.request("PUT", "/tiergate/privacy", key=p.master, json={"mode": "on"})
    status, headers, body = await send(p, "openai", body_for("openai", "coder", "what is a monad?"))
    assert (status, headers["x-tiergate-privacy"], headers["x-tiergate-deployment"]) == (200, "local", "cache")
    assert len(chat_requests(fake_openai, fake_anthropic)) == 1
    first, hit = await records(p)
    assert (first.privacy, first.location, hit.privacy, hit.cache_hit) == ("any", "cloud", "local", True)


async def test_cache_never_replays_a_cloud_answer_for_content_that_was_sensitive(proxy, fake_openai, fake_anthropic,
                                                                                fake_ollama):
    """The only way a sensitive request reaches the cloud is masked (redact); switching to keep_local later
    and asking again is served locally or from that masked exchange's restored answer — never by a new
    cloud call."""
    p = await proxy(REDACT)
    status, headers, _ = await send(p, "openai", body_for("openai", "coder", SECRET_TEXT))
    assert (status, headers["x-tiergate-deployment"]) == (200, "coder/openai/gpt-4o-mini")
    assert_never_sent(OPENAI_KEY, fake_openai)
    from app.config.loader import parse_config

    keep_local = config().format(openai=fake_openai.base_url, anthropic=fake_anthropic.base_url,
                                 ollama=fake_ollama.base_url)
    assert await p.core.reload_config(parse_config(keep_local, str(p.core.config.path)))
    status, headers, body = await send(p, "openai", body_for("openai", "coder", SECRET_TEXT))
    assert status == 200 and headers["x-tiergate-privacy"] == "local"
    assert len(chat_requests(fake_openai)) == 1


@pytest.mark.parametrize("cache", ["on", "off"])
async def test_redact_with_cache_replays_restored_values(proxy, fake_openai, cache):
    p = await proxy(REDACT)
    headers = NO_CACHE if cache == "off" else {}
    for _ in range(2):
        status, h, body = await send(p, "openai", body_for("openai", "coder", f"echo {EMAIL}"), headers=headers)
        assert status == 200 and answer_of("openai", body)[0] == f"echo {EMAIL}"
    assert h["x-tiergate-deployment"] == ("cache" if cache == "on" else "coder/openai/gpt-4o-mini")
    assert len(chat_requests(fake_openai)) == (1 if cache == "on" else 2)
    assert_never_sent(EMAIL, fake_openai)


# ================================================================================ location inference
LOCATIONS = """
model_list:
  - model_name: t-ollama
    litellm_params: {{model: ollama_chat/llama3.2:latest, api_base: "{ollama}"}}
  - model_name: t-ipv4
    litellm_params: {{model: openai/m1, api_base: "{openai}/v1", api_key: os.environ/OPENAI_API_KEY}}
  - model_name: t-localhost
    litellm_params: {{model: openai/m2, api_base: "http://localhost:{openai_port}/v1", api_key: os.environ/OPENAI_API_KEY}}
  - model_name: t-ipv6
    litellm_params: {{model: openai/m3, api_base: "http://[::1]:9/v1", api_key: os.environ/OPENAI_API_KEY}}
  - model_name: t-evil
    litellm_params: {{model: openai/m4, api_base: "http://localhost.evil.com:{openai_port}/v1", api_key: os.environ/OPENAI_API_KEY}}
  - model_name: t-nip
    litellm_params: {{model: openai/m5, api_base: "http://127.0.0.1.nip.io:{openai_port}/v1", api_key: os.environ/OPENAI_API_KEY}}
  - model_name: t-trusted
    litellm_params: {{model: openai/m6, api_base: "http://gpu-box.lan:{openai_port}/v1", api_key: os.environ/OPENAI_API_KEY}}
  - model_name: t-untrusted
    litellm_params: {{model: openai/m7, api_base: "http://other-box.lan:{openai_port}/v1", api_key: os.environ/OPENAI_API_KEY}}
  - model_name: t-explicit-cloud
    litellm_params: {{model: ollama_chat/gemma3:4b, api_base: "{ollama}"}}
    model_info: {{location: cloud}}
  - model_name: t-explicit-local
    litellm_params: {{model: openai/m8, api_base: "http://llm.example.test:{openai_port}/v1", api_key: os.environ/OPENAI_API_KEY}}
    model_info: {{location: local}}
  - model_name: t-ollama-cloud-tag
    litellm_params: {{model: ollama_chat/gpt-oss:120b-cloud, api_base: "{ollama}"}}
  - model_name: t-ollama-cloud-tag
    litellm_params: {{model: ollama_chat/llama3.2:latest, api_base: "{ollama}"}}
  - model_name: t-ollama-cloud-only
    litellm_params: {{model: ollama/glm-4.6:cloud, api_base: "{ollama}"}}
  - model_name: t-userinfo
    litellm_params: {{model: openai/m9, api_base: "http://127.0.0.1:{openai_port}@evil.example/v1", api_key: os.environ/OPENAI_API_KEY}}
  - model_name: t-any-address
    litellm_params: {{model: openai/m10, api_base: "http://0.0.0.0:{openai_port}/v1", api_key: os.environ/OPENAI_API_KEY}}
  - model_name: t-shorthand
    litellm_params: {{model: openai/m11, api_base: "http://127.1:{openai_port}/v1", api_key: os.environ/OPENAI_API_KEY}}
  - model_name: t-upper-localhost
    litellm_params: {{model: openai/m12, api_base: "http://LOCALHOST:{openai_port}/v1", api_key: os.environ/OPENAI_API_KEY}}
  - model_name: t-mapped
    litellm_params: {{model: openai/m13, api_base: "http://[::ffff:127.0.0.1]:9/v1", api_key: os.environ/OPENAI_API_KEY}}
  - model_name: t-trusted-net
    litellm_params: {{model: openai/m14, api_base: "http://10.20.1.5:9/v1", api_key: os.environ/OPENAI_API_KEY}}
  - model_name: t-untrusted-net
    litellm_params: {{model: openai/m15, api_base: "http://10.21.0.1:9/v1", api_key: os.environ/OPENAI_API_KEY}}
router_settings:
  num_retries: 0
tiergate_settings:
  port: 0
  privacy:
    trusted_hosts: [gpu-box.lan, 10.20.0.0/16]
"""

EXPECTED_LOCATIONS = {
    "t-ollama": "local", "t-ipv4": "local", "t-localhost": "local", "t-ipv6": "local", "t-evil": "cloud",
    "t-nip": "cloud", "t-trusted": "trusted", "t-untrusted": "cloud", "t-explicit-cloud": "cloud",
    "t-explicit-local": "local", "t-ollama-cloud-only": "cloud", "t-userinfo": "cloud", "t-any-address": "cloud",
    "t-shorthand": "cloud", "t-upper-localhost": "local", "t-mapped": "local", "t-trusted-net": "trusted",
    "t-untrusted-net": "cloud",
}
UNREACHABLE = {"t-ipv6", "t-mapped", "t-trusted-net"}  # local/trusted, but nothing of ours listens there


async def _locations_proxy(proxy: Any, fake_openai: Any) -> Any:
    p = await proxy(LOCATIONS.replace("{openai_port}", str(fake_openai.port)))
    # Names resolve to the fake (and nothing else resolves at all): no DNS, no traffic off this machine.
    use_resolver(p, {"localhost": "127.0.0.1", "LOCALHOST": "127.0.0.1", "gpu-box.lan": "127.0.0.1", "other-box.lan": "127.0.0.1",
                     "llm.example.test": "127.0.0.1", "localhost.evil.com": "127.0.0.1",
                     "127.0.0.1.nip.io": "127.0.0.1"})
    return p


async def test_location_inference_reported_and_enforced(proxy, fake_openai, fake_ollama):
    p = await _locations_proxy(proxy, fake_openai)
    status, _, body = await p.request("GET", "/health/upstreams", key=p.master)
    locations = {d["tier"]: d["location"] for d in body["deployments"]}
    assert {t: locations[t] for t in EXPECTED_LOCATIONS} == EXPECTED_LOCATIONS
    local = {"X-Tiergate-Privacy": "local"}
    for tier, where in EXPECTED_LOCATIONS.items():
        if tier in UNREACHABLE:
            continue  # its location is checked above; a request would connect to an address no fake has
        before = len(chat_requests(fake_openai)) + len(chat_requests(fake_ollama))
        status, headers, body = await send(p, "openai", body_for("openai", tier, f"to {tier}"), headers=local)
        after = len(chat_requests(fake_openai)) + len(chat_requests(fake_ollama))
        if where == "cloud":
            assert status == 403 and after == before, (tier, body)
            assert error_message("openai", body)[0] == "permission_error"
        else:
            assert status == 200 and after == before + 1, (tier, body)
            assert headers["x-tiergate-privacy"] == "local"
    # and without the header every tier is served (the cloud ones through the test resolver)
    for tier in ("t-evil", "t-untrusted"):
        status, _, body = await send(p, "openai", body_for("openai", tier, "clean"))
        assert status == 200, body


async def test_ollama_cloud_tag_is_never_used_for_local_requests(proxy, fake_openai, fake_ollama):
    from tests.fakes.ollama_server import FakeModel

    fake_ollama.add_model(FakeModel("gpt-oss:120b-cloud"))
    p = await _locations_proxy(proxy, fake_openai)
    # clean traffic may use the cloud tag (it is first in its tier)
    status, headers, _ = await send(p, "openai", body_for("openai", "t-ollama-cloud-tag", "clean"))
    assert (status, headers["x-tiergate-deployment"]) == (200, "t-ollama-cloud-tag/ollama/gpt-oss:120b-cloud")
    fake_ollama.chat_calls.clear()
    for _ in range(3):
        status, headers, _ = await send(p, "anthropic", body_for("anthropic", "t-ollama-cloud-tag", SECRET_TEXT),
                                        headers=NO_CACHE)
        assert (status, headers["x-tiergate-deployment"]) == (200, "t-ollama-cloud-tag/ollama/llama3.2:latest")
    assert {c.model for c in fake_ollama.chat_calls} == {"llama3.2:latest"}
    status, _, body = await send(p, "anthropic", body_for("anthropic", "t-ollama-cloud-only", SECRET_TEXT))
    assert status == 403 and "secret.openai_key" in error_message("anthropic", body)[1]


OLLAMA_V1_CLOUD = """
model_list:
  - model_name: big
    litellm_params: {{model: openai/gpt-oss:120b-cloud, api_base: "{ollama}/v1"}}
  - model_name: small
    litellm_params: {{model: openai/llama3.2:latest, api_base: "{ollama}/v1"}}
router_settings:
  num_retries: 0
tiergate_settings:
  port: 0
"""


async def test_ollama_cloud_tag_through_ollamas_openai_endpoint_counts_as_cloud(proxy, fake_ollama):
    """Ollama forwards `…cloud` models to ollama.com whichever of its APIs is used; LiteLLM configs commonly
    reach Ollama as `openai/<model>` at `http://localhost:11434/v1`. Such a deployment must count as cloud."""
    p = await proxy(OLLAMA_V1_CLOUD)
    status, _, body = await p.request("GET", "/health/upstreams", key=p.master)
    locations = {d["tier"]: d["location"] for d in body["deployments"]}
    assert locations["small"] == "local"
    status, _, body = await send(p, "openai", body_for("openai", "big", SECRET_TEXT))
    assert [r.path for r in fake_ollama.requests if r.path.startswith("/v1")] == []
    assert locations["big"] == "cloud"
    assert status == 403


# =============================================================== fields only a pass-through forwards
_CITE = {"type": "char_location", "cited_text": EMAIL, "document_index": 0, "document_title": "crm",
         "start_char_index": 0, "end_char_index": 27}
PASSTHROUGH_PLACES: dict[str, tuple[str, str, dict[str, Any]]] = {
    # name: (dialect, tier whose cloud upstream speaks the same dialect, body)
    "openai.message_name": ("openai", "gpt", {"messages": [
        {"role": "user", "content": "hi", "name": GITHUB_TOKEN}]}),
    "openai.legacy_function_call": ("openai", "gpt", {"messages": [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": None, "function_call": {"name": "send", "arguments": json.dumps(
            {"to": EMAIL})}},
        {"role": "user", "content": "go on"}]}),
    "openai.assistant_refusal": ("openai", "gpt", {"messages": [
        {"role": "user", "content": "hi"}, {"role": "assistant", "content": "no", "refusal": f"not {EMAIL}"},
        {"role": "user", "content": "go on"}]}),
    "anthropic.text_citations": ("anthropic", "orchestrator", {"max_tokens": 50, "messages": [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": [{"type": "text", "text": "see the record", "citations": [_CITE]}]},
        {"role": "user", "content": "go on"}]}),
    "anthropic.system_citations": ("anthropic", "orchestrator", {"max_tokens": 50, "system": [
        {"type": "text", "text": "context", "citations": [_CITE]}], "messages": [{"role": "user", "content": "hi"}]}),
    "responses.reasoning_summary": ("responses", "codex", {"input": [
        {"role": "user", "content": "hi"},
        {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": f"user is {EMAIL}"}]},
        {"role": "user", "content": "go on"}]}),
    "responses.output_annotations": ("responses", "codex", {"input": [
        {"role": "user", "content": "hi"},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "see", "annotations": [
            {"type": "url_citation", "url": "https://crm.example/p", "title": EMAIL, "start_index": 0,
             "end_index": 3}]}]},
        {"role": "user", "content": "go on"}]}),
}


@pytest.mark.parametrize("place", sorted(PASSTHROUGH_PLACES))
async def test_fields_only_the_pass_through_forwards_are_scanned(proxy, fake_openai, fake_anthropic, place):
    """Same dialect in and out: the client's body is forwarded as is, so every text in it must be scanned,
    including the fields the canonical model does not carry."""
    dialect, tier, extra = PASSTHROUGH_PLACES[place]
    p = await proxy(config())
    status, headers, body = await send(p, dialect, {"model": tier, **extra})
    assert_never_sent(EMAIL, fake_openai, fake_anthropic)
    assert_never_sent(GITHUB_TOKEN, fake_openai, fake_anthropic)
    assert headers["x-tiergate-privacy"] == "local", body


# ==================================================================== the other endpoints that carry text
async def test_embeddings_of_sensitive_text_stay_local(proxy, fake_openai, fake_anthropic, fake_ollama):
    p = await proxy(config())
    status, headers, body = await p.request("POST", "/v1/embeddings", json={"model": "coder", "input": [
        "harmless", f"customer {EMAIL}"]})
    assert (status, headers["x-tiergate-privacy"], headers["x-tiergate-deployment"]) == (
        200, "local", "coder/ollama/llama3.2:latest"), body
    status, headers, body = await p.request("POST", "/v1/embeddings", json={"model": "gpt", "input": SECRET_TEXT})
    assert status == 403 and body["error"]["code"] == "privacy_refused"
    assert chat_requests(fake_openai, fake_anthropic) == [] and [r for r in fake_openai.requests] == []
    assert [r.path for r in fake_ollama.requests if r.path == "/api/embed"] == ["/api/embed"]


async def test_count_tokens_of_sensitive_text_never_asks_anthropic(proxy, fake_anthropic):
    p = await proxy(config())
    body = body_for("anthropic", "orchestrator", SECRET_TEXT)
    status, headers, out = await p.request("POST", "/v1/messages/count_tokens", json=body)
    assert status == 200 and headers["x-tiergate-estimate"] == "true" and out["input_tokens"] > 0
    status, headers, out = await p.request("POST", "/v1/messages/count_tokens",
                                           json=body_for("anthropic", "orchestrator", "clean"))
    assert status == 200 and headers["x-tiergate-estimate"] == "false"  # control: clean text is counted upstream
    assert [r.path for r in fake_anthropic.requests] == ["/v1/messages/count_tokens"]
    assert_never_sent(OPENAI_KEY, fake_anthropic)


async def test_redact_embeddings_never_send_the_original(proxy, fake_openai):
    """With `action: redact` the decision is `any` (+ redact): the chat path masks the request, and so must
    every other path that sends the text to a cloud deployment — or keep it local."""
    p = await proxy(REDACT)
    status, headers, body = await p.request("POST", "/v1/embeddings", json={"model": "gpt",
                                                                           "input": [f"customer {EMAIL}"]})
    assert_never_sent(EMAIL, fake_openai)


async def test_redact_count_tokens_never_sends_the_original(proxy, fake_anthropic):
    p = await proxy(REDACT)
    status, headers, out = await p.request("POST", "/v1/messages/count_tokens",
                                           json=body_for("anthropic", "orchestrator", SECRET_TEXT))
    assert status == 200
    assert_never_sent(OPENAI_KEY, fake_anthropic)


async def test_concrete_cloud_deployment_name_is_refused_for_local_requests(proxy, fake_openai):
    p = await proxy(config())
    status, headers, body = await send(p, "openai", body_for("openai", "openai/gpt-4o-mini", SECRET_TEXT))
    assert status == 403 and headers["x-tiergate-privacy"] == "local"
    assert "secret.openai_key" in body["error"]["message"]
    assert chat_requests(fake_openai) == []


async def test_classifier_on_a_cloud_tier_never_sends_the_text(proxy, fake_openai, fake_anthropic, fake_ollama):
    """The optional classifier asks a local model; pointed at a cloud-only tier it cannot run, and the request
    is treated as sensitive (`classifier_*`) rather than classified in the cloud."""
    p = await proxy(config(privacy="    classifier: {{enabled: true, tier: gpt, timeout: 1.0}}\n"))
    status, headers, body = await send(p, "openai", body_for("openai", "coder", "tell me about the merger"))
    assert (status, headers["x-tiergate-privacy"]) == (200, "local"), body
    assert chat_requests(fake_openai, fake_anthropic) == []
    assert (await records(p))[-1].privacy_rule.startswith("classifier")


# ======================================================= redirects: an upstream cannot send the body elsewhere
@pytest.mark.parametrize("status_code", [307, 308])
async def test_local_upstream_redirect_to_a_cloud_host_is_not_followed(proxy, fake_anthropic, fake_ollama,
                                                                       status_code):
    """A local deployment (here Ollama) that answers with a redirect must not make Tiergate re-send the
    sensitive body to the redirect's host: upstream addresses come from the config only."""
    p = await proxy(config())
    fake_ollama.faults.append(Fault.status(status_code, "moved", path="/api/chat",
                                           headers={"Location": fake_anthropic.base_url + "/v1/messages"}))
    status, headers, body = await send(p, "openai", body_for("openai", "helper-local", SECRET_TEXT),
                                       headers=NO_CACHE)
    assert headers["x-tiergate-privacy"] == "local"
    assert fake_anthropic.requests == []
    assert status >= 400, body


# ================================================================ redact: the end-user id fields
@pytest.mark.parametrize("dialect,tier,field", [
    ("openai", "orchestrator", {"user": EMAIL}),
    ("openai", "gpt", {"user": EMAIL}),
    ("anthropic", "gpt", {"metadata": {"user_id": EMAIL}}),
    ("anthropic", "codex", {"metadata": {"user_id": OPENAI_KEY}}),
    ("responses", "orchestrator", {"user": EMAIL}),
    ("responses", "orchestrator", {"safety_identifier": EMAIL}),
], ids=["openai-user>anthropic", "openai-user>openai", "anthropic-user_id>openai", "anthropic-user_id>responses",
        "responses-user>anthropic", "responses-safety_identifier>anthropic"])
async def test_redact_never_forwards_a_detected_end_user_id(proxy, fake_openai, fake_anthropic, dialect, tier, field):
    """The end-user id (`user`, `metadata.user_id`, `safety_identifier`) is scanned (raw body) and found, so
    the request is redacted — but the id itself must then be masked or dropped, not forwarded as is."""
    p = await proxy(REDACT)
    status, headers, body = await send(p, dialect, {**body_for(dialect, tier, "hello"), **field})
    assert status == 200, body
    for value in (EMAIL, OPENAI_KEY):
        assert_never_sent(value, fake_openai, fake_anthropic)
