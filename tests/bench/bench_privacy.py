"""Privacy detection cost on realistic agent requests (code, diffs, logs, lockfiles, images).

    .venv/bin/python -m tests.bench.bench_privacy            # 1 KB / 10 KB / 400 KB: p50/p99 of decide()
    .venv/bin/python -m tests.bench.bench_privacy --compare  # also detect-secrets / Presidio on the same texts

Targets (issue): a 10 KB request under 1 ms and a 400 KB request under 25 ms; a 1 KB request well under
0.1 ms. The requests are built from the standard library's own source (real code), a unified diff of it,
synthetic but realistic logs (timestamps, UUIDs, git SHAs, IPs, docker digests), a package-lock excerpt
with sha512 integrity hashes and an inline base64 PNG: the texts that make naive detectors slow or noisy.
No secret is planted, so every detector runs to the end (the worst case: a clean request).
"""

from __future__ import annotations

import argparse
import base64
import difflib
import hashlib
import inspect
import json
import random
import re
import statistics
import time
import uuid

from typing import Callable

from app.canonical import ChatRequest, Message, TextPart, ToolCallPart, ToolResultPart
from app.privacy.extract import request_texts
from app.privacy.policy import PrivacyPolicy, PrivacySettings

SYSTEM = (
    "You are an interactive CLI tool that helps users with software engineering tasks. Use the instructions "
    "below and the tools available to you to assist the user. IMPORTANT: Refuse to write code or explain code "
    "that may be used maliciously. When you run a non-trivial bash command, explain what it does and why. "
    "Keep your responses short, since they will be displayed on a command line interface. "
)


def _sources() -> list[str]:
    import asyncio
    import email.message
    import json.decoder
    import logging
    import pathlib
    import textwrap
    import urllib.parse
    # The authors' e-mail addresses in the headers are real personal data: blank them so the request is
    # clean and every detector runs to the end.
    return [re.sub(r"\S+@\S+", "(address)", inspect.getsource(m))
            for m in (json.decoder, urllib.parse, pathlib, logging, textwrap, email.message, asyncio.tasks)]


def _numbered(src: str) -> str:
    return "\n".join(f"{i:>6}\t{line}" for i, line in enumerate(src.splitlines(), 1))


