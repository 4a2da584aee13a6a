"""`tiergate privacy`: the global privacy switch, and what a request would trigger.

    tiergate privacy on | off     everything stays on this machine / only what is sensitive stays
    tiergate privacy status       the switch, and whether it came from the running server or the file
    tiergate privacy test FILE    which rules a JSON request body fires, where, and the decision

`on`/`off`/`status` talk to the running server's management API (config host/port, master key from
TIERGATE_MASTER_KEY or the keychain) so the change takes effect at once and the tray hears of it; when no
server answers, they read or write the persisted switch file in the data directory.
`test` never prints matched text: only rule names and places such as `messages[3].content[0].text`.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import orjson

from app.errors import BadRequest, TiergateError

STATE_FILE = "privacy.json"
_DIALECT_MODULES = {"openai_chat": "openai_chat", "anthropic": "anthropic_messages",
                    "openai_responses": "openai_responses", "ollama": "ollama_chat"}


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("privacy", help="privacy mode switch; explain what a request would trigger",
                              description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="privacy_command", metavar="ACTION", required=True)
    for name, text in (("on", "privacy mode on: every request stays on this machine"),
                       ("off", "privacy mode off: only sensitive requests stay local"),
                       ("status", "show the privacy switch")):
        s = sub.add_parser(name, help=text)
        s.add_argument("--offline", action="store_true", help="use the state file even if a server runs")
        s.set_defaults(func=run_switch, privacy_action=name)
    t = sub.add_parser("test", help="show which rules a JSON request body would fire (never the matched text)")
    t.add_argument("file", help="request body as JSON (OpenAI chat, Anthropic, Responses or Ollama); - for stdin")
    t.add_argument("--dialect", choices=sorted(_DIALECT_MODULES), help="default: detected from the body's shape")
    t.add_argument("--agent-policy", default=None, help='the agent\'s privacy policy, e.g. "local"')
    t.add_argument("--header", default=None, help="value of X-Tiergate-Privacy to assume")
    t.add_argument("--json", action="store_true", help="print the result as JSON")
    t.set_defaults(func=run_test)


# ------------------------------------------------------------------------------------------ switch
def run_switch(args: argparse.Namespace, *, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    action = args.privacy_action
    config = _load_config(args)
    server = None if args.offline else _server_address(config)
    if server is not None and _reachable(*server):
        mode = _via_api(server, None if action == "status" else action)
        where = f"running server at {server[0]}:{server[1]}"
        problem = None
    else:
        from app.privacy.state import PrivacyState, read_mode

        path = state_path()
        if action == "status":
            mode, problem = read_mode(path)
        else:
            PrivacyState(path).set(action == "on", source="cli")
            mode, problem = action, None
        where = f"{path} (no server running)"
    print(f"Privacy mode: {mode} — {_explain(mode)}", file=out)
    print(f"Source: {where}", file=out)
    if problem:
        print(f"Warning: the switch file is unusable ({problem}); privacy mode is ON until it is set again "
              "with `tiergate privacy on|off`.", file=out)
    return 0


def _explain(mode: str) -> str:
    return ("every request stays on this machine" if mode == "on"
            else "requests the detectors flag still stay on this machine")


def state_path() -> Path:
    from app import paths

    return paths.data_dir() / STATE_FILE


def _load_config(args: argparse.Namespace) -> Any:
    from app import paths
    from app.config import load_config

    path = Path(args.config).expanduser() if getattr(args, "config", None) else paths.default_config_path()
    return load_config(path) if path.exists() else None


def _server_address(config: Any) -> tuple[str, int]:
    host, port = "127.0.0.1", 4000
    if config is not None:
        host, port = config.server.host, config.server.port
    if host in ("0.0.0.0", "", "::"):
        host = "127.0.0.1"
    return host, int(port)


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _master_key() -> str:
    key = os.environ.get("TIERGATE_MASTER_KEY")
    if key:
        return key
    from app.secrets.store import SecretStore

    return SecretStore().master_key()


def _via_api(server: tuple[str, int], action: str | None) -> str:
    import httpx

    host, port = server
    url = f"http://{'[' + host + ']' if ':' in host else host}:{port}/tiergate/privacy"
    headers = {"Authorization": f"Bearer {_master_key()}"}
    try:
        if action is None:
            resp = httpx.get(url, headers=headers, timeout=5.0)
        else:
            resp = httpx.put(url, headers=headers, json={"mode": action}, timeout=5.0)
    except httpx.HTTPError as e:
        raise TiergateError(f"The server at {host}:{port} did not answer ({type(e).__name__}).",
                            title="Server unreachable") from None
    if resp.status_code in (401, 403):
        raise TiergateError("The running server refused the master key. Set TIERGATE_MASTER_KEY to the key "
                            "shown by `tiergate keys master`.", title="Not authorised")
    if resp.status_code != 200:
        raise TiergateError(f"The server answered {resp.status_code} to {url}.", title="Privacy switch")
    mode = resp.json().get("mode")
    if mode not in ("on", "off"):
        raise TiergateError("The server's answer had no privacy mode.", title="Privacy switch")
    return mode


# -------------------------------------------------------------------------------------------- test
def detect_dialect(body: dict[str, Any]) -> str:
    """The dialect a request body is written in, from its shape."""
    if "messages" not in body and ("input" in body or "instructions" in body):
        return "openai_responses"
    if any(k in body for k in ("options", "keep_alive", "format")) and "messages" in body:
        return "ollama"
    if "system" in body or "stop_sequences" in body or "anthropic_version" in body:
        return "anthropic"
    for msg in body.get("messages") or []:
        if not isinstance(msg, dict):
            continue
        if msg.get("role") in ("system", "tool", "developer", "function") or "tool_calls" in msg:
            return "ollama" if "images" in msg or _ollama_tool_calls(msg) else "openai_chat"
        if "images" in msg:
            return "ollama"
        content = msg.get("content")
        if isinstance(content, list):
            for block in content:
                kind = block.get("type") if isinstance(block, dict) else None
                if kind in ("tool_use", "tool_result", "thinking", "redacted_thinking", "document") or \
                        (kind == "image" and "source" in block):
                    return "anthropic"
                if kind in ("image_url", "input_audio", "file"):
                    return "openai_chat"
    return "openai_chat"


def _ollama_tool_calls(msg: dict[str, Any]) -> bool:
    calls = msg.get("tool_calls")
    return isinstance(calls, list) and any(isinstance(c, dict) and isinstance(c.get("function", {}).get(
        "arguments"), dict) for c in calls)


def parse_body(body: Any, dialect: str | None = None) -> tuple[Any, str]:
    """(canonical request, dialect name)."""
    import importlib

    if not isinstance(body, dict):
        raise BadRequest("The file must hold one JSON object: a request body.")
    name = dialect or detect_dialect(body)
    module = importlib.import_module(f"app.dialects.{_DIALECT_MODULES[name]}")
    return module.parse_request(body, {}), name


def run_test(args: argparse.Namespace, *, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    from app.privacy.extract import request_texts
    from app.privacy.policy import PrivacyPolicy
    from app.privacy.state import read_mode

    raw = sys.stdin.buffer.read() if args.file == "-" else _read_file(args.file)
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise BadRequest(f"{args.file} is not valid JSON ({e}).", title="Not a request body") from None
    req, dialect = parse_body(body, args.dialect)
    config = _load_config(args)
    policy = PrivacyPolicy.from_config(config) if config is not None else PrivacyPolicy()
    switch, problem = read_mode(state_path())
    headers = {"x-tiergate-privacy": args.header} if args.header else {}
    t0 = time.perf_counter()
    decision = policy.decide(req, agent_policy=args.agent_policy, headers=headers, global_on=switch == "on",
                             explain=True)
    elapsed = (time.perf_counter() - t0) * 1000
    chars = sum(len(t) for _, t in request_texts(req, include_tool_specs=policy.settings.scan_tool_specs))
    result = {
        "dialect": dialect, "dialect_detected": args.dialect is None, "chars_scanned": chars,
        "findings": [{"rule": f.rule, "place": f.place, "start": f.start, "end": f.end,
                      "maskable": f.redactable} for f in decision.findings],
        "decision": {"level": decision.level, "rule": decision.rule, "sources": list(decision.sources),
                     "redact": decision.redact},
        "privacy_switch": switch, "action": policy.settings.action, "ms": round(elapsed, 3),
    }
    if args.json:
        out.write(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() + "\n")
        return 0
    how = "detected" if args.dialect is None else "given"
    print(f"Dialect: {dialect} ({how}); {chars:,} characters scanned in {elapsed:.2f} ms", file=out)
    if decision.findings:
        print(f"Findings ({len(decision.findings)}):", file=out)
        width = max(len(f.rule) for f in decision.findings)
        for f in decision.findings:
            print(f"  {f.rule:<{width}}  {f.place}  [{f.start}:{f.end}]", file=out)
    else:
        print("Findings: none", file=out)
    line = f"Decision: {decision.level}"
    if decision.rule:
        line += f" ({decision.rule}; raised by {', '.join(decision.sources) or 'detectors'})"
    if decision.redact:
        line += " — matched spans would be masked before a cloud model and restored in the answer"
    print(line, file=out)
    print(f"Privacy switch: {switch}" + (f" (switch file unusable: {problem})" if problem else ""), file=out)
    return 0


def _read_file(name: str) -> bytes:
    try:
        return Path(name).expanduser().read_bytes()
    except OSError as e:
        raise BadRequest(f"Cannot read {name}: {e.strerror or type(e).__name__}.", title="No such file") from None
