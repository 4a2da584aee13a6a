"""Issue 5's leak tests: generated requests carrying secrets and personal data in every text-bearing place
of each dialect, through the real proxy, with every cloud upstream a recording fake.

The property, for every generated request, whatever the local deployments do (up, slow, failing, cooling
down, down) and with the response cache on or off:
  - the decision is `local` (header `x-tiergate-privacy: local`, and the usage record says so with a rule
    name), whatever the client says to lower it (`X-Tiergate-Privacy: any`, `metadata.tiergate_privacy: any`);
  - no cloud fake receives a chat request at all, and no recorded byte anywhere holds the planted value;
  - the client gets a local answer (200 from a local deployment or a cache hit) or a clear refusal: a 403
    in its dialect's shape naming the rule and the fix, never quoting the value — and which one is fixed by
    the scenario: a 200 exactly when a local deployment is up for the tier (its own or its
    `local_equivalents` tier), a refusal otherwise.
With `action: redact` (test_redact_never_sends_a_detected_value) a maskable value may go to the cloud, but
only as placeholders: no cloud-bound byte holds it, the answer comes back with every placeholder restored
(the fakes echo the user turn, so the echo equals the text sent), and what cannot be masked (signed
thinking, image URLs) or what the client marks local stays local as above.

How hypothesis drives an async proxy (documented because it needs care): one proxy per test function (a
scenario), built by the async `proxy` fixture on the test's event loop. The `@given` function is a plain
sync function run in a worker thread (`asyncio.to_thread`); each example submits its request coroutine to
the test's loop with `asyncio.run_coroutine_threadsafe` and waits for it. The loop stays free while the
thread waits, so the proxy, the fakes and the client all run on it as usual. These runs use no example
database (an example's outcome depends on the proxy's state: cache, cooldowns), so a failure prints its
reproduction instead of being replayed on the next run. Example counts are modest (the
file runs in well under a minute); a fast pure property (`test_generated_values_are_found_in_every_place`)
runs many more examples over the same strategies against the dialect parsers and the policy, without the
network, so the generators themselves are checked.

Values are assembled from a drawn seed (`random.Random(seed)`) so each has the shape and character mix of
the real thing (a key body that is all one letter is not a key); hypothesis draws the kind, the seed, the
surrounding filler text, the place, the dialect, the tier, streaming, and what the client says.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import random
from dataclasses import dataclass
from typing import Any, Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.dialects import anthropic_messages, openai_chat, openai_responses
from app.privacy.policy import PrivacyPolicy
from tests.fakes import Fault
from tests.proxy.test_privacy_e2e import (
    CHAT_PATHS,
    LOCAL_DEPLOYMENTS,
    NO_CACHE,
    answer_of,
    body_for,
    chat_requests,
    config,
    error_message,
    forms,
    records,
    send,
)

# ==================================================================================== value strategies
_ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


def _mix(r: random.Random, n: int, alphabet: str = _ALNUM) -> str:
    """`n` characters of `alphabet` using every class it has (digits, upper, lower), like a real key."""
    classes = [f for f in (str.isdigit, str.isupper, str.islower) if any(f(c) for c in alphabet)]
    while True:
        s = "".join(r.choice(alphabet) for _ in range(n))
        if all(any(f(c) for c in s) for f in classes):
            return s


def _b64url(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def _luhn_complete(body: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(body + "0")):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return body + str((10 - total % 10) % 10)


def _card(r: random.Random) -> str:
    brand = r.choice(["visa", "mc", "amex", "discover"])
    prefix, length, groups = {"visa": ("4", 16, (4, 4, 4, 4)), "mc": (str(r.randint(51, 55)), 16, (4, 4, 4, 4)),
                              "amex": (r.choice(["34", "37"]), 15, (4, 6, 5)),
                              "discover": ("6011", 16, (4, 4, 4, 4))}[brand]
    digits = _luhn_complete(prefix + "".join(r.choice("0123456789") for _ in range(length - len(prefix) - 1)))
    sep = r.choice(["", " ", "-"])
    if not sep:
        return digits
    out, at = [], 0
    for g in groups:
        out.append(digits[at:at + g])
        at += g
    return sep.join(out)


_IBAN_BBAN = {  # country: (length, BBAN builder) — realistic national formats
    "DE": (22, lambda r: _digits(r, 18)), "FR": (27, lambda r: _digits(r, 23)), "ES": (24, lambda r: _digits(r, 20)),
    "GB": (22, lambda r: _upper(r, 4) + _digits(r, 14)), "NL": (18, lambda r: _upper(r, 4) + _digits(r, 10)),
    "BE": (16, lambda r: _digits(r, 12)), "AT": (20, lambda r: _digits(r, 16)), "CH": (21, lambda r: _digits(r, 17)),
}


def _digits(r: random.Random, n: int) -> str:
    return "".join(r.choice("0123456789") for _ in range(n))


def _upper(r: random.Random, n: int) -> str:
    return "".join(r.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(n))


def _iban(r: random.Random) -> str:
    country = r.choice(sorted(_IBAN_BBAN))
    _, build = _IBAN_BBAN[country]
    bban = build(r)
    number = int("".join(str(int(ch, 36)) for ch in bban + country + "00"))
    iban = f"{country}{98 - number % 97:02d}{bban}"
    if r.random() < 0.5:
        return iban
    return " ".join(iban[i:i + 4] for i in range(0, len(iban), 4))


_FIRST = ["maria", "jean", "li", "oleksandr", "fatima", "john", "anna-lena", "k", "sven", "aiko"]
_LAST = ["gonzalez", "dupont", "wei", "kovalenko", "haddad", "smith", "mueller", "o", "berg", "tanaka"]
_DOMAINS = ["acme-corp.eu", "mail.de", "gmail.com", "uni-heidelberg.de", "company.co.uk", "proton.me",
            "startup.io", "hospital.fr", "bank.ch", "outlook.com"]


def _email(r: random.Random) -> str:
    local = r.choice(_FIRST) + r.choice([".", "_", "", "+work."]) + r.choice(_LAST) \
        + r.choice(["", str(r.randint(1, 99))])
    return f"{local}@{r.choice(_DOMAINS)}"


def _private_key(r: random.Random) -> str:
    kind = r.choice(["RSA ", "EC ", "OPENSSH ", ""])
    lines = [_mix(r, 64, _ALNUM + "+/") for _ in range(r.randint(2, 6))]
    return f"-----BEGIN {kind}PRIVATE KEY-----\n" + "\n".join(lines) + f"\n-----END {kind}PRIVATE KEY-----"


def _jwt(r: random.Random) -> str:
    return ".".join([_b64url({"alg": r.choice(["HS256", "RS256"]), "typ": "JWT"}),
                     _b64url({"sub": str(r.randint(1, 10**9)), "name": r.choice(_FIRST), "iat": 1716239022}),
                     _mix(r, 43, _ALNUM + "-_")])


def _connection_string(r: random.Random) -> tuple[str, str]:
    scheme = r.choice(["postgres", "postgresql", "mysql", "mongodb+srv", "redis", "amqp"])
    host = r.choice(["db.internal", "10.0.3.7", "prod-db.eu-west-1.rds.amazonaws.com", "cache"])
    password = _mix(r, r.randint(10, 24))
    return f"{scheme}://{r.choice(['admin', 'app', 'root', 'svc_user'])}:{password}@{host}:5432/app", password


def _assignment(r: random.Random) -> tuple[str, str]:
    name = r.choice(["DB_PASSWORD", "password", "client_secret", "API_KEY", "auth_token", "SECRET_KEY"])
    value = _mix(r, r.randint(12, 32))
    return f'{name}="{value}"', value


def _bearer(r: random.Random) -> tuple[str, str]:
    token = _mix(r, r.randint(24, 48), _ALNUM + "._-")
    return "Authorization: Bearer " + token, token


VALUE_KINDS: dict[str, Callable[[random.Random], str | tuple[str, str]]] = {  # text, or (text, secret part)
    "aws": lambda r: "AK" + "IA" + _mix(r, 16, _B32),
    "openai": lambda r: "sk-" + r.choice(["proj-", "svcacct-", ""]) + _mix(r, r.randint(40, 64), _ALNUM + "_-"),
    "anthropic": lambda r: "sk-" + "ant-api03-" + _mix(r, 93, _ALNUM + "_-") + "AA",
    "github": lambda r: r.choice(["gh" + "p_", "gh" + "o_", "gh" + "s_"]) + _mix(r, 36),
    "github_pat": lambda r: "github" + "_pat_" + _mix(r, 22) + "_" + _mix(r, 59),
    "stripe": lambda r: r.choice(["sk", "rk"]) + "_live_" + _mix(r, r.randint(24, 99)),
    "google": lambda r: "AI" + "za" + _mix(r, 35, _ALNUM + "_-"),
    "slack": lambda r: "xo" + "xb-" + _digits(r, 11) + "-" + _digits(r, 12) + "-" + _mix(r, 24),
    "huggingface": lambda r: "h" + "f_" + _mix(r, 34),
    "groq": lambda r: "g" + "sk_" + _mix(r, 52),
    "private_key": _private_key,
    "jwt": _jwt,
    "connection_string": _connection_string,
    "assignment": _assignment,
    "bearer": _bearer,
    "email": _email,
    "card": _card,
    "iban": _iban,
}
URL_SAFE = {"aws", "openai", "anthropic", "github", "github_pat", "stripe", "google", "slack", "huggingface",
            "groq", "jwt", "email"}


@dataclass(frozen=True)
class Planted:
    kind: str
    value: str  # the text planted (`password="…"`, a whole key, an address…)
    secret: str  # the part of it that is the secret (the password in an assignment; else the value)

    def markers(self) -> list[str]:
        """What must never appear in a cloud-bound body, a log or an error: the secret in its JSON forms, and
        each long run of letters and digits in it (which no JSON escaping changes, however deeply nested)."""
        runs = [run for run in _runs(self.secret) if len(run) >= 12]
        return forms(self.secret) + runs


def _runs(value: str) -> list[str]:
    out, cur = [], []
    for ch in value:
        if ch.isascii() and ch.isalnum():
            cur.append(ch)
        else:
            out.append("".join(cur))
            cur = []
    out.append("".join(cur))
    return [r for r in out if r]


def _planted(kind: str, seed: int) -> Planted:
    made = VALUE_KINDS[kind](random.Random(seed))
    text, secret = made if isinstance(made, tuple) else (made, made)
    return Planted(kind, text, secret)


def planted(kinds: list[str] | None = None) -> st.SearchStrategy[Planted]:
    return st.builds(_planted, st.sampled_from(sorted(kinds or VALUE_KINDS)), st.integers(0, 2**32 - 1))


# Filler around the value: words, punctuation and non-ASCII text, on their own lines (a value glued to a
# word is a different string, e.g. `abc4111…` is not a card number in any detector's book).
_FILLER_CHARS = "abcdefghijklmnopqrstuvwxyz ABCDEFXYZ ,.!?;:()-_'éüßøçñ中文ありがとう"
FILLER = st.text(alphabet=st.sampled_from(list(_FILLER_CHARS)), max_size=30)


def wrap(before: str, value: str, after: str) -> str:
    return "\n".join(part for part in (before, value, after) if part)


# ============================================================================ places, per dialect
def _oa(*messages: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"messages": list(messages), **extra}


def _an(*messages: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"max_tokens": 200, "messages": list(messages), **extra}


def _re(*items: Any, **extra: Any) -> dict[str, Any]:
    return {"input": list(items), **extra}


_PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
_U = {"role": "user", "content": "hi"}
_GO = {"role": "user", "content": "go on"}
_CALL = {"role": "assistant", "content": None, "tool_calls": [
    {"id": "call_1", "type": "function", "function": {"name": "run", "arguments": "{\"cmd\": \"ls\"}"}}]}


def _oa_call(args: Any) -> dict[str, Any]:
    return {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "run", "arguments": json.dumps(args)}}]}


def _an_use(value: Any) -> dict[str, Any]:
    return {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "run", "input": value}]}


def _an_result(content: Any) -> dict[str, Any]:
    return {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": content}]}


Place = Callable[[str], dict[str, Any]]
PLACES: dict[str, dict[str, Place]] = {
    "openai": {
        "system": lambda x: _oa({"role": "system", "content": x}, _U),
        "developer": lambda x: _oa({"role": "developer", "content": x}, _U),
        "system_parts": lambda x: _oa({"role": "system", "content": [{"type": "text", "text": x}]}, _U),
        "user": lambda x: _oa({"role": "user", "content": x}),
        "user_multipart": lambda x: _oa({"role": "user", "content": [
            {"type": "text", "text": "look"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64," + _PNG}},
            {"type": "text", "text": x}]}),
        "assistant": lambda x: _oa(_U, {"role": "assistant", "content": x}, _GO),
        "assistant_parts": lambda x: _oa(_U, {"role": "assistant", "content": [{"type": "text", "text": x}]}, _GO),
        "tool_call_arguments": lambda x: _oa(_U, _oa_call({"cmd": x, "opts": {"env": [x]}}),
                                             {"role": "tool", "tool_call_id": "call_1", "content": "ok"}),
        "tool_result": lambda x: _oa(_U, _CALL, {"role": "tool", "tool_call_id": "call_1", "content": x}),
        "tool_result_parts": lambda x: _oa(_U, _CALL, {"role": "tool", "tool_call_id": "call_1",
                                                       "content": [{"type": "text", "text": x}]}),
        "user_field": lambda x: _oa(_U, user=x),
    },
    "anthropic": {
        "system": lambda x: _an(_U, system=x),
        "system_blocks": lambda x: _an(_U, system=[
            {"type": "text", "text": "You help."}, {"type": "text", "text": x, "cache_control": {"type": "ephemeral"}}]),
        "user": lambda x: _an({"role": "user", "content": x}),
        "user_blocks": lambda x: _an({"role": "user", "content": [
            {"type": "text", "text": "look"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": _PNG}},
            {"type": "text", "text": x}]}),
        "assistant": lambda x: _an(_U, {"role": "assistant", "content": [{"type": "text", "text": x}]}, _GO),
        "thinking": lambda x: _an(_U, {"role": "assistant", "content": [
            {"type": "thinking", "thinking": x, "signature": "EqQBCkYIBxgCKkA"}, {"type": "text", "text": "ok"}]}, _GO),
        "tool_use_input": lambda x: _an(_U, _an_use({"cmd": x, "nested": [{"v": x}]}), _an_result("ok")),
        "tool_result": lambda x: _an(_U, _an_use({}), _an_result(x)),
        "tool_result_blocks": lambda x: _an(_U, _an_use({}), _an_result([{"type": "text", "text": "out:"},
                                                                          {"type": "text", "text": x}])),
        "document_text": lambda x: _an({"role": "user", "content": [
            {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": x}},
            {"type": "text", "text": "summarise"}]}),
        "document_title_context": lambda x: _an({"role": "user", "content": [
            {"type": "document", "title": "notes", "context": x,
             "source": {"type": "text", "media_type": "text/plain", "data": "n/a"}},
            {"type": "text", "text": "summarise"}]}),
        "document_content": lambda x: _an({"role": "user", "content": [
            {"type": "document", "source": {"type": "content", "content": [{"type": "text", "text": x}]}},
            {"type": "text", "text": "summarise"}]}),
        "search_result": lambda x: _an({"role": "user", "content": [
            {"type": "search_result", "source": "https://wiki.internal/p", "title": "page",
             "content": [{"type": "text", "text": x}]}, {"type": "text", "text": "use it"}]}),
        "metadata_user_id": lambda x: _an(_U, metadata={"user_id": x}),
    },
    "responses": {
        "instructions": lambda x: {"instructions": x, "input": "hi"},
        "input_string": lambda x: {"input": x},
        "message_input_text": lambda x: _re({"role": "user", "content": [{"type": "input_text", "text": "see"},
                                                                         {"type": "input_text", "text": x}]}),
        "developer_message": lambda x: _re({"type": "message", "role": "developer", "content": x}, _U),
        "assistant_output_text": lambda x: _re(_U, {"type": "message", "role": "assistant",
                                                    "content": [{"type": "output_text", "text": x}]}, _GO),
        "function_call_arguments": lambda x: _re(_U, {"type": "function_call", "call_id": "c1", "name": "run",
                                                      "arguments": json.dumps({"cmd": x})},
                                                 {"type": "function_call_output", "call_id": "c1", "output": "ok"}),
        "function_call_output": lambda x: _re(_U, {"type": "function_call", "call_id": "c1", "name": "run",
                                                   "arguments": "{}"},
                                              {"type": "function_call_output", "call_id": "c1", "output": x}),
        "function_call_output_parts": lambda x: _re(_U, {"type": "function_call", "call_id": "c1", "name": "run",
                                                         "arguments": "{}"},
                                                    {"type": "function_call_output", "call_id": "c1",
                                                     "output": [{"type": "input_text", "text": x}]}),
        "custom_tool_call_input": lambda x: _re(_U, {"type": "custom_tool_call", "call_id": "c1",
                                                     "name": "apply_patch", "input": x},
                                                {"type": "custom_tool_call_output", "call_id": "c1", "output": "ok"}),
    },
}
URL_PLACES: dict[str, dict[str, Place]] = {  # places only URL-safe values fit (no spaces or newlines)
    "openai": {"image_url": lambda x: _oa({"role": "user", "content": [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": f"https://files.internal/img.png?sig={x}"}}]})},
    "anthropic": {"image_url": lambda x: _an({"role": "user", "content": [
        {"type": "image", "source": {"type": "url", "url": f"https://files.internal/img.png?sig={x}"}},
        {"type": "text", "text": "what is this?"}]})},
    "responses": {"input_image_url": lambda x: _re({"role": "user", "content": [
        {"type": "input_text", "text": "what is this?"},
        {"type": "input_image", "image_url": f"https://files.internal/img.png?sig={x}"}]})},
}
MODULES = {"openai": openai_chat, "anthropic": anthropic_messages, "responses": openai_responses}


@dataclass(frozen=True)
class Case:
    dialect: str
    place: str
    planted: Planted
    text: str  # what was put in the place: the value with filler lines around it
    tier: str
    stream: bool
    client_says: str  # "nothing" | "header any" | "metadata any" | "header local"

    def body(self) -> dict[str, Any]:
        places = {**PLACES[self.dialect], **URL_PLACES[self.dialect]}
        text = self.planted.value if self.place in URL_PLACES[self.dialect] else self.text
        body = {"model": self.tier, **places[self.place](text), "stream": self.stream}
        if self.client_says == "metadata any":
            body["metadata"] = {**(body.get("metadata") or {}), "tiergate_privacy": "any"}
        return body

    def headers(self, cache: bool) -> dict[str, str]:
        out = {} if cache else dict(NO_CACHE)
        if self.client_says == "header any":
            out["X-Tiergate-Privacy"] = "any"
        elif self.client_says == "header local":
            out["X-Tiergate-Privacy"] = "local"
        return out


# Tiers of test_privacy_e2e.CONFIG and where a local request to each may be answered.
TIERS = {"coder": "coder/ollama/llama3.2:latest", "orchestrator": "helper-local/ollama/gemma3:4b",
         "helper-local": "helper-local/ollama/gemma3:4b", "gpt": None, "codex": None, "helper-cloud": None}


@st.composite
def cases(draw: st.DrawFn) -> Case:
    dialect = draw(st.sampled_from(sorted(PLACES)))
    p = draw(planted())
    names = sorted(PLACES[dialect]) + (sorted(URL_PLACES[dialect]) if p.kind in URL_SAFE else [])
    place = draw(st.sampled_from(names))
    text = wrap(draw(FILLER), p.value, draw(FILLER))
    return Case(dialect, place, p, text, draw(st.sampled_from(sorted(TIERS))), draw(st.booleans()),
                draw(st.sampled_from(["nothing", "nothing", "header any", "metadata any", "header local"])))


# ================================================================= 1. the generators and every place
POLICY = PrivacyPolicy()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_generated_values_are_found_in_every_place(case: Case) -> None:
    """No network: each generated request, parsed by its dialect, is `local` by a detector rule (so the
    end-to-end runs below test routing, not luck), and the rule never carries the value."""
    req = MODULES[case.dialect].parse_request(case.body(), {})
    decision = POLICY.decide(req, headers={"x-tiergate-privacy": "any"} if case.client_says == "header any" else {})
    assert decision.level == "local", (case.planted.kind, case.dialect, case.place)
    assert decision.rule.startswith(("secret.", "pii.")), decision.rule
    assert case.planted.secret not in decision.rule


def test_every_place_is_generated() -> None:
    """Every place of every dialect is reachable by the strategy (a place typo would silently never run)."""
    for dialect, places in PLACES.items():
        for place, build in {**places, **URL_PLACES[dialect]}.items():
            body = {"model": "coder", **build("filler"), "stream": False}
            assert MODULES[dialect].parse_request(body, {}).messages, (dialect, place)


# ====================================================================== 2. through the real proxy
EXAMPLES = {"up": 100, "slow": 8, "failing": 50, "cooling": 50, "down": 50, "redact": 100}


def _run_examples(loop: asyncio.AbstractEventLoop, check: Callable[[Case], Any], n: int) -> None:
    @settings(max_examples=n, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(cases())
    def run(case: Case) -> None:
        asyncio.run_coroutine_threadsafe(check(case), loop).result(timeout=30)

    run()


async def _setup(proxy: Any, fake_ollama: Any, scenario: str) -> Any:
    if scenario == "redact":
        return await proxy(config(privacy="    action: redact\n"))
    p = await proxy(config(allowed_fails=1 if scenario == "cooling" else 1000,
                           local_timeout=0.5 if scenario == "slow" else 10))
    if scenario == "slow":  # the local timeout is 0.5 s; every local call hangs for 2 s first
        fake_ollama.faults += [Fault.hang(2.0, path="/api/chat") for _ in range(200)]
    elif scenario == "failing":
        fake_ollama.faults += [Fault.status(500, "boom", path="/api/chat") for _ in range(400)]
    elif scenario == "cooling":  # one failure each (allowed_fails: 1): both local deployments cool down
        fake_ollama.faults += [Fault.status(500, "boom", path="/api/chat") for _ in range(2)]
        for tier in ("coder", "helper-local"):
            status, _, body = await send(p, "openai", body_for("openai", tier, "warm-up"),
                                         headers={**NO_CACHE, "X-Tiergate-Privacy": "local"})
            assert status == 403 and body["error"]["code"] == "privacy_refused", body
        assert {p.core.router.health.get(d).state for d in LOCAL_DEPLOYMENTS} == {"cooling_down"}
    elif scenario == "down":
        await fake_ollama.close()
    return p


def _check_refusal(case: Case, status: int, body: Any) -> None:
    """A clear privacy refusal in the client's dialect: 403, the rule, the fix, never the value."""
    _, message = error_message(case.dialect, body)
    assert status == 403, (case, status, message)
    rule = message.partition("must stay on this machine (")[2].partition(")")[0]
    assert rule.startswith(("secret.", "pii.", "header")), (case, message)
    if TIERS[case.tier] is None:  # no local deployment at all: how to add one
        assert "local_equivalents" in message, (case, message)
    else:  # local deployments exist but none can answer now
        assert "not sent to a cloud" in message, (case, message)
    text = json.dumps(body)
    for marker in case.planted.markers():
        assert marker not in text and marker not in message, case


