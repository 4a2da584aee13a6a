"""aider (`aider --message`, OpenAI Chat Completions through `--openai-api-base`) against Tiergate, one tier
per upstream dialect. aider has no tools: it edits files from SEARCH/REPLACE blocks in the model's text. The
round trip here: the model answers with a block creating hello.txt, aider applies it and runs its test command
(`--auto-test`), which fails; aider sends the command's output back to the model, the model answers with a
second block, aider applies it and the test passes.

What aider sends (0.86): streaming `POST /v1/chat/completions` with `temperature: 0` and no `stream_options`
(Tiergate asks the upstream for usage itself and records it). `--model-metadata-file` keeps aider from
downloading model prices, LITELLM_LOCAL_MODEL_COST_MAP=True keeps litellm from doing the same at import
(raw.githubusercontent.com, seen by the egress trap otherwise), and `--no-check-update`, `--analytics-disable`
stop the rest.
"""

from __future__ import annotations

import json

import pytest

from tests.clients.harness import (
    TIER_UPSTREAM,
    base_env,
    chat_requests,
    check_traffic,
    last_user_text,
    run_client,
)
from tests.fakes import Reply

TEST_CMD = "grep -q checked hello.txt || (echo MARKER MISSING; cat hello.txt; exit 1)"
CREATE = ("I'll create the file.\n\nhello.txt\n```text\n<<<<<<< SEARCH\n=======\nhello from tiergate\n"
          ">>>>>>> REPLACE\n```\n")
FINAL = "The test wants a marker; adding it."
FIX = (f"{FINAL}\n\nhello.txt\n```text\n<<<<<<< SEARCH\nhello from tiergate\n=======\n"
       "hello from tiergate, checked\n>>>>>>> REPLACE\n```\n")


async def run_aider(exe: str, stack, tier: str):
    metadata = stack.dirs.home / "model-metadata.json"
    metadata.write_text(json.dumps({f"openai/{tier}": {
        "max_input_tokens": 128000, "max_output_tokens": 16384, "max_tokens": 16384, "input_cost_per_token": 0.0,
        "output_cost_per_token": 0.0, "litellm_provider": "openai", "mode": "chat"}}))
    env = base_env(stack.dirs.home, stack.trap, {"OPENAI_API_KEY": stack.key, "LITELLM_LOCAL_MODEL_COST_MAP": "True"})
    argv = [exe, "--model", f"openai/{tier}", "--openai-api-base", f"{stack.base_url}/v1",
            "--model-metadata-file", str(metadata), "--no-git", "--yes-always", "--no-check-update",
            "--no-show-release-notes", "--analytics-disable", "--no-pretty", "--no-fancy-input",
            "--edit-format", "diff", "--auto-test", "--test-cmd", TEST_CMD, "--message", "Create hello.txt."]
    return await run_client(argv, cwd=stack.dirs.work, env=env, timeout=60)  # a cold start compiles ~9 s


@pytest.mark.parametrize("tier", ["orchestrator", "coder", "codex", "helper"])
async def test_aider_edits_a_file_through_each_dialect(aider_exe, stack, tier):
    fake = stack.upstream(tier)
    fake.replies += [Reply(text=CREATE), Reply(text=FIX)]
    run = await run_aider(aider_exe, stack, tier)
    assert run.returncode == 0, run.describe()
    assert run.stdout.count("Applied edit to hello.txt") == 2, run.describe()
    assert FINAL in run.stdout
    assert (stack.dirs.work / "hello.txt").read_text() == "hello from tiergate, checked\n"
    dialect = TIER_UPSTREAM[tier][1]
    first, second = chat_requests(fake, dialect)
    assert "I ran this command:" not in last_user_text(first, dialect)
    # The test command's output went back to the model in the next request.
    assert "I ran this command:" in last_user_text(second, dialect)
    assert "MARKER MISSING\nhello from tiergate" in last_user_text(second, dialect)
    assert {(r.method, r.path_qs) for r in stack.inbound.requests} == {("POST", "/v1/chat/completions")}
    sent = stack.inbound.chat("/v1/chat/completions")
    assert [(r.body["stream"], "stream_options" in r.body) for r in sent] == [(True, False)] * 2
    assert all(r.headers["user-agent"].startswith("OpenAI/Python") for r in sent)
    records = check_traffic(stack, tier, turns=2)
    assert all(r.stream and r.dialect_in == "openai_chat" for r in records)
