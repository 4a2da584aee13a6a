"""No key ever leaves Tiergate: plant known key values, run a realistic session through the real proxy, and
search every artefact for them.

Planted: a provider key in the environment (`os.environ/PLANTED_OPENAI_KEY`), one in the keychain
(`keychain/PLANTED_ANTHROPIC_KEY`, in the in-memory keyring), the master key, an agent key, and a key a user
pasted literally into a config edit that does not load. Neither provider key is `sk-` shaped, so only the
known-value layer of the redaction can catch them.

The session: requests in every dialect (streaming too), upstream errors that echo the key (400, 429, 500,
401, garbage bodies), the provider key presented to Tiergate as if it were an agent key, management calls
with the master key and the event stream, config reloads with broken files, then `tiergate keys list` /
`agents list` / `usage` / `privacy status` as subprocesses. Logging runs at DEBUG with the app's own setup
(app.logging_setup + install_log_redaction), writing a log file.

Searched: every file under the test's tmp dir (config, agents.json, privacy state, the ledger and cache
SQLite databases with their WAL files, the log file) as bytes, every HTTP response body and header the
clients got, the event stream, exception texts the SDKs raised, subprocess output, captured stdout/stderr
and every log record.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import aiohttp
import anthropic
import openai
import pytest
from aiohttp import web

from app.secrets.store import SecretStore
from tests.fakes import Fault
from tests.keyring_fixtures import MemoryKeyring, plant_secrets

REPO = Path(__file__).resolve().parents[2]

CONFIG = """\
model_list:
  - model_name: orchestrator
    litellm_params: {{model: anthropic/claude-opus-4-1, api_base: "{anthropic}", api_key: keychain/PLANTED_ANTHROPIC_KEY}}
  - model_name: coder
    litellm_params: {{model: openai/gpt-4o-mini, api_base: "{openai}/v1", api_key: os.environ/PLANTED_OPENAI_KEY}}
  - model_name: codex
    litellm_params: {{model: openai/gpt-5-codex, api_base: "{openai}/v1", api_key: os.environ/PLANTED_OPENAI_KEY, api: responses}}
  - model_name: embed
    litellm_params: {{model: openai/text-embedding-3-small, api_base: "{openai}/v1", api_key: os.environ/PLANTED_OPENAI_KEY}}
  - model_name: helper
    litellm_params: {{model: ollama_chat/llama3.2:latest, api_base: "{ollama}", num_ctx: 8192}}
  - model_name: breaker-openai
    litellm_params: {{model: openai/gpt-4o-mini, api_base: "{breaker}/v1", api_key: os.environ/PLANTED_OPENAI_KEY}}
  - model_name: breaker-anthropic
    litellm_params: {{model: anthropic/claude-opus-4-1, api_base: "{breaker}", api_key: keychain/PLANTED_ANTHROPIC_KEY}}
router_settings:
  num_retries: 0
  allowed_fails: 1000
tiergate_settings:
  port: 0
  auth_max_failures: 1000
"""
# Config edits that do not load, each with the literal key on the offending line.
BROKEN = [
    # YAML syntax error (an unclosed flow mapping) on the line with the key
    "model_list:\n  - model_name: coder\n    litellm_params: {{model: openai/gpt-4o, api_key: {literal}\n",
    # wrong type: a list where a string belongs
    "model_list:\n  - model_name: coder\n    litellm_params:\n      model: openai/gpt-4o\n      api_key: [{literal}]\n",
    # unknown top-level value next to the key
    "model_list:\n  - model_name: coder\n    litellm_params:\n      model: 42\n      api_key: {literal}\n",
    # a tab in the indentation right after the key
    "model_list:\n  - model_name: coder\n    litellm_params:\n      api_key: {literal}\n\tmodel: openai/gpt-4o\n",
]

# Installs an in-memory keyring holding the entries in $TG_TEST_KEYRING, then runs `tiergate ARGV` for each
# ARGV in $TG_TEST_RUNS (one interpreter for all: start-up is most of a run's time), each framed by a line
# naming it on stdout and stderr.
CLI_BOOT = """\
import json, os, sys, keyring
from tests.keyring_fixtures import MemoryKeyring
backend = MemoryKeyring()
for service, user, value in json.loads(os.environ.pop("TG_TEST_KEYRING")):
    backend.entries[(service, user)] = value
