"""Claude Code (`claude -p`) against Tiergate, one tier per upstream dialect, with a tool round trip: the model
asks Claude Code's own Write tool to create a file, Claude Code writes it and sends the tool result, the model
answers with final text.

What Claude Code sends (2.1.197): `HEAD /` first (no key; only when no proxy is configured), then streaming `POST /v1/messages?beta=true` of
~75-115 KB — 20+ tools, system blocks with cache_control, a long anthropic-beta list, x-claude-code-session-id,
metadata.user_id, max_tokens 32000, `thinking` (adaptive for a model name it does not know, such as a tier
name, with `output_config.effort` and — under the mid-conversation-system beta — a `role: "system"` turn inside
`messages`; `enabled` with a budget for a Claude model name). A stream that breaks is re-sent with
`stream: false`. CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1 stops its calls to api.anthropic.com (without it
the egress trap records six).
"""

from __future__ import annotations

import json

import orjson
import pytest

from tests.clients.harness import (
    CLIENT_TIERS,
    TIER_UPSTREAM,
    base_env,
    chat_requests,
    check_traffic,
    run_client,
    tool_results,
)
from tests.fakes import Fault, Reply

FINAL = "Wrote hello.txt for you."
CONTENT = "hello from tiergate\n"
CALL_IDS = {"anthropic": "toolu_01TgWriteHello000000000", "chat": "call_TgWriteHello0000000000",
            "responses": "call_TgWriteHello0000000000", "ollama": "call_tg_write_hello"}


def claude_env(stack, *, proxies: bool = True) -> dict[str, str]:
    env = base_env(stack.dirs.home, stack.trap, {
        "ANTHROPIC_BASE_URL": stack.base_url,
        "ANTHROPIC_API_KEY": stack.key,  # the Tiergate agent key
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    })
    if not proxies:  # Claude Code skips its `HEAD /` connectivity check when a proxy is configured
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
            env.pop(name)
            env.pop(name.lower())
    return env


async def run_claude(exe: str, stack, model: str, prompt: str = "Create hello.txt saying hello.",
                     *, proxies: bool = True, retries: int | None = None):
    argv = [exe, "-p", prompt, "--model", model, "--output-format", "json", "--permission-mode", "acceptEdits"]
    env = claude_env(stack, proxies=proxies)
    if retries is not None:
        env["CLAUDE_CODE_MAX_RETRIES"] = str(retries)
    return await run_client(argv, cwd=stack.dirs.work, env=env, timeout=45)


def script_write(stack, tier: str) -> str:
    """Queue the two turns on the tier's fake; returns the path the model asks Claude Code to write."""
    target = str(stack.dirs.work / "hello.txt")
    dialect = TIER_UPSTREAM[tier][1]
    fake = stack.upstream(tier)
    fake.replies += [Reply(text="", tool_calls=[("Write", json.dumps({"file_path": target, "content": CONTENT}),
                                                 CALL_IDS[dialect])]),
                     Reply(text=FINAL)]
    return target


def check_round_trip(stack, tier: str, run, *, refused: int = 0) -> None:
    assert run.returncode == 0, run.describe()
    result = json.loads(run.stdout)
    assert result["result"] == FINAL and result["is_error"] is False, run.describe()
    assert (stack.dirs.work / "hello.txt").read_text() == CONTENT
    dialect = TIER_UPSTREAM[tier][1]
    first, second = chat_requests(stack.upstream(tier), dialect)[refused:]
    assert tool_results(first, dialect) == {}
    key = "Write" if dialect == "ollama" else CALL_IDS[dialect]
    assert tool_results(second, dialect)[key].startswith("File created successfully at: "), second
    records = check_traffic(stack, tier, turns=2, refused=refused)
    assert all(r.stream and r.dialect_in == "anthropic" for r in records)
    check_claude_code_dialect(stack)
    # Claude Code's own account of the tokens is what Tiergate recorded.
    assert result["usage"]["input_tokens"] == sum(r.input_tokens for r in records)
    assert result["usage"]["output_tokens"] == sum(r.output_tokens for r in records)


def check_claude_code_dialect(stack) -> None:
    """What the issue lists about Claude Code's requests, as Tiergate received them."""
    assert {r.path_qs for r in stack.inbound.requests} == {"/v1/messages?beta=true"}  # no count_tokens in -p
    sent = stack.inbound.chat("/v1/messages")
    assert len(sent) == 2
    for r in sent:
        assert r.path_qs == "/v1/messages?beta=true"
        assert r.headers["x-claude-code-session-id"]
        assert len(r.headers["anthropic-beta"].split(",")) >= 3
        body = r.body
        assert body["stream"] is True and body["max_tokens"] >= 32000 and body["thinking"]["type"] in (
            "adaptive", "enabled")
        assert len(body["tools"]) >= 12 and {"Write", "Read", "Bash", "Edit"} <= {t["name"] for t in body["tools"]}
        assert any("cache_control" in block for block in body["system"])
        assert len(orjson.dumps(body)) > 50_000


