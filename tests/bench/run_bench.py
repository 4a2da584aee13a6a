"""Tiergate benchmark: direct vs bare pass-through vs Tiergate, in one run, against one fake upstream.

    .venv/bin/python tests/bench/run_bench.py [--duration 5] [--quick]

Every process is separate: the fake OpenAI upstream, the bare proxy (tests/bench/bare_proxy.py) and
`tiergate serve`, all on 127.0.0.1. Load comes from `wrk` (Debian: `apt-get install wrk`). Reported:
requests/s at concurrency 1, 16, 64 and p50/p99 latency; streaming time to first chunk and total for a
50-chunk stream; Tiergate's RSS idle and after N requests; time from `tiergate serve` to the port
answering; and the Anthropic-inbound scenario against a bare translator. Ratios are what to read: this
machine is shared and noisy, so the targets take turns: wrk runs rotate through them for `--rounds`
rounds (the median round is kept), and streams alternate one by one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import psutil

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable
KEY = "sk-bench-upstream"

UPSTREAM_SCRIPT = """
import asyncio, sys
sys.path.insert(0, {root!r})
from tests.fakes import FakeOpenAI, Reply
class Forever(list):  # every request gets the same 50-chunk answer
    def __bool__(self): return True
    def pop(self, i=-1): return Reply(text="router " * 100, chunks=50)