def _diff(src: str, rnd: random.Random) -> str:
    lines = src.splitlines(keepends=True)
    changed = list(lines)
    for _ in range(max(1, len(lines) // 40)):
        i = rnd.randrange(len(changed))
        changed[i] = changed[i].replace("self", "this").replace("return", "return  # changed\n        return")
    sha = hashlib.sha1(src.encode()).hexdigest()
    head = f"diff --git a/lib/mod.py b/lib/mod.py\nindex {sha[:7]}..{sha[7:14]} 100644\n"
    return head + "".join(difflib.unified_diff(lines, changed, "a/lib/mod.py", "b/lib/mod.py"))


def _log(rnd: random.Random, n: int) -> str:
    out = []
    for i in range(n):
        ts = f"2025-03-{1 + i % 28:02d}T{i % 24:02d}:{i % 60:02d}:{(7 * i) % 60:02d}.{i % 1000:03d}Z"
        rid = uuid.UUID(int=rnd.getrandbits(128))
        sha = hashlib.sha1(str(i).encode()).hexdigest()
        digest = hashlib.sha256(str(i).encode()).hexdigest()
        ip = f"10.{i % 256}.{(i * 7) % 256}.{(i * 13) % 256}"
        kind = i % 4
        if kind == 0:
            out.append(f"{ts} INFO  http request_id={rid} method=GET path=/api/v1/items/{i} status=200 "
                       f"duration_ms={rnd.random() * 300:.2f} client={ip}")
        elif kind == 1:
            out.append(f"{ts} DEBUG deploy commit={sha} image=registry.local/app@sha256:{digest}")
        elif kind == 2:
            out.append(f"{ts} WARN  worker[{i % 8}] retrying job {rid} after 503 (attempt {i % 5}/5), "
                       f"elapsed {rnd.randint(1000, 99999)}ms")
        else:
            out.append(f"{ts} ERROR Traceback (most recent call last):\n  File \"/srv/app/worker.py\", "
                       f"line {rnd.randint(1, 900)}, in run\n    result = await handler(job)\nTimeoutError")
    return "\n".join(out)


def _lockfile(rnd: random.Random, n: int) -> str:
    pkgs = {}
    for i in range(n):
        name = f"pkg-{i}-{rnd.choice(['core', 'utils', 'parser', 'cli'])}"
        integrity = base64.b64encode(hashlib.sha512(name.encode()).digest()).decode()
        pkgs[f"node_modules/{name}"] = {
            "version": f"{i % 9}.{i % 13}.{i % 7}",
            "resolved": f"https://registry.npmjs.org/{name}/-/{name}-{i % 9}.{i % 13}.{i % 7}.tgz",
            "integrity": f"sha512-{integrity}",
        }
    return json.dumps({"name": "app", "lockfileVersion": 3, "packages": pkgs}, indent=2)


def _png_data_url(rnd: random.Random, size: int) -> str:
    return "data:image/png;base64," + base64.b64encode(rnd.randbytes(size)).decode()


def agent_request(target_bytes: int, seed: int = 7) -> ChatRequest:
    """A Claude-Code-shaped conversation of about `target_bytes` of text: tool calls reading files,
    running git diff, tailing logs, reading a lockfile, viewing an HTML page with an inline image."""
    rnd = random.Random(seed)
    sources = _sources()
    messages = [Message("user", [TextPart("Fix the flaky retry logic in the worker and update the tests.")])]
    size = len(SYSTEM) + 64
    n = 0
    while size < target_bytes:
        kind = n % 5
        src = sources[n % len(sources)]
        budget = max(200, min(24_000, target_bytes - size))
        if kind == 0:
            call = ToolCallPart(f"toolu_{n:04d}", "Read", json.dumps({"file_path": f"/srv/app/mod{n}.py"}))
            body = _numbered(src)[:budget]
        elif kind == 1:
            call = ToolCallPart(f"toolu_{n:04d}", "Bash", json.dumps({"command": "git diff HEAD~1"}))
            body = _diff(src, rnd)[:budget]
        elif kind == 2:
            call = ToolCallPart(f"toolu_{n:04d}", "Bash", json.dumps({"command": "tail -n 200 logs/app.log"}))
            body = _log(rnd, 200)[:budget]
        elif kind == 3:
            call = ToolCallPart(f"toolu_{n:04d}", "Read", json.dumps({"file_path": "/srv/app/package-lock.json"}))
            body = _lockfile(rnd, 60)[:budget]
        else:
            call = ToolCallPart(f"toolu_{n:04d}", "Read", json.dumps({"file_path": "/srv/app/static/index.html"}))
            body = (f'<html><body><h1>Status</h1><img alt="chart" src="{_png_data_url(rnd, 3000)}">'
                    "</body></html>")[:budget]
        messages.append(Message("assistant", [TextPart("Let me look at that."), call]))
        messages.append(Message("user", [ToolResultPart(call.id, [TextPart(body)])]))
        size += len(body) + len(call.arguments) + 40
        n += 1
    return ChatRequest(model="coder", messages=messages, system=[TextPart(SYSTEM)])


def small_request() -> ChatRequest:
    text = ("Please refactor `parse_config` so that it raises ConfigError with the line number when a key is "
            "missing. Here is the current code:\n\n```python\ndef parse_config(data):\n    for key in REQUIRED:\n"
            "        if key not in data:\n            raise ValueError(key)\n    return Config(**data)\n```\n"
            "The tests are in tests/test_config.py; run them with pytest -q after the change. Keep the public "
            "signature, and update the docstring. Commit 3f2a9c1 introduced the regression; see the CI run "
            "for job 8c1d7e0e-54a9-4f1e-a8f1-6f4d2b9b1e33.")
    return ChatRequest(model="coder", messages=[Message("user", [TextPart(text)])],
                       system=[TextPart(SYSTEM[:300])])


def _time(fn, repeat: int) -> tuple[float, float]:
    fn()  # warm
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    samples.sort()
    return statistics.median(samples), samples[min(len(samples) - 1, int(len(samples) * 0.99))]


def _size(req: ChatRequest) -> int:
    return sum(len(t) for _, t in request_texts(req))


# --------------------------------------------------------------------------------------- comparison
def _joined(req: ChatRequest) -> str:
    return "\n".join(t for _, t in request_texts(req))


def detect_secrets_scan(text: str) -> list[str]:
    """detect-secrets 1.5 with its default plugins and filters, line by line (as `scan_file` does)."""
    from detect_secrets.core.scan import _process_line_based_plugins
    from detect_secrets.settings import default_settings, get_settings

    with default_settings():
        get_settings().disable_filters("detect_secrets.filters.common.is_invalid_file")
        lines = list(enumerate(text.splitlines(), 1))
        return sorted({s.type for s in _process_line_based_plugins(lines, filename="request.txt")})


PRESIDIO_SCRIPT = r"""
import json, sys, time
from presidio_analyzer.predefined_recognizers import (CreditCardRecognizer, EmailRecognizer, IbanRecognizer,
    PhoneRecognizer, UsSsnRecognizer)
recognizers = [EmailRecognizer(), PhoneRecognizer(), CreditCardRecognizer(), IbanRecognizer(), UsSsnRecognizer()]
def scan(text):
    out = set()
    for r in recognizers:
        for res in r.analyze(text, r.supported_entities, None):
            if res.score >= data["min_score"]:
                out.add(res.entity_type)
    return sorted(out)
data = json.load(sys.stdin)
result = {"labelled": [scan(t) for t in data["labelled"]], "timing": {}}
for name, text in data["timing"].items():
    scan(text)
    samples = []
    for _ in range(data["repeat"]):
        t0 = time.perf_counter(); scan(text); samples.append((time.perf_counter() - t0) * 1000)
    samples.sort()
    result["timing"][name] = samples[len(samples) // 2]
print(json.dumps(result))
"""


def compare(repeat: int, presidio_python: str | None) -> None:
    import subprocess

    from tests.unit.test_privacy_corpus import NEGATIVES, POSITIVES

    scanner = PrivacyPolicy().scanner
    secret_pos = [(t, r) for _, t, r in POSITIVES if r.startswith("secret.")]
    pii_pos = [(t, r) for _, t, r in POSITIVES if r.startswith("pii.")]
    negatives = [t for _, t in NEGATIVES]

    def ours(text: str) -> set[str]:
        return {h.rule for h in scanner.text_hits(text)}

    def score(found: Callable[[str], set[str] | list[str]], positives: list[tuple[str, str]], *, exact: bool) -> str:
        tp = sum(1 for t, r in positives if (r in found(t) if exact else bool(found(t))))
        fp = sum(1 for t in negatives if found(t))
        return f"{tp}/{len(positives)} found, {fp}/{len(negatives)} negatives flagged"

    print("\nAccuracy on the labelled corpus (tests/unit/test_privacy_corpus.py)")
    print(f"  tiergate secrets       {score(ours, secret_pos, exact=True)}")
    print(f"  tiergate personal data {score(ours, pii_pos, exact=True)}")
    print(f"  detect-secrets         {score(detect_secrets_scan, secret_pos, exact=False)}")
    flagged = [n for n, t in NEGATIVES if detect_secrets_scan(t)]
    print(f"    flags: {', '.join(flagged)}")
    missed = [t[:40] for t, _ in secret_pos if not detect_secrets_scan(t)]
    print(f"    misses {len(missed)}: {', '.join(n for n, t, r in POSITIVES if r.startswith('secret.') and not detect_secrets_scan(t))}")
    timing = {"10 KB": _joined(agent_request(10_000)), "400 KB": _joined(agent_request(400_000))}
    print("\nTime to scan the benchmark texts (median ms)")
    for label, text in timing.items():
        p50, _ = _time(lambda: list(scanner.text_hits(text)), max(5, repeat // 20))
        ds, _ = _time(lambda: detect_secrets_scan(text), 5)
        print(f"  {label:>6}: tiergate {p50:8.2f}   detect-secrets {ds:9.2f}")
    if presidio_python:
        for min_score in (0.5, 0.3):  # pattern-only scores: phones come out at 0.4 without NLP context words
            _presidio(presidio_python, timing, negatives, min_score)


def _presidio(python: str, timing: dict[str, str], negatives: list[str], min_score: float) -> None:
    import subprocess

    from tests.unit.test_privacy_corpus import NEGATIVES, POSITIVES

    pii_names = [n for n, _, r in POSITIVES if r.startswith("pii.")]
    payload = {"labelled": [t for _, t, r in POSITIVES if r.startswith("pii.")] + negatives,
               "timing": timing, "repeat": 5, "min_score": min_score}
    proc = subprocess.run([python, "-c", PRESIDIO_SCRIPT], input=json.dumps(payload), text=True,
                          capture_output=True, check=True)
    res = json.loads(proc.stdout)
    n_pos = len(pii_names)
    tp = sum(1 for found in res["labelled"][:n_pos] if found)
    fp_names = [NEGATIVES[i][0] for i, found in enumerate(res["labelled"][n_pos:]) if found]
    missed = [pii_names[i] for i, found in enumerate(res["labelled"][:n_pos]) if not found]
    print(f"  Presidio pattern recognizers (score >= {min_score}): {tp}/{n_pos} found, "
          f"{len(fp_names)}/{len(negatives)} negatives flagged ({', '.join(fp_names)}); "
          + ", ".join(f"{k} {v:.2f} ms" for k, v in res["timing"].items()))
    print(f"    misses: {', '.join(missed)}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=200)
    ap.add_argument("--compare", action="store_true", help="also score and time detect-secrets (and Presidio)")
    ap.add_argument("--presidio-python", help="python of a venv with presidio-analyzer, for --compare")
    args = ap.parse_args()
    policy = PrivacyPolicy(PrivacySettings())
    # The same request is decided again and again: without this, every run after the first would be
    # answered from the scanner's memory of clean texts, which is not what a new request costs.
    policy.scanner.clean = None
    cases = [("1 KB", small_request(), 0.1), ("10 KB", agent_request(10_000), 1.0),
             ("400 KB", agent_request(400_000), 25.0)]
    print(f"{'request':>8} {'chars':>8} {'p50 ms':>8} {'p99 ms':>8} {'target':>8}")
    for label, req, target in cases:
        decision = policy.decide(req, agent_policy=None, headers={})
        assert decision.level == "any", f"clean benchmark request flagged: {decision.rule}"
        repeat = args.repeat if len(label) < 6 else max(20, args.repeat // 4)
        p50, p99 = _time(lambda: policy.decide(req, agent_policy=None, headers={}), repeat)
        print(f"{label:>8} {_size(req):>8} {p50:>8.3f} {p99:>8.3f} {'<' + str(target):>8}")
    if args.compare:
        compare(args.repeat, args.presidio_python)


if __name__ == "__main__":
    main()
