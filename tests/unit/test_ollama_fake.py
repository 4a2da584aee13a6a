"""The fake Ollama speaks Ollama's wire formats: checked with the official client and raw HTTP."""

import httpx
import ollama
import orjson
import pytest

from tests.fakes.base import Fault
from tests.fakes.ollama_fixtures import fake_ollama  # noqa: F401
from tests.fakes.ollama_server import FakeModel, FakeOllama
from tests.fakes.scripts import Reply


async def lines(resp: httpx.Response) -> list[dict]:
    return [orjson.loads(line) async for line in resp.aiter_lines() if line]


async def test_root_version_tags_show_ps(fake_ollama: FakeOllama):
    async with httpx.AsyncClient(base_url=fake_ollama.base_url) as http:
        assert (await http.head("/")).status_code == 200
        assert (await http.get("/")).text == "Ollama is running"
        assert (await http.get("/api/version")).json() == {"version": "0.12.6"}
        tags = (await http.get("/api/tags")).json()["models"]
    assert [t["name"] for t in tags] == ["llama3.2:latest", "gemma3:4b"]
    assert set(tags[1]) == {"name", "model", "modified_at", "size", "digest", "details"}
    assert tags[1]["size"] == 3_338_801_804 and len(tags[1]["digest"]) == 64
    assert tags[1]["details"] == {"parent_model": "", "format": "gguf", "family": "gemma3", "families": ["gemma3"],
                                  "parameter_size": "4.3B", "quantization_level": "Q4_K_M"}
    client = ollama.AsyncClient(host=fake_ollama.base_url)
    show = await client.show("gemma3:4b")
    assert show.modelinfo["gemma3.block_count"] == 34 and show.capabilities == ["completion", "vision"]
    assert show.details.family == "gemma3"
    assert (await client.ps()).models == []
    with pytest.raises(ollama.ResponseError) as e:
        await client.show("nope:1b")
    assert e.value.status_code == 404 and e.value.error == "model 'nope:1b' not found"


async def test_chat_streams_ndjson_with_a_final_done_line(fake_ollama: FakeOllama):
    fake_ollama.replies.append(Reply(text="Paris is the capital.", thinking="The user asks...", chunks=2,
                                     input_tokens=26, output_tokens=7))
    body = {"model": "llama3.2", "messages": [{"role": "user", "content": "Capital of France?"}],
            "options": {"num_ctx": 32768, "temperature": 0}, "keep_alive": "10m"}
    async with httpx.AsyncClient(base_url=fake_ollama.base_url) as http:
        async with http.stream("POST", "/api/chat", json=body) as resp:
            assert resp.headers["content-type"] == "application/x-ndjson"
            out = await lines(resp)
    assert [x["message"].get("thinking", "") for x in out[:2]] == ["The user", " asks..."]
    assert "".join(x["message"]["content"] for x in out) == "Paris is the capital."
    assert all(x["done"] is False for x in out[:-1]) and all(x["model"] == "llama3.2" for x in out)
    final = out[-1]
    assert final["done"] is True and final["done_reason"] == "stop" and final["message"]["content"] == ""
    assert final["prompt_eval_count"] == 26 and final["eval_count"] == 7
    assert {"total_duration", "load_duration", "prompt_eval_duration", "eval_duration"} <= set(final)
    call = fake_ollama.chat_calls[-1]
    assert (call.model, call.num_ctx, call.keep_alive, call.stream) == ("llama3.2", 32768, "10m", True)
    ps = (await ollama.AsyncClient(host=fake_ollama.base_url).ps()).models
    assert [(m.model, m.context_length) for m in ps] == [("llama3.2:latest", 32768)]
    assert fake_ollama.loads == [("llama3.2:latest", 32768)]