keyring.set_keyring(backend)
from app.cli import main
for argv in json.loads(os.environ["TG_TEST_RUNS"]):
    for stream in (sys.stdout, sys.stderr):
        print("=== tiergate " + " ".join(argv), file=stream, flush=True)
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    print("=== exit", code, flush=True)
"""


class Recorder:
    """Every response the clients got: status line, headers and body, by request."""

    def __init__(self, base_url: str):
        self.base_url = base_url
        self.texts: dict[str, bytes] = {}
        self.session = aiohttp.ClientSession()

    async def request(self, method: str, path: str, key: str, body: Any = None, **headers: str) -> tuple[int, bytes]:
        hdrs = {"authorization": f"Bearer {key}", **headers}
        async with self.session.request(method, self.base_url + path, json=body, headers=hdrs) as r:
            raw = await r.read()
            self.keep(f"{method} {path}", r.status, r.headers, raw)
            return r.status, raw

    def keep(self, label: str, status: int, headers: Any, raw: bytes) -> None:
        n = len(self.texts)
        head = "\n".join(f"{k}: {v}" for k, v in headers.items())
        self.texts[f"HTTP #{n} {label} -> {status}"] = f"{head}\n\n".encode() + raw


class Breaker:
    """An upstream whose streams start, then fail with an error event that echoes the key it was sent
    (OpenAI chat completions and Anthropic messages)."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        self.app = web.Application()
        self.app.router.add_post("/v1/chat/completions", self.openai)
        self.app.router.add_post("/v1/messages", self.anthropic)
        self.runner = web.AppRunner(self.app, access_log=None)
        self.base_url = ""

    async def start(self) -> None:
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.base_url = "http://127.0.0.1:%d" % site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def _stream(self, request: web.Request, first: list[bytes], error: bytes) -> web.StreamResponse:
        self.requests.append(request.path)
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b"".join(first))
        await asyncio.sleep(0.05)  # the client has its first bytes: no fallback is possible any more
        await response.write(error)
        await response.write_eof()
        return response

    async def openai(self, request: web.Request) -> web.StreamResponse:
        key = request.headers.get("authorization", "")[7:]
        chunk = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini",
                 "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hel"}, "finish_reason": None}]}
        error = {"error": {"message": f"The server had an error (key {key})", "type": "server_error"}}
        return await self._stream(request, [sse(None, chunk)], sse(None, error))

    async def anthropic(self, request: web.Request) -> web.StreamResponse:
        key = request.headers.get("x-api-key", "")
        start = {"type": "message_start", "message": {
            "id": "msg_01", "type": "message", "role": "assistant", "content": [], "model": "claude-opus-4-1",
            "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 3, "output_tokens": 1}}}
        block = {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
        delta = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hel"}}
        error = {"type": "error", "error": {"type": "overloaded_error", "message": f"Overloaded (key {key})"}}
        return await self._stream(request, [sse("message_start", start), sse("content_block_start", block),
                                            sse("content_block_delta", delta)], sse("error", error))


def sse(event: str | None, data: Any) -> bytes:
    return (f"event: {event}\n" if event else "").encode() + f"data: {json.dumps(data)}\n\n".encode()


@pytest.fixture
async def breaker():
    b = Breaker()
    await b.start()
    yield b
    await b.runner.cleanup()


def unique(body: dict[str, Any], text: str) -> dict[str, Any]:
    """`body` with its prompt replaced by `text`."""
    if "messages" in body:
        return {**body, "messages": [{"role": "user", "content": text}]}
    return {**body, "input": text}


def hits_in(values: dict[str, str], where: str, data: bytes | str) -> list[str]:
    data = data.encode("utf-8", "replace") if isinstance(data, str) else data
    return [f"{where}: {label}" for label, value in values.items() if value.encode() in data]


def search_everything(values: dict[str, str], *, trees: list[Path], texts: dict[str, bytes | str],
                      records: list[logging.LogRecord]) -> list[str]:
    hits: list[str] = []
    for tree in trees:
        for path in sorted(tree.rglob("*")):
            if path.is_file() and not path.is_symlink():
                hits += hits_in(values, str(path.relative_to(tree)), path.read_bytes())
    for where, text in texts.items():
        hits += hits_in(values, where, text)
    for record in records:
        rendered = record.getMessage() + "\n" + (record.exc_text or "") + (record.stack_info or "")
        hits += hits_in(values, f"log record {record.name}:{record.levelname}", rendered)
    return hits


@pytest.fixture
def app_logging(tmp_path):
    """The app's own logging set-up at DEBUG with a log file, and log redaction installed; everything
    restored afterwards (redaction hooks are process-wide)."""
    from app.logging_setup import setup_logging, stop_logging
    from app.secrets.redact import install_log_redaction

    root = logging.getLogger()
    saved = (root.handlers[:], root.level, logging.getLogRecordFactory(), sys.excepthook, threading.excepthook)
    stop_logging()
    log_file = tmp_path / "data" / "logs" / "tiergate.log"
    setup_logging("DEBUG", log_file=log_file)
    install_log_redaction()
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    keep = Keep(logging.DEBUG)
    root.addHandler(keep)
    try:
        yield log_file, records
    finally:
        stop_logging()
        root.handlers[:], level, factory, sys.excepthook, threading.excepthook = saved
        root.setLevel(level)
        logging.setLogRecordFactory(factory)


def run_cli(runs: list[list[str]], *, config_dir: Path, data_dir: Path, keyring_backend: MemoryKeyring) -> str:
    """`tiergate ARGV` for each of `runs`, in a subprocess with the test's dirs and keychain; all output."""
    env = {**os.environ, "TIERGATE_CONFIG_DIR": str(config_dir), "TIERGATE_DATA_DIR": str(data_dir),
           "PYTHONPATH": str(REPO), "TG_TEST_RUNS": json.dumps(runs),
           "TG_TEST_KEYRING": json.dumps([[s, u, v] for (s, u), v in keyring_backend.entries.items()])}
    done = subprocess.run([sys.executable, "-c", CLI_BOOT], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    return f"{done.stdout}\n{done.stderr}"


async def test_planted_keys_appear_in_no_artefact(tmp_path, memory_keyring, monkeypatch, capsys, app_logging,
                                                  fake_openai, fake_anthropic, fake_ollama, breaker):
    from app.core import Tiergate

    log_file, records = app_logging
    config_dir, data_dir = tmp_path / "config", tmp_path / "data"
    config_dir.mkdir()
    monkeypatch.setenv("TIERGATE_CONFIG_DIR", str(config_dir))
    monkeypatch.setenv("TIERGATE_DATA_DIR", str(data_dir))
    store = SecretStore()
    planted = plant_secrets(store, monkeypatch, keychain_names=("PLANTED_ANTHROPIC_KEY",),
                            env_names=("PLANTED_OPENAI_KEY",))
    oai_key, anth_key = planted.env["PLANTED_OPENAI_KEY"], planted.keychain["PLANTED_ANTHROPIC_KEY"]
    literal = "plantedLITERAL" + os.urandom(20).hex()
    fake_openai.api_key, fake_anthropic.api_key = oai_key, anth_key
    config_path = config_dir / "config.yaml"
    good = CONFIG.format(openai=fake_openai.base_url, anthropic=fake_anthropic.base_url, ollama=fake_ollama.base_url,
                         breaker=breaker.base_url)
    config_path.write_text(good)

    core = Tiergate.from_path(config_path, data_dir=data_dir, secret_store=store)
    agent_key = core.agents.add("claude-code")
    await core.start()
    values = {**planted.values, "agent key": agent_key, "literal key in a config edit": literal}
    rec = Recorder(core.base_url)
    texts: dict[str, bytes | str] = {}
    events = bytearray()

    async def follow_events() -> None:
        async with aiohttp.ClientSession() as s:
            async with s.get(core.base_url + "/tiergate/events", headers={"x-api-key": planted.master_key}) as r:
                rec.keep("GET /tiergate/events", r.status, r.headers, b"")
                async for chunk in r.content.iter_any():
                    events.extend(chunk)

    follower = asyncio.create_task(follow_events())
    try:
        user = [{"role": "user", "content": "hello there"}]
        chat = {"model": "coder", "messages": user}
        msg = {"model": "orchestrator", "max_tokens": 50, "messages": user}
        # ----------------------------------------------------------------- ordinary traffic, every dialect
        for body in (chat, {**chat, "stream": True}, {**chat, "model": "orchestrator"}, {**chat, "model": "helper"}):
            assert (await rec.request("POST", "/v1/chat/completions", agent_key, body))[0] == 200
        for body in (msg, {**msg, "stream": True}, {**msg, "model": "coder"}):
            status, _ = await rec.request("POST", "/v1/messages", agent_key, body, **{"anthropic-version": "2023-06-01"})
            assert status == 200
        for model in ("coder", "codex", "orchestrator"):
            for stream in (False, True):
                status, _ = await rec.request("POST", "/v1/responses", agent_key,
                                              {"model": model, "input": "hello there", "stream": stream})
                assert status == 200
        assert (await rec.request("POST", "/v1/embeddings", agent_key, {"model": "embed", "input": "hi"}))[0] == 200
        assert (await rec.request("POST", "/v1/messages/count_tokens", agent_key,
                                  {"model": "orchestrator", "messages": user}))[0] == 200
        assert (await rec.request("GET", "/v1/models", agent_key))[0] == 200
        async with openai.AsyncOpenAI(base_url=core.base_url + "/v1", api_key=agent_key, max_retries=0) as oa:
            assert (await oa.chat.completions.create(model="coder", messages=user)).choices[0].message.content
        async with anthropic.AsyncAnthropic(base_url=core.base_url, api_key=agent_key, max_retries=0) as an:
            assert (await an.messages.create(model="orchestrator", max_tokens=20, messages=user)).content
        # ----------------------------------------------------------------- keys presented in the wrong place
        for key in (oai_key, anth_key):  # a provider key given to Tiergate as if it were an agent key
            assert (await rec.request("POST", "/v1/chat/completions", key, chat))[0] == 401
            assert (await rec.request("POST", "/v1/messages", "", msg, **{"x-api-key": key}))[0] == 401
        assert (await rec.request("GET", "/tiergate/status", agent_key))[0] == 403
        # ----------------------------------------------------------------- upstream errors echoing the key
        echo_oai = f"Incorrect API key provided: {oai_key}. You can find your API key at platform."
        echo_anth = f"invalid x-api-key: {anth_key} (x-api-key: {anth_key})"
        cases = [  # (fake, fault, path, body)
            (fake_anthropic, Fault.status(400, echo_anth), "/v1/messages", msg),
            (fake_anthropic, Fault.status(400, echo_anth), "/v1/chat/completions", {**chat, "model": "orchestrator"}),
            (fake_anthropic, Fault.status(400, echo_anth), "/v1/responses", {"model": "orchestrator", "input": "hi"}),
            (fake_anthropic, Fault.status(529, echo_anth), "/v1/messages", {**msg, "stream": True}),
            (fake_anthropic, Fault.status(400, echo_anth), "/v1/messages/count_tokens",
             {"model": "orchestrator", "messages": user}),
            (fake_openai, Fault.status(400, echo_oai), "/v1/chat/completions", chat),
            (fake_openai, Fault.status(400, echo_oai), "/v1/messages", {**msg, "model": "coder"}),
            (fake_openai, Fault.status(400, echo_oai), "/v1/responses", {"model": "coder", "input": "hi"}),
            (fake_openai, Fault.status(400, echo_oai), "/v1/responses", {"model": "codex", "input": "hi"}),
            (fake_openai, Fault.status(400, echo_oai), "/v1/embeddings", {"model": "embed", "input": "hi"}),
            (fake_openai, Fault.status(429, echo_oai), "/v1/chat/completions", {**chat, "stream": True}),
            (fake_openai, Fault.status(500, echo_oai), "/v1/responses", {"model": "codex", "input": "hi"}),
            (fake_openai, Fault.garbage(f"<html>bad gateway key={oai_key}</html>".encode()), "/v1/chat/completions",
             chat),
            (fake_openai, Fault.garbage(f'{{"error": "{oai_key}", "choices": 7}}'.encode()), "/v1/messages",
             {**msg, "model": "coder"}),
            (fake_openai, Fault.garbage(f"<html>proxy error, key={oai_key}</html>".encode()), "/v1/chat/completions",
             {**chat, "stream": True}),
            (fake_anthropic, Fault.garbage(f"event: error\ndata: {anth_key}\n\n".encode()), "/v1/messages",
             {**msg, "stream": True}),
            (fake_openai, Fault.garbage(f"<html>proxy error, key={oai_key}</html>".encode()), "/v1/responses",
             {"model": "codex", "input": "hi", "stream": True}),
        ]
        for n, (fake, fault, path, body) in enumerate(cases):
            fake.faults.append(fault)
            body = unique(body, f"error case {n}")  # never answered from the cache
            status, _ = await rec.request("POST", path, agent_key, body, **{"anthropic-version": "2023-06-01"})
            assert fake.faults == [], (path, "the fault was not used")
            assert status >= 400 or path.endswith("count_tokens") or body.get("stream"), (path, status)
        # ----------------------------------------------------------------- streams that break after the first
        # byte with an error event echoing the key (the breaker upstream), every client dialect
        for model in ("breaker-openai", "breaker-anthropic"):
            for path, body in (("/v1/chat/completions", {**chat, "model": model, "stream": True}),
                               ("/v1/messages", {**msg, "model": model, "stream": True}),
                               ("/v1/responses", {"model": model, "input": "hi", "stream": True})):
                status, raw = await rec.request("POST", path, agent_key, unique(body, f"{model} {path}"),
                                                **{"anthropic-version": "2023-06-01"})
                assert status == 200 and b"Hel" in raw, (model, path, raw[-300:])  # the stream had started
        assert len(breaker.requests) == 6
        # ----------------------------------------------------------------- config edits that do not load
        for n, template in enumerate(BROKEN):
            config_path.write_text(template.format(literal=literal))
            if n == 1:  # what a user runs next to find out what is wrong
                texts[f"keys list, broken config #{n}"] = run_cli(
                    [["keys", "list"], ["agents", "list"]], config_dir=config_dir, data_dir=data_dir,
                    keyring_backend=memory_keyring)
            assert await core.reload_config(path=config_path) is False
        config_path.write_text(good)
        assert await core.reload_config(path=config_path) is True
        assert (await rec.request("POST", "/v1/chat/completions", agent_key, chat))[0] == 200  # still serving
        # ----------------------------------------------------------------- management with the master key
        assert (await rec.request("PUT", "/tiergate/privacy", planted.master_key, {"mode": "on"}))[0] == 200
        assert (await rec.request("PUT", "/tiergate/privacy", planted.master_key, {"mode": "off"}))[0] == 200
        for path in ("/tiergate/status", "/tiergate/usage?by=agent", "/tiergate/usage?by=deployment",
                     "/health/upstreams"):
            assert (await rec.request("GET", path, planted.master_key))[0] == 200
        # ----------------------------------------------------------------- our key refused upstream (last:
        # it takes the deployment out until the key is fixed)
        fake_openai.faults.append(Fault.status(401, echo_oai))
        status, _ = await rec.request("POST", "/v1/chat/completions", agent_key, unique(chat, "refused key"))
        assert status in (502, 503)
        async with openai.AsyncOpenAI(base_url=core.base_url + "/v1", api_key=agent_key, max_retries=0) as oa:
            with pytest.raises(openai.APIStatusError) as exc:
                await oa.chat.completions.create(model="coder", messages=[{"role": "user", "content": "again"}])
            texts["SDK exception"] = f"{exc.value!r}\n{exc.value}\n{exc.value.body}"
        assert (await rec.request("GET", "/health/upstreams", planted.master_key))[0] == 200
        await asyncio.sleep(0.2)  # let the event stream deliver
    finally:
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)
        core.set_privacy_mode("on", source="test")  # an event, so the stream's handler sees its client gone
        core.set_privacy_mode("off", source="test")
        await asyncio.sleep(0.05)
        await rec.session.close()
        await core.stop()  # flushes the ledger, closes the cache
    # ----------------------------------------------------------------------- the command line
    cli = run_cli([["keys", "list"], ["agents", "list"], ["usage", "--json"], ["usage", "--by", "agent"],
                   ["privacy", "status", "--offline"], ["keys", "delete", "NOT_THERE"]],
                  config_dir=config_dir, data_dir=data_dir, keyring_backend=memory_keyring)
    texts["command line"] = cli
    from app.logging_setup import stop_logging

    stop_logging()  # flush the log file
    captured = capsys.readouterr()
    texts.update(rec.texts)
    texts.update({"event stream": bytes(events), "stdout": captured.out, "stderr": captured.err})

    # The session really produced what is searched…
    log_text = log_file.read_text()
    assert "config reload failed" in log_text and "[REDACTED]" in log_text
    assert "Authentication failed" in log_text
    with sqlite3.connect(data_dir / "usage.sqlite3") as db:
        assert db.execute("select count(*) from usage").fetchone()[0] >= 30
    assert (data_dir / "cache.sqlite3").stat().st_size > 0
    assert events.count(b"event: config_reloaded") >= len(BROKEN) + 1  # the failures and the fix
    assert "claude-code" in cli and "PLANTED_ANTHROPIC_KEY" in cli and "=== exit 0" in cli
    assert len(rec.texts) >= 40 and len(records) > 50
    # …and no planted value is anywhere in it.
    hits = search_everything(values, trees=[tmp_path], texts=texts, records=records)
    assert hits == [], "\n".join(hits) + "\n" + "\n".join(repr(texts[h.rsplit(":", 1)[0]][-400:])
                                                         for h in hits if h.startswith("HTTP"))


async def test_the_search_finds_a_leak(tmp_path):
    """The check above can fail: a value in a file, a response or a log record is found."""
    values = {"k": "plantedKC" + "ab" * 20}
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "x.sqlite3").write_bytes(b"\x00\x01" + values["k"].encode() + b"\x00")
    record = logging.LogRecord("tiergate", logging.INFO, __file__, 1, "key %s", (values["k"],), None)
    hits = search_everything(values, trees=[tmp_path], texts={"HTTP #1": b"{}", "HTTP #2": values["k"]},
                             records=[record])
    assert hits == ["sub/x.sqlite3: k", "HTTP #2: k", "log record tiergate:INFO: k"]


@pytest.mark.parametrize(("upstream", "model"), [("anthropic", "orchestrator"), ("openai", "codex")])
async def test_responses_errors_do_not_relay_an_upstream_message_unscrubbed(proxy, fake_openai, fake_anthropic,
                                                                           upstream, model):
    """An upstream 4xx on /v1/responses is relayed with the upstream's own error message: it must pass
    through the same scrubbing as every other client error (keys masked, paths replaced)."""
    from app.secrets.redact import register_secret

    secret = "plantedKC" + os.urandom(20).hex()
    register_secret(secret)  # as the core does with every provider key it resolves
    p = await proxy(CONFIG.replace("keychain/PLANTED_ANTHROPIC_KEY", "os.environ/ANTHROPIC_API_KEY")
                    .replace("os.environ/PLANTED_OPENAI_KEY", "os.environ/OPENAI_API_KEY")
                    .replace("{breaker}", "http://127.0.0.1:9"))
    fake = fake_anthropic if upstream == "anthropic" else fake_openai
    fake.faults.append(Fault.status(400, f"invalid x-api-key {secret} read from /home/alice/.config/keys.txt"))
    status, _, body = await p.request("POST", "/v1/responses", json={"model": model, "input": "hi"})
    assert status == 400
    message = body["error"]["message"]
    assert "invalid x-api-key" in message
    assert secret not in message and "/home/alice" not in message, message
    assert "[REDACTED]" in message and "<path>" in message


async def test_pass_through_stream_does_not_relay_a_foreign_event_carrying_the_key(proxy, fake_openai):
    """A 200 event stream whose first event is JSON but not a chat.completion.chunk, carrying our key (a
    misbehaving gateway between Tiergate and the provider): the client should not receive the key."""
    p = await proxy()
    (deployment,) = p.core.config.tiers["coder"]
    key = p.core.router.providers[deployment.id].api_key
    fake_openai.faults.append(Fault.garbage(f'data: {{"debug": "upstream key {key}"}}\n\n'.encode()))
    status, _, body = await p.request("POST", "/v1/chat/completions",
                                      json={"model": "coder", "stream": True,
                                            "messages": [{"role": "user", "content": "hi"}]})
    assert status == 200
    assert key not in str(body)


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages", "/v1/responses"])
@pytest.mark.parametrize("model", ["breaker-openai", "breaker-anthropic"])
async def test_mid_stream_errors_are_scrubbed(proxy, breaker, path, model):
    """After the first byte an upstream failure ends the stream with an error event in the client's
    dialect; its message, taken from the upstream, must be scrubbed like any other client error."""
    p = await proxy(CONFIG.replace("keychain/PLANTED_ANTHROPIC_KEY", "os.environ/ANTHROPIC_API_KEY")
                    .replace("os.environ/PLANTED_OPENAI_KEY", "os.environ/OPENAI_API_KEY")
                    .replace("{breaker}", breaker.base_url))
    (deployment,) = p.core.config.tiers[model]
    key = p.core.router.providers[deployment.id].api_key
    assert key
    body = {"model": model, "stream": True, "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]}
    if path == "/v1/responses":
        body = {"model": model, "stream": True, "input": "hi"}
    status, _, raw = await p.request("POST", path, json=body, headers={"anthropic-version": "2023-06-01"})
    assert status == 200 and "Hel" in raw  # the stream had started…
    assert "error" in raw  # …and ended with an error event
    assert key not in raw, raw[-400:]