@pytest.mark.parametrize(("tier", "model"), [
    ("orchestrator", "claude-sonnet-4-5"),  # Anthropic → Anthropic, through a model alias
    ("coder", "coder"),  # → OpenAI Chat Completions
    ("codex", "codex"),  # → OpenAI Responses
    ("thinker", "thinker"),  # → Ollama /api/chat, a local model that can think
])
async def test_claude_code_writes_a_file_through_each_dialect(claude_exe, stack, tier, model):
    script_write(stack, tier)
    run = await run_claude(claude_exe, stack, model)
    check_round_trip(stack, tier, run)
    if tier == "orchestrator":
        upstream = stack.upstream(tier).requests[-1]
        assert upstream.headers["anthropic-beta"].startswith("claude-code-20250219,")
        assert upstream.headers["x-api-key"] == stack.upstream(tier).api_key  # Tiergate's key, not the agent's


async def test_claude_code_recovers_from_a_broken_stream(claude_exe, stack):
    """The upstream drops the stream mid-answer: Tiergate ends it with an error event, Claude Code re-sends
    the request without streaming, and both requests are in the ledger (the broken one flagged)."""
    fake = stack.upstream("coder")
    fake.faults.append(Fault.reset_after_chunks(4))
    fake.replies += [Reply(text="This answer will be cut off half way through.", chunks=6), Reply(text=FINAL)]
    run = await run_claude(claude_exe, stack, "coder", prompt="Say something.")
    assert run.returncode == 0, run.describe()
    assert json.loads(run.stdout)["result"] == FINAL
    assert [b.get("stream") for b in chat_requests(fake, "chat")] == [True, None]
    records = stack.usage.records
    assert [(r.status, r.stream, r.error) for r in records] == [("error", True, "upstream_unreachable"),
                                                                 ("ok", False, "")]
    assert records[0].usage_estimated and not records[1].usage_estimated
    assert (records[1].input_tokens, records[1].output_tokens) == (fake.served[1].input_tokens,
                                                                   fake.served[1].output_tokens)
    assert stack.trap.attempts == [] and stack.guard.refused == []


# ---------------------------------------------------------------------------- what these runs found
async def test_claude_code_by_tier_name_on_the_anthropic_tier(claude_exe, stack):
    """Given a tier name (a model it does not know), Claude Code sends a `role: "system"` turn inside
    `messages` under the mid-conversation-system beta; Tiergate passes it to the Anthropic upstream as is."""
    script_write(stack, "orchestrator")
    run = await run_claude(claude_exe, stack, "orchestrator")
    check_round_trip(stack, "orchestrator", run)
    first = chat_requests(stack.upstream("orchestrator"), "anthropic")[0]
    assert "mid-conversation-system-2026-04-07" in stack.upstream("orchestrator").requests[-1].headers[
        "anthropic-beta"]
    assert [m["role"] for m in first["messages"]] == ["user", "system"]


async def test_claude_code_on_a_local_model_that_cannot_think(claude_exe, stack):
    """Claude Code always asks for thinking; Ollama refuses `think` for a model without that capability. The
    provider learns it from the first refusal, re-sends without `think`, and leaves it out from then on."""
    script_write(stack, "helper")
    run = await run_claude(claude_exe, stack, "helper")
    check_round_trip(stack, "helper", run, refused=1)
    assert [b.get("think") for b in chat_requests(stack.upstream("helper"), "ollama")] == [True, None, None]


@pytest.mark.parametrize("tiergate_config", [CLIENT_TIERS + "  auth_max_failures: 2\n"])
async def test_claude_code_started_again_and_again_is_not_locked_out(claude_exe, stack, tiergate_config):
    """Without a proxy configured, every Claude Code start sends `HEAD /` with no key: that probe must not
    count toward the failed-authentication lock-out of 127.0.0.1."""
    fake = stack.upstream("coder")
    for n in range(3):
        fake.replies.append(Reply(text=f"Answer {n}."))
        run = await run_claude(claude_exe, stack, "coder", prompt=f"Say thing number {n}.",  # no cache hit
                               proxies=False, retries=0)
        assert run.returncode == 0, run.describe()
        assert json.loads(run.stdout)["result"] == f"Answer {n}."
    assert [r.status for r in stack.usage.records] == ["ok"] * 3
    assert [(r.method, r.path_qs) for r in stack.inbound.requests if r.method == "HEAD"] == [("HEAD", "/")] * 3