async def test_chat_non_streaming_with_tool_calls(fake_ollama: FakeOllama):
    fake_ollama.replies.append(Reply(tool_calls=[("get_weather", '{"city": "Paris"}')]))
    client = ollama.AsyncClient(host=fake_ollama.base_url)
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    r = await client.chat(model="llama3.2", messages=[{"role": "user", "content": "weather?"}], tools=tools,
                          stream=False, keep_alive=0)
    assert r.done and r.done_reason == "stop" and r.message.content == ""
    (call,) = r.message.tool_calls
    assert call.function.name == "get_weather" and call.function.arguments == {"city": "Paris"}
    raw = fake_ollama.requests[-1].json
    assert raw["stream"] is False and raw["keep_alive"] == 0
    assert fake_ollama.chat_calls[-1].tools[0]["function"]["name"] == "get_weather"
    assert fake_ollama.loaded == {} and fake_ollama.unloads == ["llama3.2:latest"]  # keep_alive 0


async def test_streamed_tool_calls_carry_ids(fake_ollama: FakeOllama):
    fake_ollama.replies.append(Reply(text="", tool_calls=[("add", '{"a": 1, "b": 2}')]))
    async with httpx.AsyncClient(base_url=fake_ollama.base_url) as http:
        async with http.stream("POST", "/api/chat", json={
                "model": "llama3.2", "messages": [{"role": "user", "content": "1+2"}],
                "tools": [{"type": "function", "function": {"name": "add"}}]}) as resp:
            out = await lines(resp)
    calls = out[-2]["message"]["tool_calls"]
    assert calls[0]["id"].startswith("call_") and calls[0]["function"] == {"index": 0, "name": "add",
                                                                           "arguments": {"a": 1, "b": 2}}


async def test_unknown_model_and_capability_errors(fake_ollama: FakeOllama):
    async with httpx.AsyncClient(base_url=fake_ollama.base_url) as http:
        r = await http.post("/api/chat", json={"model": "qwen9:1b", "messages": [{"role": "user", "content": "x"}]})
        assert r.status_code == 404 and r.json() == {"error": 'model "qwen9:1b" not found, try pulling it first'}
        r = await http.post("/api/chat", json={"model": "gemma3:4b", "think": True,
                                              "messages": [{"role": "user", "content": "x"}]})
        assert r.status_code == 400 and r.json() == {"error": '"gemma3:4b" does not support thinking'}
        r = await http.post("/api/generate", json={"model": "qwen9:1b"})
        assert r.status_code == 404 and r.json() == {"error": "model 'qwen9:1b' not found"}
        r = await http.post("/api/chat", content=b"")
        assert r.status_code == 400 and r.json() == {"error": "missing request body"}


async def test_injected_faults_use_ollamas_error_shape(fake_ollama: FakeOllama):
    fake_ollama.faults.append(Fault.status(500, "llama runner process has terminated"))
    with pytest.raises(ollama.ResponseError) as e:
        await ollama.AsyncClient(host=fake_ollama.base_url).chat(model="llama3.2", messages=[{"role": "user",
                                                                                             "content": "x"}])
    assert e.value.status_code == 500 and e.value.error == "llama runner process has terminated"


async def test_generate_loads_and_unloads_with_empty_prompts(fake_ollama: FakeOllama):
    async with httpx.AsyncClient(base_url=fake_ollama.base_url) as http:
        r = (await http.post("/api/generate", json={"model": "gemma3:4b", "keep_alive": -1,
                                                    "options": {"num_ctx": 8192}})).json()
        assert set(r) == {"model", "created_at", "response", "done", "done_reason"}
        assert (r["response"], r["done"], r["done_reason"]) == ("", True, "load")
        ps = (await http.get("/api/ps")).json()["models"][0]
        assert ps["context_length"] == 8192 and ps["size"] == 5_964_735_424 and ps["size_vram"] == ps["size"]
        assert ps["expires_at"] > "2100"  # keep_alive -1: forever
        r = (await http.post("/api/generate", json={"model": "gemma3:4b", "keep_alive": 0})).json()
        assert r["done_reason"] == "unload"
        assert (await http.get("/api/ps")).json() == {"models": []}
        r = (await http.post("/api/chat", json={"model": "gemma3:4b", "messages": []})).json()
        assert r["done_reason"] == "load" and r["message"] == {"role": "assistant", "content": ""}