async def main():
    fake = FakeOpenAI(api_key={key!r}); fake.record = False; fake.replies = Forever()
    await fake.start(); print(fake.port, flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""

BODY = {"model": "coder", "messages": [{"role": "user", "content": "Write a haiku about routers."}],
        "max_tokens": 64}
ANTHROPIC_BODY = {"model": "coder", "max_tokens": 64,
                  "messages": [{"role": "user", "content": "Write a haiku about routers."}]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(args: list[str], env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env={**os.environ, **(env or {})}, cwd=ROOT)


def wait_port(port: int, timeout: float = 10.0) -> float:
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return time.perf_counter() - t0
        time.sleep(0.005)
    raise RuntimeError(f"port {port} never answered")


def wrk(url: str, body: dict, headers: dict, *, conns: int, duration: float) -> dict:
    script = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
    lines = ['wrk.method = "POST"', f"wrk.body = {json.dumps(json.dumps(body))}"]
    for k, v in {"content-type": "application/json", **headers}.items():
        lines.append(f'wrk.headers["{k}"] = "{v}"')
    script.write("\n".join(lines))
    script.close()
    proc = subprocess.run(["wrk", "-t1" if conns == 1 else "-t2", f"-c{conns}", f"-d{max(1, round(duration))}s", "--latency",
                           "-s", script.name, url], capture_output=True, text=True)
    os.unlink(script.name)
    out = proc.stdout
    if "Requests/sec" not in out:
        raise RuntimeError(f"wrk failed against {url}: {proc.stdout[-500:]} {proc.stderr[-500:]}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    lat = {}
    for pct in ("50", "99"):
        m = re.search(rf"\s{pct}(?:\.000)?%\s+([\d.]+)(us|ms|s)", out)
        value = float(m.group(1))
        lat[pct] = value / 1000 if m.group(2) == "us" else value * 1000 if m.group(2) == "s" else value
    return {"rps": rps, "p50_ms": lat["50"], "p99_ms": lat["99"], "errors": int(non2xx.group(1)) if non2xx else 0}


async def stream_timings(targets: dict[str, tuple[str, dict, dict]], n: int) -> dict[str, dict]:
    """Time to first chunk and total of `n` sequential streams per target, the targets taking turns (so
    a noisy moment on this shared machine hits all of them alike). Medians in ms, and how many streams
    carried token usage."""
    samples: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in targets}
    with_usage = dict.fromkeys(targets, 0)
    async with aiohttp.ClientSession() as s:

        async def one(url: str, body: dict, headers: dict) -> tuple[float, float, bool]:
            t0 = time.perf_counter()
            first = None
            parts = []
            async with s.post(url, json=body, headers=headers) as r:
                async for chunk in r.content.iter_any():
                    if first is None:
                        first = time.perf_counter() - t0
                    parts.append(chunk)
            total = (time.perf_counter() - t0) * 1000
            return first * 1000, total, _stream_has_usage(b"".join(parts))  # type: ignore[operator]

        for url, body, headers in targets.values():  # warm-up: connections open, code paths hot
            for _ in range(10):
                await one(url, body, headers)
        for _ in range(n):
            for name, (url, body, headers) in targets.items():
                ttfc, total, usage = await one(url, body, headers)
                samples[name][0].append(ttfc)
                samples[name][1].append(total)
                with_usage[name] += usage
    return {name: {"ttfc_p50_ms": statistics.median(a), "total_p50_ms": statistics.median(t),
                   "streams": n, "with_usage": with_usage[name]} for name, (a, t) in samples.items()}


def _stream_has_usage(body: bytes) -> bool:
    """An OpenAI stream's usage chunk, or an Anthropic stream's message_delta usage, with output tokens."""
    for frame in body.split(b"\n\n"):
        data = frame.rpartition(b"data: ")[2]
        if b'"usage"' not in data or data == b"[DONE]":
            continue
        usage = (json.loads(data).get("usage") or {})
        if usage.get("completion_tokens") or usage.get("output_tokens"):
            return True
    return False


def wrk_rounds(targets: dict[str, tuple[str, dict, dict]], *, conns: int, duration: float,
               rounds: int) -> dict[str, dict]:
    """`wrk` against each target in turn, `rounds` times (the order rotating each round); per target the
    round with the median requests/s is kept (its latencies with it)."""
    runs: dict[str, list[dict]] = {name: [] for name in targets}
    names = list(targets)
    for i in range(rounds):
        for name in names[i % len(names):] + names[:i % len(names)]:
            url, body, headers = targets[name]
            runs[name].append(wrk(url, body, headers, conns=conns, duration=duration))
    out = {}
    for name, results in runs.items():
        ordered = sorted(results, key=lambda r: r["rps"])
        out[name] = {**ordered[len(ordered) // 2], "rounds": [r["rps"] for r in results]}
    return out


def tiergate_config(upstream_port: int, port: int, data: Path) -> Path:
    cfg = data / "config.yaml"
    cfg.write_text(f"""
model_list:
  - model_name: coder
    litellm_params:
      model: openai/gpt-4o-mini
      api_base: http://127.0.0.1:{upstream_port}/v1
      api_key: os.environ/BENCH_UPSTREAM_KEY
  - model_name: cached
    litellm_params:
      model: openai/gpt-4o-mini
      api_base: http://127.0.0.1:{upstream_port}/v1
      api_key: os.environ/BENCH_UPSTREAM_KEY
tiergate_settings:
  port: {port}
  cache: {{enabled: true}}
""")
    return cfg


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--rss-requests", type=int, default=100_000)
    ap.add_argument("--quick", action="store_true", help="short run for a smoke check")
    ap.add_argument("--rounds", type=int, default=3, help="wrk rounds per target (median kept); --quick: 1")
    ap.add_argument("--write", metavar="FILE", help="also write the results as Markdown to FILE (docs/benchmark.md)")
    a = ap.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed: apt-get install wrk (Debian) / brew install wrk (macOS)")
    dur = 2.0 if a.quick else a.duration
    data = Path(tempfile.mkdtemp(prefix="tiergate-bench-"))
    procs: list[subprocess.Popen] = []
    results: dict = {}
    try:
        up = spawn([PY, "-c", UPSTREAM_SCRIPT.format(root=str(ROOT), key=KEY)])
        procs.append(up)
        up_port = int(up.stdout.readline())
        bare_port = free_port()
        bare = spawn([PY, str(ROOT / "tests/bench/bare_proxy.py"), "--port", str(bare_port),
                      "--upstream", f"http://127.0.0.1:{up_port}"])
        procs.append(bare)
        bare.stdout.readline()
        tg_port = free_port()
        env = {"BENCH_UPSTREAM_KEY": KEY, "TIERGATE_CONFIG_DIR": str(data), "TIERGATE_DATA_DIR": str(data / "data")}
        cfg = tiergate_config(up_port, tg_port, data)
        # an agent key for the bench, created with the CLI like a user would
        agent_key = subprocess.run([PY, "-m", "app", "--config", str(cfg), "agents", "add", "bench"],
                                   capture_output=True, text=True, env={**os.environ, **env}, cwd=ROOT
                                   ).stdout.strip().splitlines()[0].strip()
        t0 = time.perf_counter()
        tg = spawn([PY, "-m", "app", "--config", str(cfg), "serve", "--log-level", "WARNING"], env)
        procs.append(tg)
        wait_port(tg_port)
        results["ready_s"] = round(time.perf_counter() - t0, 3)
        time.sleep(0.5)
        results["rss_idle_mb"] = round(psutil.Process(tg.pid).memory_info().rss / 2**20, 1)

        rounds = 1 if a.quick else a.rounds
        results["rounds"] = rounds
        auth = {"authorization": f"Bearer {KEY}"}
        tg_headers = {"authorization": f"Bearer {agent_key}", "x-tiergate-cache": "off"}
        body = {**BODY, "model": "gpt-4o-mini"}
        targets = {
            "direct": (f"http://127.0.0.1:{up_port}/v1/chat/completions", body, auth),
            "bare": (f"http://127.0.0.1:{bare_port}/v1/chat/completions", body, auth),
            "tiergate": (f"http://127.0.0.1:{tg_port}/v1/chat/completions", BODY, tg_headers),
        }
        an = {"bare_translator": (f"http://127.0.0.1:{bare_port}/v1/messages", {**ANTHROPIC_BODY, "model": "gpt-4o-mini"},
                                  {"x-api-key": KEY}),
              "tiergate_messages": (f"http://127.0.0.1:{tg_port}/v1/messages", ANTHROPIC_BODY,
                                    {"x-api-key": agent_key, "anthropic-version": "2023-06-01",
                                     "x-tiergate-cache": "off"})}
        stream_n = 50 if a.quick else 300
        # Latency first (c=1 and streams, one request at a time), throughput after: every latency figure is
        # taken on an equally rested machine, not right after a minute at full load on both cores (on this
        # machine, everything answered ~40% slower for a while after the c=64 runs, direct included).
        for name, r in wrk_rounds(targets, conns=1, duration=dur, rounds=rounds).items():
            results[f"{name}_c1"] = r
        for name, r in wrk_rounds(an, conns=1, duration=dur, rounds=rounds).items():  # Anthropic in, OpenAI up
            results[f"{name}_c1"] = r
        streams = {name: (url, {**b, "stream": True}, h) for name, (url, b, h) in targets.items()}
        for name, r in asyncio.run(stream_timings(streams, stream_n)).items():
            results[f"{name}_stream"] = r
        an_streams = {name: (url, {**b, "stream": True}, h) for name, (url, b, h) in an.items()}
        an_streams["direct"] = streams["direct"]
        for name, r in asyncio.run(stream_timings(an_streams, stream_n)).items():
            results[f"{name}_stream" if name != "direct" else "direct_stream_2"] = r
        # Cache hits: the same request again and again (the first one fills the cache)
        tiergate_url = targets["tiergate"][0]
        hit_headers = {"authorization": f"Bearer {agent_key}"}
        results["cache_hit_c1"] = wrk(tiergate_url, {**BODY, "model": "cached"}, hit_headers, conns=1, duration=dur)
        # Throughput
        for conns in (16, 64):
            for name, r in wrk_rounds(targets, conns=conns, duration=dur, rounds=rounds).items():
                results[f"{name}_c{conns}"] = r
        for name, r in wrk_rounds(an, conns=16, duration=dur, rounds=rounds).items():
            results[f"{name}_c16"] = r
        # RSS: warmed up (after the runs above), then after N more requests
        results["rss_warm_mb"] = round(psutil.Process(tg.pid).memory_info().rss / 2**20, 1)
        n = 10_000 if a.quick else a.rss_requests
        rps = results["tiergate_c64"]["rps"]
        done = wrk(tiergate_url, BODY, tg_headers, conns=64, duration=max(2.0, n / max(rps, 1)))
        results["rss_after_mb"] = round(psutil.Process(tg.pid).memory_info().rss / 2**20, 1)
        results["rss_after_requests"] = int(done["rps"] * max(2.0, n / max(rps, 1)))
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(data, ignore_errors=True)
    text = report(results)
    print(json.dumps(results, indent=1))
    print(text)
    if a.write:
        Path(a.write).write_text(
            "# Benchmark results\n\nProduced by `tests/bench/run_bench.py"
            + (" --quick" if a.quick else "") + f"` on {time.strftime('%Y-%m-%d')}, "
            f"{os.cpu_count()} cores, Python {sys.version.split()[0]}. Direct, bare pass-through and Tiergate "
            "were measured in the same run against the same fake upstream; read the ratios.\n\n```\n"
            + text + "\n```\n\nRaw figures:\n\n```json\n" + json.dumps(results, indent=1) + "\n```\n")


def report(r: dict) -> str:
    out: list[str] = []
    print = out.append  # noqa: A001 - the summary is returned as text
    d1, b1, t1 = r["direct_c1"]["p50_ms"], r["bare_c1"]["p50_ms"], r["tiergate_c1"]["p50_ms"]
    print(f"== Summary (ratios from this run; wrk: median of {r.get('rounds', 1)} round(s) per target) ==")
    print(f"added p50 latency at c=1: bare {b1 - d1:.3f} ms, tiergate {t1 - d1:.3f} ms "
          f"-> {((t1 - d1) / max(b1 - d1, 1e-6)):.2f}x bare (target <= 1.3x)")
    for c in (16, 64):
        print(f"req/s at c={c}: direct {r[f'direct_c{c}']['rps']:.0f}, bare {r[f'bare_c{c}']['rps']:.0f}, "
              f"tiergate {r[f'tiergate_c{c}']['rps']:.0f} -> {r[f'tiergate_c{c}']['rps'] / r[f'bare_c{c}']['rps']:.0%}"
              " of bare (target >= 70%)")
    for k in ("ttfc_p50_ms", "total_p50_ms"):
        d, b, t = r["direct_stream"][k], r["bare_stream"][k], r["tiergate_stream"][k]
        print(f"stream {k}: direct {d:.2f}, bare {b:.2f}, tiergate {t:.2f} -> added {t - d:.2f} vs {b - d:.2f} ms "
              f"({(t - d) / max(b - d, 1e-6):.2f}x bare, target <= 1.3x)")
    bt1, tm1 = r["bare_translator_c1"]["p50_ms"], r["tiergate_messages_c1"]["p50_ms"]
    print(f"anthropic inbound c=1 p50 added: bare translator {bt1 - d1:.3f} ms, tiergate {tm1 - d1:.3f} ms "
          f"-> {(tm1 - d1) / max(bt1 - d1, 1e-6):.2f}x (target <= 1.3x)")
    print(f"anthropic inbound req/s c=16: bare translator {r['bare_translator_c16']['rps']:.0f}, tiergate "
          f"{r['tiergate_messages_c16']['rps']:.0f} -> "
          f"{r['tiergate_messages_c16']['rps'] / r['bare_translator_c16']['rps']:.0%} (target >= 70%)")
    for k in ("ttfc_p50_ms", "total_p50_ms"):
        d, b, t = r["direct_stream_2"][k], r["bare_translator_stream"][k], r["tiergate_messages_stream"][k]
        print(f"anthropic inbound stream {k}: direct {d:.2f}, bare translator {b:.2f}, tiergate {t:.2f} -> added "
              f"{t - d:.2f} vs {b - d:.2f} ms ({(t - d) / max(b - d, 1e-6):.2f}x, target <= 1.3x)")
    ts = r["tiergate_messages_stream"]
    print(f"anthropic inbound streams with usage: {ts['with_usage']} of {ts['streams']} (target: every one)")
    print(f"cache hit through the proxy at c=1: p50 {r['cache_hit_c1']['p50_ms']:.3f} ms, "
          f"p99 {r['cache_hit_c1']['p99_ms']:.3f} ms (target p50 < 1 ms)")
    print(f"RSS idle {r['rss_idle_mb']} MB (target < 80); warmed up {r['rss_warm_mb']} MB, after "
          f"{r['rss_after_requests']} more requests {r['rss_after_mb']} MB "
          f"({r['rss_after_mb'] - r['rss_warm_mb']:+.1f} MB, target within 5 MB); ready in {r['ready_s']} s (target < 1 s)")
    return "\n".join(out)


if __name__ == "__main__":
    main()