def _check_answer(case: Case, body: Any) -> str:
    if case.stream:
        assert isinstance(body, list) and body, (case, body)
        assert not any(ev.get("type") in ("error", "response.failed") or "error" in ev for ev in body), body
    return answer_of(case.dialect, body)[0]


ECHOED = {("openai", "user"), ("anthropic", "user"), ("responses", "input_string")}  # the fakes echo these


async def _leak_run(proxy: Any, fakes: dict[str, Any], scenario: str, cache: bool) -> None:
    fake_openai, fake_anthropic, fake_ollama, caplog = fakes["openai"], fakes["anthropic"], fakes["ollama"], \
        fakes["caplog"]
    caplog.set_level(logging.DEBUG)
    p = await _setup(proxy, fake_ollama, scenario)
    local_calls = len(chat_requests(fake_ollama)) if scenario != "down" else 0
    seen: list[Case] = []
    cloud = (fake_openai, fake_anthropic)

    async def check(case: Case) -> None:
        seen.append(case)
        before = [len(f.requests) for f in cloud]
        status, headers, body = await send(p, case.dialect, case.body(), headers=case.headers(cache))
        new = [r for f, n in zip(cloud, before) for r in f.requests[n:]]
        level = headers.get("x-tiergate-privacy")
        if scenario == "redact" and level == "any":  # masked for the cloud: placeholders out, values back in
            assert status == 200, (case, body)
            answer = _check_answer(case, body)
            assert "«TG_" not in answer, (case, answer)
            if (case.dialect, case.place) in ECHOED:
                assert answer == case.text, case
        else:
            # the decision is local: nothing reached a cloud fake
            assert [r for r in new if r.path in CHAT_PATHS] == [], case
            assert level == "local", (case, status, body)
            # a local answer exactly when a local deployment is up for the tier, else a refusal
            if scenario in ("up", "redact") and TIERS[case.tier] is not None:
                assert status == 200, (case, body)
                assert headers["x-tiergate-deployment"] in (TIERS[case.tier], "cache"), (case, headers)
                _check_answer(case, body)
            else:
                _check_refusal(case, status, body)
        for r in new:  # no planted secret in any form
            raw = r.body.decode("utf-8", "replace")
            assert not any(m in raw for m in case.planted.markers()), (case, r.path, raw[:3000])

    await asyncio.to_thread(_run_examples, asyncio.get_running_loop(), check, EXAMPLES[scenario])
    assert len(seen) >= EXAMPLES[scenario] // 2
    for r in (r for f in cloud for r in f.requests):  # earlier examples' values neither
        raw = r.body.decode("utf-8", "replace")
        for case in seen:
            assert not any(m in raw for m in case.planted.markers()), r.path
    if scenario == "cooling":
        assert len(chat_requests(fake_ollama)) == local_calls  # not even tried
    recs = await records(p)  # (the cooling warm-ups too: they were sent with the header)
    assert recs and all(r.privacy_rule for r in recs)
    for r in recs:  # a cloud deployment only ever answered a masked request
        assert r.privacy == "local" and r.location != "cloud" or scenario == "redact" and r.privacy == "any"
    logged = caplog.text
    for case in seen:  # nothing logged (access log, upstream errors, debug lines) holds a planted value
        assert not any(m in logged for m in case.planted.markers()), case
        for r in recs:
            assert case.planted.secret not in r.privacy_rule


@pytest.mark.parametrize("scenario,cache", [
    ("up", True), ("up", False), ("slow", True), ("failing", True), ("failing", False), ("cooling", True),
    ("down", True), ("down", False)], ids=lambda v: v if isinstance(v, str) else ("cache" if v else "no-cache"))
async def test_no_leak_whatever_the_local_deployments_do(proxy, fake_openai, fake_anthropic, fake_ollama, caplog,
                                                         scenario, cache):
    await _leak_run(proxy, {"openai": fake_openai, "anthropic": fake_anthropic, "ollama": fake_ollama,
                            "caplog": caplog}, scenario, cache)


@pytest.mark.parametrize("cache", [True, False], ids=["cache", "no-cache"])
async def test_redact_never_sends_a_detected_value(proxy, fake_openai, fake_anthropic, fake_ollama, caplog, cache):
    """`action: redact`: what can be masked goes to the cloud as placeholders and comes back restored; what
    cannot (signed thinking, image URLs) and what the client marks local stays local."""
    await _leak_run(proxy, {"openai": fake_openai, "anthropic": fake_anthropic, "ollama": fake_ollama,
                            "caplog": caplog}, "redact", cache)