async def test_embed(fake_ollama: FakeOllama):
    client = ollama.AsyncClient(host=fake_ollama.base_url)
    r = await client.embed(model="llama3.2", input=["a", "b"])
    assert len(r.embeddings) == 2 and len(r.embeddings[0]) == 8 and r.embeddings[0] != r.embeddings[1]
    assert r.prompt_eval_count == 2
    again = await client.embed(model="llama3.2", input="a")
    assert again.embeddings[0] == r.embeddings[0]


async def test_pull_lines_match_ollamas(fake_ollama: FakeOllama):
    fake_ollama.add_model(FakeModel("tiny:1b", size=10_000_000, layers=[("sha256:" + "ab" * 32, 9_000_000),
                                                                         ("sha256:" + "cd" * 32, 1_000_000)]),
                          installed=False)
    fake_ollama.pull_chunk = 4_000_000
    async with httpx.AsyncClient(base_url=fake_ollama.base_url) as http:
        async with http.stream("POST", "/api/pull", json={"model": "tiny:1b"}) as resp:
            out = await lines(resp)
    assert out == [
        {"status": "pulling manifest"},
        {"status": "pulling abababababab", "digest": "sha256:" + "ab" * 32, "total": 9_000_000},
        {"status": "pulling abababababab", "digest": "sha256:" + "ab" * 32, "total": 9_000_000, "completed": 4_000_000},
        {"status": "pulling abababababab", "digest": "sha256:" + "ab" * 32, "total": 9_000_000, "completed": 8_000_000},
        {"status": "pulling abababababab", "digest": "sha256:" + "ab" * 32, "total": 9_000_000, "completed": 9_000_000},
        {"status": "pulling cdcdcdcdcdcd", "digest": "sha256:" + "cd" * 32, "total": 1_000_000},
        {"status": "pulling cdcdcdcdcdcd", "digest": "sha256:" + "cd" * 32, "total": 1_000_000, "completed": 1_000_000},
        {"status": "verifying sha256 digest"}, {"status": "writing manifest"}, {"status": "success"},
    ]
    assert "tiny:1b" in fake_ollama.installed


async def test_pull_errors(fake_ollama: FakeOllama):
    client = ollama.AsyncClient(host=fake_ollama.base_url)
    with pytest.raises(ollama.ResponseError) as e:
        async for _ in await client.pull("nosuchmodel:7b", stream=True):
            pass
    assert e.value.error == "pull model manifest: file does not exist"
    async with httpx.AsyncClient(base_url=fake_ollama.base_url) as http:
        r = await http.post("/api/pull", json={"model": "nosuchmodel:7b", "stream": False})
        assert r.status_code == 500 and r.json() == {"error": "pull model manifest: file does not exist"}
        r = await http.post("/api/pull", json={"model": "a b"})
        assert r.status_code == 400 and r.json() == {"error": "invalid model name"}


async def test_delete_copy_and_registry_manifest(fake_ollama: FakeOllama):
    client = ollama.AsyncClient(host=fake_ollama.base_url)
    await client.copy("gemma3:4b", "gemma3:mine")
    assert "gemma3:mine" in fake_ollama.installed
    await client.delete("gemma3:mine")
    with pytest.raises(ollama.ResponseError) as e:
        await client.delete("gemma3:mine")
    assert e.value.status_code == 404 and e.value.error == "model 'gemma3:mine' not found"
    with pytest.raises(ollama.ResponseError) as e:
        await client.copy("nope", "x")
    assert e.value.status_code == 404 and e.value.error == 'model "nope" not found'
    async with httpx.AsyncClient(base_url=fake_ollama.base_url) as http:
        m = (await http.get("/v2/library/qwen3/manifests/14b")).json()
        assert sum(layer["size"] for layer in m["layers"]) == 9_276_198_565
        assert m["layers"][0]["mediaType"] == "application/vnd.ollama.image.model"
        assert (await http.get("/v2/library/nope/manifests/1b")).status_code == 404
        assert (await http.post("/api/create", json={"model": "x"})).status_code in (404, 405)
        assert (await http.post("/api/push", json={"model": "x"})).status_code in (404, 405)
