"""`tiergate models`: local models on an Ollama host, and whether they fit this machine.

    tiergate models list                  installed models (name, size, family, parameters, quantisation)
    tiergate models ps                    loaded models (size, GPU share, context, until)
    tiergate models pull NAME [--force]   download with a progress bar; Ctrl-C stops, the next pull resumes
    tiergate models rm NAME               delete
    tiergate models cp SOURCE NAME        copy / tag
    tiergate models load NAME [--ctx N]   load (warm up); the memory guard makes room first
    tiergate models unload NAME           unload (keep_alive 0)
    tiergate models fit NAME [--ctx N]    does it fit next to what is loaded? what to do if not
    tiergate models recommend             what to run on this machine, per role
    tiergate models status                is Ollama installed, running, reachable; this machine's memory

The host is `--host` (a URL, or a host name from tiergate_settings.ollama), else OLLAMA_HOST, else
http://localhost:11434. Memory budget, guard and model size overrides come from the config when it loads.
`--json` prints machine-readable output where useful. Sizes are binary (GiB = 2^30 bytes).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Awaitable, Callable, TextIO

import orjson

from app.config.schema import Deployment
from app.events import EventBus, PullProgress
from app.ollama.errors import OllamaUnavailable
from app.ollama.hosts import OllamaHost, OllamaSettings, is_loopback, normalize_url, parse_settings
from app.ollama.manager import OllamaManager
from app.ollama.memory import MemoryPlanner
from app.ollama.registry import DEFAULT_REGISTRY
from app.ollama.system_memory import SystemMemory
from app.ollama.types import FitReport, LoadedModel, ModelInfo
from app.ollama.units import GiB, human_bytes, human_duration, human_rate

DEFAULT_HOST = "http://localhost:11434"
REGISTRY: str | None = DEFAULT_REGISTRY  # where model sizes are looked up before a pull (tests: the fake)


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("models", help="list, pull, load and size local Ollama models",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("--host", help="Ollama URL or configured host name (default: OLLAMA_HOST or localhost:11434)")
    sub = p.add_subparsers(dest="models_command", metavar="ACTION", required=True)

    def add(name: str, help: str, func: Callable[..., Awaitable[int]], *, json: bool = False,
            model: bool = False, ctx: bool = False) -> argparse.ArgumentParser:
        s = sub.add_parser(name, help=help)
        if model:
            s.add_argument("name", metavar="NAME", help="model name, e.g. gemma3:4b")
        if ctx:
            s.add_argument("--ctx", type=int, default=None, help="context length (num_ctx) to size it for")
        if json:
            s.add_argument("--json", action="store_true", help="print JSON")
        s.set_defaults(func=lambda args, out=None, err=None: _run(func, args, out, err))
        return s

    add("list", "installed models", cmd_list, json=True)
    add("ps", "loaded models", cmd_ps, json=True)
    s = add("pull", "download a model (Ctrl-C stops; running it again resumes)", cmd_pull, model=True)
    s.add_argument("--force", action="store_true", help="pull even if it cannot fit this machine's memory")
    add("rm", "delete a model", cmd_rm, model=True)
    s = add("cp", "copy a model to a new name (tag it)", cmd_cp, model=True)
    s.add_argument("destination", metavar="NEW_NAME")
    s = add("load", "load (warm up) a model", cmd_load, model=True, ctx=True, json=True)
    s.add_argument("--keep-alive", default=None, help="how long it stays loaded (e.g. 30m, 1h, -1 forever)")
    s.add_argument("--force", action="store_true", help="load even if the estimate says it does not fit")
    add("unload", "unload a model", cmd_unload, model=True)
    s = add("fit", "check whether a model fits next to what is loaded", cmd_fit, model=True, ctx=True, json=True)
    s.add_argument("--size", type=float, default=None, help="its resident size in GiB, instead of the estimate")
    add("recommend", "models for this machine's memory, per role", cmd_recommend, json=True)
    add("status", "Ollama health and this machine's memory", cmd_status, json=True)


# ------------------------------------------------------------------------------------------- plumbing
def _run(func: Callable[..., Awaitable[int]], args: argparse.Namespace, out: TextIO | None,
         err: TextIO | None) -> int:
    return asyncio.run(_with_manager(func, args, out or sys.stdout, err or sys.stderr))


async def _with_manager(func: Callable[..., Awaitable[int]], args: argparse.Namespace, out: TextIO,
                        err: TextIO) -> int:
    settings, deployments = _settings(args, err)
    host = _host(args, settings)
    planner = MemoryPlanner(settings)
    if getattr(args, "size", None):
        planner.size_overrides[args.name] = int(args.size * GiB)
    # The chosen host first (commands act on it); the other configured hosts for context advice.
    hosts = [host, *(h for h in settings.hosts if h.name != host.name and h.url != host.url)]
    manager = OllamaManager(hosts, EventBus(), planner, settings=settings, registry=REGISTRY)
    manager.deployments = deployments  # type: ignore[attr-defined] - for `recommend`
    try:
        return await func(manager, args, out, err)
    except OllamaUnavailable as e:
        health = await manager.check_host(host)
        if health.ok:
            raise
        raise OllamaUnavailable(f"{health.message}. {health.fix}") from e
    finally:
        await manager.close()


def _settings(args: argparse.Namespace, err: TextIO) -> tuple[OllamaSettings, list[Deployment]]:
    """tiergate_settings.ollama and the deployments from the config when one loads; defaults otherwise."""
    path = getattr(args, "config", None)
    try:
        from app.paths import default_config_path

        file = Path(path) if path else default_config_path()
    except Exception:  # noqa: BLE001 - no config location: defaults
        return OllamaSettings(), []
    if not file.exists():
        return OllamaSettings(), []
    try:
        from app.config import load_config

        config = load_config(file)
        return parse_settings(config.section("ollama")), list(config.deployments)
    except Exception as e:  # noqa: BLE001 - a broken config must not stop `models` from working
        print(f"Note: ignoring the config ({getattr(e, 'message', type(e).__name__)}); using defaults.", file=err)
        return OllamaSettings(), []


def _host(args: argparse.Namespace, settings: OllamaSettings) -> OllamaHost:
    value = getattr(args, "host", None) or os.environ.get("OLLAMA_HOST") or ""
    if value:
        configured = settings.host(value)
        if configured is not None:
            return configured
        url = normalize_url(value)
        if url.startswith("http://0.0.0.0") or url.startswith("http://[::]"):  # a bind address, not a target
            url = url.replace("0.0.0.0", "127.0.0.1", 1).replace("[::]", "[::1]", 1)
        return OllamaHost("local" if is_loopback(url) else url.split("://", 1)[1], url, True)
    for h in settings.hosts:
        if h.local:
            return h
    return OllamaHost("local", DEFAULT_HOST)


def _json(out: TextIO, value: Any) -> None:
    out.write(orjson.dumps(value, option=orjson.OPT_INDENT_2, default=_default).decode() + "\n")


def _default(value: Any) -> Any:
    if hasattr(value, "__dataclass_fields__"):
        return {k: getattr(value, k) for k in value.__dataclass_fields__}
    raise TypeError


def _table(out: TextIO, headers: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    for row in [headers, *rows]:
        out.write("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() + "\n")


def ago(when: datetime | None, now: datetime | None = None) -> str:
    if when is None:
        return "-"
    now = now or datetime.now(timezone.utc)
    seconds = (now - when).total_seconds()
    future = seconds < 0
    seconds = abs(seconds)
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = int(seconds // size)
            text = f"{n} {unit}{'s' if n != 1 else ''}"
            return f"{text} from now" if future else f"{text} ago"
    return "now" if not future else "in under a minute"


# ------------------------------------------------------------------------------------------- commands
async def cmd_list(m: OllamaManager, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    models = await m.list_models()
    if args.json:
        _json(out, {"host": m.hosts[0].url, "models": models})
        return 0
    if not models:
        out.write(f"No models on {m.hosts[0].name}. Pull one: tiergate models pull gemma3:4b\n")
        return 0
    _table(out, ["NAME", "SIZE", "FAMILY", "PARAMS", "QUANT", "MODIFIED"], [_list_row(x) for x in models])
    return 0


def _list_row(x: ModelInfo) -> list[str]:
    return [x.name, human_bytes(x.size_bytes), x.family or "-", x.parameter_size or "-", x.quantization or "-",
            ago(x.modified_at)]


async def cmd_ps(m: OllamaManager, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    loaded = await m.ps()
    if args.json:
        _json(out, {"host": m.hosts[0].url, "models": loaded})
        return 0
    if not loaded:
        out.write("No model is loaded.\n")
        return 0
    _table(out, ["NAME", "SIZE", "PROCESSOR", "CONTEXT", "UNTIL"], [_ps_row(x) for x in loaded])
    return 0


def _ps_row(x: LoadedModel) -> list[str]:
    until = "forever" if x.expires_at and x.expires_at.year > 2200 else ago(x.expires_at)
    return [x.name, human_bytes(x.size_bytes), x.processor, str(x.context_length or "-"), until]


def render_progress(e: PullProgress, width: int = 28) -> str:
    """One line of the pull progress bar."""
    if e.total <= 0:
        return e.status
    share = min(1.0, e.completed / e.total)
    filled = int(share * width)
    bar = "█" * filled + " " * (width - filled)
    return (f"{e.status:<22} {share * 100:3.0f}% ▕{bar}▏ {human_bytes(e.completed)}/{human_bytes(e.total)}  "
            f"{human_rate(e.bytes_per_second)}  {human_duration(e.eta_seconds)}")


async def cmd_pull(m: OllamaManager, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    tty = err.isatty()
    last = [""]

    def show(e: PullProgress) -> None:
        line = render_progress(e)
        if tty:
            err.write("\r" + line.ljust(len(last[0])))
        elif line.split(" ", 2)[:2] != last[0].split(" ", 2)[:2] or e.done:  # one line per status when piped
            err.write(line + "\n")
        err.flush()
        last[0] = line

    m.bus.subscribe(show, PullProgress)
    if not args.force:
        try:
            report = await m.fit(None, args.name)
            err.write(report.message + "\n")
        except Exception:  # noqa: BLE001 - advice only; pull() checks again and raises what matters
            pass
    handle = await m.pull(None, args.name, force=args.force)
    loop = asyncio.get_running_loop()
    try:
        loop.add_signal_handler(signal.SIGINT, handle.cancel)
    except (NotImplementedError, RuntimeError):  # Windows: Ctrl-C raises KeyboardInterrupt instead
        pass
    try:
        result = await handle.wait()
    finally:
        try:
            loop.remove_signal_handler(signal.SIGINT)
        except (NotImplementedError, RuntimeError):
            pass
        if tty:
            err.write("\n")
    if result.status == "cancelled":
        err.write(f"Pull of {result.model} stopped at {human_bytes(result.completed)}; run the same command "
                  "again to resume.\n")
        return 130
    out.write(f"Pulled {result.model} ({human_bytes(result.total)}).\n")
    return 0


async def cmd_rm(m: OllamaManager, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    await m.delete(None, args.name)
    out.write(f"Deleted {args.name}.\n")
    return 0


async def cmd_cp(m: OllamaManager, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    await m.copy(None, args.name, args.destination)
    out.write(f"Copied {args.name} to {args.destination}.\n")
    return 0


async def cmd_load(m: OllamaManager, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    loaded = await m.load(None, args.name, num_ctx=args.ctx, keep_alive=args.keep_alive, force=args.force,
                          reason="warm_up")
    if args.json:
        _json(out, {"model": args.name, "loaded": loaded})
    elif loaded is not None:
        out.write(f"Loaded {loaded.name}: {human_bytes(loaded.size_bytes)}, {loaded.processor}, "
                  f"context {loaded.context_length or '-'}.\n")
    else:
        out.write(f"Loaded {args.name}.\n")
    return 0


async def cmd_unload(m: OllamaManager, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    await m.unload(None, args.name, reason="user")
    out.write(f"Unloaded {args.name}.\n")
    return 0


async def cmd_fit(m: OllamaManager, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    report = await m.fit(None, args.name, num_ctx=args.ctx)
    if args.json:
        _json(out, {**_default(report), "estimate": {**_default(report.estimate),
                                                     "total_bytes": report.estimate.total_bytes}})
    else:
        out.write(render_fit(report))
    return 0 if report.fits else 1


def render_fit(r: FitReport) -> str:
    e = r.estimate
    lines = [r.message + ".", f"  estimate   {e.describe()}"]
    if not e.architecture_known:
        lines.append("             (rough: the model's architecture is unknown until it is pulled)")
    if r.budget_bytes:
        lines.append(f"  budget     {human_bytes(r.budget_bytes)} for loaded models; {human_bytes(r.loaded_bytes)} "
                     f"in use; {human_bytes(r.available_bytes)} of RAM available")
    if r.pressure not in ("normal", "unknown"):
        lines.append(f"  pressure   {r.pressure}")
    return "\n".join(lines) + "\n"


async def cmd_recommend(m: OllamaManager, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    mem = m.memory.system()
    recs = m.memory.recommend(mem)
    advice = await m.context_advice(getattr(m, "deployments", []))
    if args.json:
        _json(out, {"memory": mem, "budget_bytes": m.memory.budget_bytes(None, mem), "recommendations": recs,
                    "context": advice})
        return 0
    out.write(describe_memory(mem, m.memory.budget_bytes(None, mem)) + "\n")
    rows = [[r.role, r.model or "(cloud)", str(r.num_ctx) if r.model else "-",
             human_bytes(r.estimate_bytes) if r.model else "-", r.why] for r in recs]
    _table(out, ["ROLE", "MODEL", "CONTEXT", "NEEDS", "WHY"], rows)
    if advice:
        out.write("\nContext length of the configured local deployments:\n")
        for a in advice:
            out.write(f"  {a.deployment}: {a.message}\n")
    return 0


def describe_memory(mem: SystemMemory, budget: int | None) -> str:
    text = f"This machine: {human_bytes(mem.total_bytes)} RAM, {human_bytes(mem.available_bytes)} available"
    if mem.unified:
        text += f"; unified memory, GPU may use {human_bytes(mem.gpu_limit_bytes)} ({mem.gpu_limit_source})"
    if mem.pressure != "unknown":
        text += f"; memory pressure {mem.pressure}"
    if budget:
        text += f". Budget for local models: {human_bytes(budget)}."
    return text


async def cmd_status(m: OllamaManager, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    health = await m.check_host(m.hosts[0])
    mem = m.memory.system()
    budget = m.memory.budget_bytes(None, mem)
    if args.json:
        _json(out, {"health": health, "memory": mem, "budget_bytes": budget})
        return 0 if health.ok else 1
    out.write(f"{health.host} ({health.url}): {health.message}\n")
    if health.fix:
        out.write(f"  fix: {health.fix}\n")
    out.write(describe_memory(mem, budget) + "\n")
    return 0 if health.ok else 1
