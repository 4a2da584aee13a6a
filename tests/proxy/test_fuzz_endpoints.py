"""Property-based fuzzing of every endpoint through the real proxy: JSON values of the wrong type in every
field of each dialect's request schema, random bytes, deeply nested JSON, huge numbers and invalid UTF-8.

Whatever arrives, the answer is never a 5xx; a wrong request gets a 4xx JSON error in the endpoint's own
dialect (OpenAI `{"error": {...}}`, Anthropic `{"type": "error", "error": {...}}`) with no traceback or
filesystem path in it; and afterwards the server still answers normal requests in every dialect with no
deployment cooled down. A 2xx is accepted only where the request is not wrong in a way Tiergate checks:
fields it deliberately leaves to the upstream (`Endpoint.lenient`), numbers that are merely large, and
nesting that is deep but parses.

Hypothesis runs in a worker thread (its examples are synchronous); each example's request runs on the
test's event loop, where the proxy lives, so one proxy serves every example of a test.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass
from typing import Any, Callable

import aiohttp
import pytest
from hypothesis import HealthCheck, example, given, settings, strategies as st

from tests.proxy.test_security_e2e import config

EXAMPLES = 30  # per test (the file runs in about 6 s)

# ----------------------------------------------------------------------------------------- schemas
NULL, BOOL, INT, FLOAT, STR, LIST, DICT = "null", "bool", "int", "float", "str", "list", "dict"
NUM = {INT, FLOAT}
TOOL_CHAT = {"type": "function", "function": {"name": "get_weather", "description": "Weather",
                                              "parameters": {"type": "object", "properties": {}}}}
TOOL_ANTHROPIC = {"name": "get_weather", "description": "Weather", "input_schema": {"type": "object", "properties": {}}}
TOOL_RESPONSES = {"type": "function", "name": "get_weather", "parameters": {"type": "object", "properties": {}}}


@dataclass(frozen=True, eq=False)
class Endpoint:
    path: str
    dialect: str  # "openai" | "anthropic"
    base: dict[str, Any]  # a valid body
    fields: dict[tuple, frozenset[str]]  # path into the body -> the JSON types the API accepts there
    lenient: frozenset[tuple] = frozenset()  # fields Tiergate leaves to the upstream or coerces: 2xx is fine
    models: tuple[str, ...] = ()  # tiers to vary the model over (pass-through and translated routes)

    def __repr__(self) -> str:
        return self.path


def _f(**spec: set[str]) -> tuple[dict[tuple, frozenset[str]], frozenset[tuple]]:
    """Field paths written as keys with '.' between parts ('messages.0.content'); a leading '_' marks a
    lenient field."""
    fields, lenient = {}, set()
    for k, v in spec.items():
        path = tuple(int(x) if x.isdigit() else x for x in k.lstrip("_").split("."))
        fields[path] = frozenset(v)
        if k.startswith("_"):
            lenient.add(path)
    return fields, frozenset(lenient)


def endpoint(path: str, dialect: str, base: dict[str, Any], spec: dict[str, set[str]],
             models: tuple[str, ...] = ()) -> Endpoint:
    fields, lenient = _f(**spec)
    return Endpoint(path, dialect, base, fields, lenient, models)


# Lenient fields, as the parsers stand: `stream` is read with bool() in Chat and Messages (a list or object
# means "not streaming"); stream_options, a tool's parameters and top_k are forwarded untouched in
# pass-through and dropped when translating.
CHAT = endpoint("/v1/chat/completions", "openai",
                {"model": "coder", "messages": [{"role": "user", "content": "hi"}], "tools": [TOOL_CHAT]},
                {"model": {STR}, "messages": {LIST}, "messages.0": {DICT}, "messages.0.role": {STR},
                 "messages.0.content": {STR, LIST}, "max_tokens": {INT, NULL},
                 "max_completion_tokens": {INT, NULL}, "temperature": NUM | {NULL}, "top_p": NUM | {NULL},
                 "_stream": {BOOL, NULL}, "_stream_options": {DICT, NULL}, "stop": {STR, LIST, NULL},
                 "seed": {INT, NULL}, "n": {INT, NULL}, "tools": {LIST, NULL}, "tools.0": {DICT},
                 "tools.0.type": {STR}, "tools.0.function": {DICT}, "tools.0.function.name": {STR},
                 "_tools.0.function.parameters": {DICT}, "tool_choice": {STR, DICT, NULL},
                 "response_format": {DICT, NULL}, "user": {STR, NULL}, "reasoning_effort": {STR, NULL},
                 "parallel_tool_calls": {BOOL, NULL}},
                ("coder", "orchestrator", "helper"))
MESSAGES = endpoint("/v1/messages", "anthropic",
                    {"model": "orchestrator", "max_tokens": 20, "tools": [TOOL_ANTHROPIC],
                     "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]},
                    {"model": {STR}, "max_tokens": {INT}, "messages": {LIST}, "messages.0": {DICT},
                     "messages.0.role": {STR}, "messages.0.content": {STR, LIST},
                     "messages.0.content.0": {DICT}, "messages.0.content.0.type": {STR},
                     "messages.0.content.0.text": {STR}, "system": {STR, LIST, NULL},
                     "stop_sequences": {LIST, NULL}, "_stream": {BOOL, NULL}, "temperature": NUM | {NULL},
                     "top_p": NUM | {NULL}, "_top_k": {INT, NULL}, "tools": {LIST, NULL}, "tools.0": {DICT},
                     "tools.0.name": {STR}, "tools.0.input_schema": {DICT}, "tool_choice": {DICT, NULL},
                     "metadata": {DICT, NULL}, "thinking": {DICT, NULL}},
                    ("orchestrator", "coder", "helper"))
RESPONSES = endpoint("/v1/responses", "openai",
                     {"model": "codex", "tools": [TOOL_RESPONSES],
                      "input": [{"role": "user", "content": [{"type": "input_text", "text": "hi"}]}]},
                     {"model": {STR}, "input": {STR, LIST}, "input.0": {DICT}, "input.0.role": {STR},
                      "input.0.content": {STR, LIST}, "input.0.content.0": {DICT},
                      "input.0.content.0.text": {STR}, "instructions": {STR, NULL},
                      "max_output_tokens": {INT, NULL}, "temperature": NUM | {NULL}, "top_p": NUM | {NULL},
                      "tools": {LIST, NULL}, "tools.0": {DICT}, "tools.0.name": {STR},
                      "tool_choice": {STR, DICT, NULL}, "stream": {BOOL, NULL}, "store": {BOOL, NULL},
                      "metadata": {DICT, NULL}, "include": {LIST, NULL}, "user": {STR, NULL},
                      "previous_response_id": {STR, NULL}, "parallel_tool_calls": {BOOL, NULL},
                      "reasoning": {DICT, NULL}, "text": {DICT, NULL}},
                     ("codex", "coder", "orchestrator", "helper"))
EMBEDDINGS = endpoint("/v1/embeddings", "openai", {"model": "embed", "input": ["hi"]},
                      {"model": {STR}, "input": {STR, LIST}, "input.0": {STR, INT, LIST},
                       "dimensions": {INT, NULL}, "encoding_format": {STR, NULL}, "user": {STR, NULL}})
COUNT_TOKENS = endpoint("/v1/messages/count_tokens", "anthropic",
                        {"model": "orchestrator", "tools": [TOOL_ANTHROPIC],
                         "messages": [{"role": "user", "content": "hi"}]},
                        {"model": {STR}, "messages": {LIST}, "messages.0": {DICT}, "messages.0.role": {STR},
                         "messages.0.content": {STR, LIST}, "system": {STR, LIST, NULL},
                         "tools": {LIST, NULL}, "tools.0": {DICT}, "tools.0.name": {STR},
                         "tool_choice": {DICT, NULL}, "thinking": {DICT, NULL}},
                        ("orchestrator", "coder"))
PRIVACY = endpoint("/tiergate/privacy", "openai", {"mode": "off"}, {"mode": set()})  # PUT, master key
ENDPOINTS = [CHAT, MESSAGES, RESPONSES, EMBEDDINGS, COUNT_TOKENS, PRIVACY]


def kind(v: Any) -> str:
    if v is None:
        return NULL
    if isinstance(v, bool):
        return BOOL
    if isinstance(v, int):
        return INT
    if isinstance(v, float):
        return FLOAT
    if isinstance(v, str):
        return STR
    return LIST if isinstance(v, list) else DICT


HUGE = st.sampled_from([2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63) - 1, 10**30, -(10**30), 10**400, 1e308,
                        -1e308, 5e-324, -0.0])
STRINGS = st.one_of(st.text(max_size=40), st.sampled_from(["", "\x00", "\u202e", "🙂" * 20, "null", "{}", "[]",
                                                           "-1", "1e999", "true", "../../../etc/passwd"]))
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), HUGE,
                    st.floats(allow_nan=False, allow_infinity=False), STRINGS)
JSON = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                     st.dictionaries(st.text(max_size=12), inner, max_size=4)),
                    max_leaves=12)


def wrong_value(allowed: frozenset[str]) -> st.SearchStrategy[Any]:
    """A JSON value whose type is not one of `allowed` (for `mode`, nothing is allowed but "on"/"off")."""
    def wrong(v: Any) -> bool:
        if kind(v) in allowed or v in ("on", "off"):
            return False
        return not (kind(v) == FLOAT and INT in allowed and float(v).is_integer())  # 3.0 is an integer in JSON

    return JSON.filter(wrong)


def put(body: Any, path: tuple, value: Any) -> Any:
    """A copy of `body` with `value` at `path`."""
    body = json.loads(json.dumps(body))
    target = body
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    return body


def encode(body: Any) -> bytes:
    """JSON as a client would send it (the stdlib encoder: any integer size, any nesting)."""
    return json.dumps(body, ensure_ascii=False).encode("utf-8", "surrogatepass")


# ----------------------------------------------------------------------------------------- checks
LEAKS = re.compile(r"Traceback|File \"|site-packages|/work/|/home/|/tmp/|/usr/|\.py\b|line \d+, in ")


def check_answer(ep: Endpoint, status: int, content_type: str, raw: bytes, what: Any, *, error: bool) -> None:
    """Never a 5xx. A 4xx is a JSON error in `ep`'s dialect with no trace or path in it. `error`: the
    request was wrong in a way Tiergate checks, so only a 4xx will do."""
    assert status < 500, (ep.path, status, raw[:500], what)
    if error or status >= 400:
        assert 400 <= status < 500, (ep.path, status, raw[:300], what)
        check_error(ep, content_type, raw)


def check_error(ep: Endpoint, content_type: str, raw: bytes) -> None:
    assert content_type == "application/json", (ep.path, content_type, raw[:300])
    text = raw.decode("utf-8")
    assert not LEAKS.search(text), (ep.path, text[:500])
    body = json.loads(text)
    if ep.dialect == "anthropic":
        assert body["type"] == "error" and isinstance(body["error"]["type"], str), body
        assert set(body["error"]) == {"type", "message"} and set(body) <= {"type", "error", "request_id"}, body
    else:
        assert set(body) == {"error"} and isinstance(body["error"]["type"], str), body
        assert set(body["error"]) <= {"message", "type", "param", "code"}, body
    message = body["error"]["message"]
    assert isinstance(message, str) and message


class Client:
    """Sends requests on the proxy's loop from Hypothesis's thread."""

    def __init__(self, p: Any, loop: asyncio.AbstractEventLoop, session: aiohttp.ClientSession):
        self.p, self.loop, self.session = p, loop, session
        self.statuses: list[int] = []

    async def _send(self, method: str, path: str, data: bytes, key: str) -> tuple[int, str, bytes]:
        headers = {"authorization": f"Bearer {key}", "content-type": "application/json",
                   "anthropic-version": "2023-06-01"}
        async with self.session.request(method, self.p.base_url + path, data=data, headers=headers) as r:
            return r.status, r.content_type, await r.read()

    def send(self, ep: Endpoint, data: bytes) -> tuple[int, str, bytes]:
        method, key = ("PUT", self.p.master) if ep is PRIVACY else ("POST", self.p.key)
        out = asyncio.run_coroutine_threadsafe(self._send(method, ep.path, data, key), self.loop).result(30)
        self.statuses.append(out[0])
        return out


async def fuzz(p: Any, run: Callable[[Client], None]) -> Client:
    """Run `run(client)` (a Hypothesis test) in a worker thread, then check the proxy still serves."""
    async with aiohttp.ClientSession() as session:
        client = Client(p, asyncio.get_running_loop(), session)
        await asyncio.to_thread(run, client)
    await still_serving(p)
    return client


async def still_serving(p: Any) -> None:
    """Every dialect still answers, and no deployment was cooled down by the junk."""
    async with p.openai() as oa, p.anthropic() as an:
        r = await oa.chat.completions.create(model="coder", messages=[{"role": "user", "content": "still there"}])
        assert r.choices[0].message.content == "still there"
        m = await an.messages.create(model="orchestrator", max_tokens=20,
                                     messages=[{"role": "user", "content": "still there"}])
        assert m.content[0].text == "still there"
        resp = await oa.responses.create(model="codex", input="still there")
        assert resp.output_text == "still there"
        emb = await oa.embeddings.create(model="embed", input="still there")
        assert len(emb.data) == 1
    health = p.core.router.health
    assert {d.id: health.get(d.id).state for d in p.core.config.deployments} == \
        {d.id: "healthy" for d in p.core.config.deployments}


HYPOTHESIS = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
CONFIG = config()


# ----------------------------------------------------------------------------------------- tests
@pytest.mark.parametrize("ep", ENDPOINTS, ids=repr)
async def test_wrong_types_in_every_field(proxy, ep: Endpoint):
    p = await proxy(CONFIG)

    def run(client: Client) -> None:
        @HYPOTHESIS
        @given(path=st.sampled_from(sorted(ep.fields, key=str)), data=st.data(),
               model=st.sampled_from(ep.models or ("",)))
        # Cases found before, kept as explicit examples (each applies to the endpoints that have the field):
        @example(path=("messages", 0, "content", 0, "type"), data=[], model="helper")
        @example(path=("dimensions",), data={}, model="")
        def one(path: tuple, data: Any, model: str) -> None:
            if path not in ep.fields:
                return
            if isinstance(data, st.DataObject):
                value = data.draw(wrong_value(ep.fields[path]), label="value")
            else:
                value = data  # an explicit example's value
            base = {**ep.base, "model": model} if model else ep.base
            status, ctype, raw = client.send(ep, encode(put(base, path, value)))
            check_answer(ep, status, ctype, raw, (path, value), error=path not in ep.lenient)

        one()

    client = await fuzz(p, run)
    assert len(client.statuses) >= EXAMPLES


async def test_random_bytes_and_non_objects(proxy):
    p = await proxy(CONFIG)

    def run(client: Client) -> None:
        @HYPOTHESIS
        @given(st.sampled_from(ENDPOINTS), st.one_of(st.binary(max_size=200), JSON.map(encode),
                                                     st.text(max_size=50).map(str.encode)))
        def one(ep: Endpoint, data: bytes) -> None:
            try:
                if isinstance(json.loads(data), dict):
                    return  # an object: the other tests cover those
            except ValueError:
                pass
            status, ctype, raw = client.send(ep, data)
            check_answer(ep, status, ctype, raw, data[:80], error=True)

        one()

    await fuzz(p, run)


@pytest.mark.parametrize("ep", ENDPOINTS[:5], ids=repr)
async def test_deeply_nested_json(proxy, ep: Endpoint):
    """Nesting at any depth in any field: a 2xx or a 4xx, never a 5xx. (orjson parses 1024 levels but
    serialises only 254, so a body that parses may still fail on its way upstream.) Over 1024: 400."""
    p = await proxy(CONFIG)

    def run(client: Client) -> None:
        @settings(HYPOTHESIS, max_examples=EXAMPLES // 2)
        @given(depth=st.integers(200, 1100),
               field=st.sampled_from(["metadata", "user", "input", "tools", "system", "x_extra"]),
               brackets=st.sampled_from([("[", "]"), ('{"a":', "}")]))
        @example(depth=300, field="metadata", brackets=("[", "]"))  # parses, cannot be re-serialised
        @example(depth=1100, field="x_extra", brackets=("[", "]"))  # does not parse
        def one(depth: int, field: str, brackets: tuple[str, str]) -> None:
            opener, closer = brackets
            body = encode({k: v for k, v in ep.base.items() if k != field})
            nested = (opener * depth + "1" + closer * depth).encode()
            status, ctype, raw = client.send(ep, body[:-1] + b', "' + field.encode() + b'": ' + nested + b"}")
            check_answer(ep, status, ctype, raw, (field, depth, opener), error=depth > 1024)

        one()

    await fuzz(p, run)


# Fields Tiergate reads as integers: numbers beyond 64 bits (orjson parses them as floats) are refused.
INTEGER_FIELDS = {CHAT: ["max_tokens", "max_completion_tokens", "seed", "n"], MESSAGES: ["max_tokens"],
                  RESPONSES: ["max_output_tokens"], EMBEDDINGS: ["dimensions"]}
OTHER_NUMBERS = {CHAT: ["temperature", "top_p"], MESSAGES: ["temperature", "top_p", "top_k"],
                 RESPONSES: ["temperature", "top_p"], EMBEDDINGS: []}


@pytest.mark.parametrize("ep", list(INTEGER_FIELDS), ids=repr)
async def test_huge_numbers(proxy, ep: Endpoint):
    p = await proxy(CONFIG)
    fields = INTEGER_FIELDS[ep] + OTHER_NUMBERS[ep]

    def run(client: Client) -> None:
        @HYPOTHESIS
        @given(st.sampled_from(fields),
               st.one_of(st.sampled_from(["1e400", "-1e400", "1" * 400, "-" + "9" * 30, "18446744073709551616",
                                          "-9223372036854775809", "123456789012345678901234567890.5", "1e19"]),
                         st.integers(2**64, 2**300).map(str), st.integers(-(2**300), -(2**63) - 1).map(str)))
        def one(field: str, number: str) -> None:
            body = encode({k: v for k, v in ep.base.items() if k != field})
            status, ctype, raw = client.send(ep, body[:-1] + f', "{field}": {number}}}'.encode())
            refused = field in INTEGER_FIELDS[ep] or "e400" in number
            check_answer(ep, status, ctype, raw, (field, number), error=refused)

        one()

    await fuzz(p, run)


async def test_invalid_utf8(proxy):
    p = await proxy(CONFIG)
    bad_bytes = st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xc0\xaf", b"\x80",
                                 b"\\ud800", b"\\udfff\\ud800", b"\xe2\x82"])

    def run(client: Client) -> None:
        @HYPOTHESIS
        @given(st.sampled_from(ENDPOINTS), bad_bytes, st.integers(0, 10_000))
        def one(ep: Endpoint, bad: bytes, where: int) -> None:
            body = encode(put(ep.base, ("model",), "MARK")) if ep is not PRIVACY else b'{"mode": "MARK"}'
            if where % 2:  # inside a string (the model name)…
                data = body.replace(b"MARK", b"co" + bad + b"der")
            else:  # …or anywhere
                cut = where % len(body)
                data = body[:cut] + bad + body[cut:]
            status, ctype, raw = client.send(ep, data)
            check_answer(ep, status, ctype, raw, data[:120], error=True)

        one()

    await fuzz(p, run)
