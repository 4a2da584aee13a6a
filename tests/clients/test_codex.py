"""Codex CLI (`codex exec --json`) against Tiergate through a custom model provider (`wire_api = "responses"`,
the only one 0.169 accepts), one tier per upstream dialect, with a tool round trip: the model calls Codex's
`exec_command` function tool to write a file, Codex runs it and sends the output back as a
`function_call_output`, the model answers with final text.

What Codex sends (0.169.0): streaming `POST /v1/responses` of ~40 KB — `instructions` absent, developer-role
input messages, `store: false`, `include: ["reasoning.encrypted_content"]`, `prompt_cache_key`, `client_metadata`,
`reasoning: {summary: auto}`, and tools beyond functions (`namespace`, `web_search`). `[features] plugins = false`
stops its start-up fetch from github.com and `[analytics] enabled = false` its call to ab.chatgpt.com (the egress
trap records both otherwise).

The scripted command runs with `--dangerously-bypass-approvals-and-sandbox`: these tests are about Tiergate, and
Codex's own sandbox (Landlock/seccomp, Seatbelt) is not available on every machine that runs them.
"""

from __future__ import annotations

import json

import pytest

from tests.clients.harness import (
    TIER_UPSTREAM,
    base_env,
    chat_requests,
    check_traffic,
    run_client,
    tool_results,
)
from tests.fakes import Reply

FINAL = "Created hello.txt with the greeting."
COMMAND = "printf 'hello from tiergate\\n' > hello.txt && cat hello.txt"
CALL_IDS = {"anthropic": "toolu_01TgExecHello0000000000", "chat": "call_TgExecHello000000000000",
            "responses": "call_TgExecHello000000000000", "ollama": "call_tg_exec_hello"}

CONFIG = """\
model_provider = "tiergate"

[model_providers.tiergate]
name = "Tiergate"
base_url = "{base}/v1"
env_key = "TIERGATE_API_KEY"
wire_api = "responses"

[features]
plugins = false

[analytics]
enabled = false
"""


async def run_codex(exe: str, stack, model: str, prompt: str = "Create hello.txt saying hello."):
    codex_home = stack.dirs.home / ".codex"
    codex_home.mkdir(exist_ok=True)
    (codex_home / "config.toml").write_text(CONFIG.format(base=stack.base_url))
    env = base_env(stack.dirs.home, stack.trap, {"CODEX_HOME": str(codex_home), "TIERGATE_API_KEY": stack.key})
    argv = [exe, "exec", "--json", "--skip-git-repo-check", "--ephemeral",
            "--dangerously-bypass-approvals-and-sandbox", "-m", model, prompt]
    return await run_client(argv, cwd=stack.dirs.work, env=env, timeout=45)


def events(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def check_codex_dialect(stack) -> None:
    """What the issue lists about Codex's requests, as Tiergate received them."""
    assert {(r.method, r.path_qs) for r in stack.inbound.requests} == {("POST", "/v1/responses")}
    sent = stack.inbound.chat("/v1/responses")
    assert len(sent) == 2
    for r in sent:
        body = r.body
        assert body["stream"] is True and body["store"] is False
        assert body["include"] == ["reasoning.encrypted_content"]
        assert body["prompt_cache_key"] and isinstance(body["client_metadata"], dict)
        assert any(i.get("role") == "developer" for i in body["input"])
        assert {"function", "namespace", "web_search"} <= {t["type"] for t in body["tools"]}
        assert r.headers["user-agent"].startswith("codex_exec/")
    assert sent[0].body["prompt_cache_key"] == sent[1].body["prompt_cache_key"]


@pytest.mark.parametrize("tier", [
    "orchestrator",  # → Anthropic Messages
    "coder",  # → OpenAI Chat Completions
    "codex",  # → OpenAI Responses (pass-through; client_metadata stays with Tiergate),
    "helper",  # → Ollama /api/chat
])
async def test_codex_runs_a_command_through_each_dialect(codex_exe, stack, tier):
    dialect = TIER_UPSTREAM[tier][1]
    fake = stack.upstream(tier)
    fake.replies += [Reply(text="", tool_calls=[("exec_command", json.dumps({"cmd": COMMAND}), CALL_IDS[dialect])]),
                     Reply(text=FINAL)]
    run = await run_codex(codex_exe, stack, tier)
    assert run.returncode == 0, run.describe()
    evs = events(run.stdout)
    done = [e["item"] for e in evs if e["type"] == "item.completed"]
    commands = [i for i in done if i["type"] == "command_execution"]
    assert [(c["exit_code"], c["aggregated_output"]) for c in commands] == [(0, "hello from tiergate\n")], \
        run.describe()
    assert [i["text"] for i in done if i["type"] == "agent_message"] == [FINAL]
    assert (stack.dirs.work / "hello.txt").read_text() == "hello from tiergate\n"
    first, second = chat_requests(fake, dialect)
    assert tool_results(first, dialect) == {}
    result = tool_results(second, dialect)["exec_command" if dialect == "ollama" else CALL_IDS[dialect]]
    assert "Process exited with code 0" in result and "hello from tiergate" in result
    check_codex_dialect(stack)
    records = check_traffic(stack, tier, turns=2)
    assert all(r.stream and r.dialect_in == "openai_responses" for r in records)
    # Codex's own account of the tokens is what Tiergate recorded.
    usage = [e["usage"] for e in evs if e["type"] == "turn.completed"][-1]
    assert usage["input_tokens"] == sum(r.input_tokens + r.cache_read_tokens for r in records)
    assert usage["output_tokens"] == sum(r.output_tokens for r in records)
