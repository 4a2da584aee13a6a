"""Ollama hosts and the `tiergate_settings.ollama` config section.

    tiergate_settings:
      ollama:
        hosts:                      # default: one host, this machine at http://localhost:11434
          - name: this-mac
            url: http://localhost:11434
          - name: studio            # another machine on the user's network
            url: http://192.168.1.20:11434
            trusted: true           # required for any host that is not this machine
            memory_gb: 128          # optional: its RAM, so the planner can advise for it too
        memory_budget_fraction: 0.75  # of this machine's RAM for loaded local models (default 0.75)
        # memory_budget_gb: 20        # or an absolute budget (GiB); wins over the fraction
        keep_alive:                 # per tier; Ollama duration ("5m", "1h"), seconds, or -1 (forever)
          orchestrator: 30m
          helper: 5m
          default: 10m
        guard: true                 # unload least recently used models to stay in budget (default on)
        agent_context: 32768        # num_ctx the planner aims for on agent tiers (default 32768)
        model_sizes_gb:             # override the planner's estimate of a model's resident size (GiB)
          gemma3:27b: 19.5

Requests to a host that is not this machine carry prompts over the network; such a host must be marked
`trusted: true` explicitly (the privacy layer treats it as location "trusted").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

from app.netloc import is_loopback_host
from app.config.schema import DEFAULT_OLLAMA_BASE, Section
from app.errors import BadRequest
from app.ollama.names import validate_model_name
from app.ollama.units import GiB, valid_keep_alive

DEFAULT_BUDGET_FRACTION = 0.75  # Apple's own default GPU working-set share on larger Macs is about 3/4
DEFAULT_AGENT_CONTEXT = 32768
_ANY_ADDRESS = {"0.0.0.0", "::"}  # OLLAMA_HOST=0.0.0.0 binds everything; connecting to it reaches this machine


@dataclass(frozen=True, slots=True)
class OllamaHost:
    name: str  # short label shown to people ("local", "studio")
    url: str  # base URL, no trailing slash
    trusted: bool = False  # a host on the user's network that may receive prompts
    memory_bytes: int | None = None  # configured RAM of a remote host (None: unknown)

    @property
    def local(self) -> bool:
        """This machine (loopback): its memory is the one the planner reads."""
        return is_loopback(self.url)

    @property
    def location(self) -> str:
        return "local" if self.local else "trusted"


@dataclass(slots=True)
class OllamaSettings:
    hosts: list[OllamaHost] = field(default_factory=lambda: [OllamaHost("local", DEFAULT_OLLAMA_BASE)])
    memory_budget_fraction: float = DEFAULT_BUDGET_FRACTION
    memory_budget_bytes: int | None = None  # absolute budget; wins over the fraction
    keep_alive: dict[str, str | int | float] = field(default_factory=dict)  # tier (or "default") -> value
    guard: bool = True
    agent_context: int = DEFAULT_AGENT_CONTEXT
    model_sizes: dict[str, int] = field(default_factory=dict)  # model -> resident bytes the user set

    def keep_alive_for(self, tier: str | None) -> str | int | float | None:
        """The tier's keep_alive, else the `default` entry, else None (Ollama's own default, 5m)."""
        if tier is not None and tier in self.keep_alive:
            return self.keep_alive[tier]
        return self.keep_alive.get("default")

    def host(self, name_or_url: str) -> OllamaHost | None:
        key = name_or_url.rstrip("/")
        for h in self.hosts:
            if h.name == key or h.url == key:
                return h
        return None


def is_loopback(url: str) -> bool:
    host = urlsplit(url if "://" in url else f"http://{url}").hostname or ""
    return host in _ANY_ADDRESS or is_loopback_host(host)


def normalize_url(url: str) -> str:
    """`localhost:11434` -> `http://localhost:11434`; a bare host gets Ollama's port 11434, as with OLLAMA_HOST.
    Raises ValueError for a malformed port."""
    url = url.strip().rstrip("/")
    if "://" in url:
        urlsplit(url).port  # noqa: B018 - validates the port
        return url
    parts = urlsplit(f"http://{url}")
    netloc = parts.netloc if parts.port else f"{parts.netloc}:11434"
    return f"http://{netloc}{parts.path}".rstrip("/")


def parse_settings(section: Section) -> OllamaSettings:
    """Validate `tiergate_settings.ollama`; every error names the file and line."""
    data = section.data
    known = {"hosts", "memory_budget_fraction", "memory_budget_gb", "keep_alive", "guard", "agent_context",
             "model_sizes_gb"}
    for key in data:
        if key not in known:
            raise section.error(f"unknown key {key!r} (known: {', '.join(sorted(known))})", key)
    out = OllamaSettings()
    if "hosts" in data:
        out.hosts = _parse_hosts(section)
    if "memory_budget_fraction" in data:
        v = data["memory_budget_fraction"]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.05 <= v <= 1.0:
            raise section.error("must be a number between 0.05 and 1.0 (a share of this machine's RAM)",
                                "memory_budget_fraction")
        out.memory_budget_fraction = float(v)
    if data.get("memory_budget_gb") is not None:
        v = data["memory_budget_gb"]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0:
            raise section.error("must be a positive number of GiB", "memory_budget_gb")
        out.memory_budget_bytes = int(v * GiB)
    if "keep_alive" in data:
        ka = data["keep_alive"]
        if isinstance(ka, (str, int, float)) and not isinstance(ka, bool):
            ka = {"default": ka}
        if not isinstance(ka, dict):
            raise section.error("expected a mapping of tier name to duration, e.g. {helper: 5m}", "keep_alive")
        for tier, value in ka.items():
            if not valid_keep_alive(value):
                raise section.error(f"{value!r} is not a duration Ollama understands (e.g. 5m, 1h, 300, -1)",
                                    "keep_alive", tier)
            out.keep_alive[str(tier)] = value.strip() if isinstance(value, str) else value
    if "guard" in data:
        if not isinstance(data["guard"], bool):
            raise section.error("must be true or false", "guard")
        out.guard = data["guard"]
    if "agent_context" in data:
        v = data["agent_context"]
        if isinstance(v, bool) or not isinstance(v, int) or not 2048 <= v <= 1_048_576:
            raise section.error("must be a whole number of tokens between 2048 and 1048576", "agent_context")
        out.agent_context = v
    if "model_sizes_gb" in data:
        sizes = data["model_sizes_gb"]
        if not isinstance(sizes, dict):
            raise section.error("expected a mapping of model name to GiB, e.g. {gemma3:27b: 19.5}", "model_sizes_gb")
        for name, gb in sizes.items():
            try:
                key = validate_model_name(str(name))
            except BadRequest as e:
                raise section.error(e.message, "model_sizes_gb", name) from None
            if isinstance(gb, bool) or not isinstance(gb, (int, float)) or gb <= 0:
                raise section.error("must be a positive number of GiB", "model_sizes_gb", name)
            out.model_sizes[key] = int(gb * GiB)
    return out


def _parse_hosts(section: Section) -> list[OllamaHost]:
    raw = section.data["hosts"]
    if not isinstance(raw, list) or not raw:
        raise section.error("expected a list of hosts with name and url", "hosts")
    hosts: list[OllamaHost] = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            raise section.error("each host is a mapping with name and url", "hosts", i)
        for key in item:
            if key not in ("name", "url", "trusted", "memory_gb"):
                raise section.error(f"unknown key {key!r} (known: memory_gb, name, trusted, url)", "hosts", i, key)
        name, url = item.get("name"), item.get("url")
        if not isinstance(url, str) or not url.strip():
            raise section.error("url is required, e.g. http://localhost:11434", "hosts", i)
        if "@" in url:
            raise section.error("put no credentials in an Ollama URL", "hosts", i, "url")
        scheme = url.split("://", 1)[0] if "://" in url else "http"
        if scheme not in ("http", "https"):
            raise section.error("url must be http:// or https://", "hosts", i, "url")
        try:
            url = normalize_url(url)
        except ValueError:
            raise section.error("url has an invalid port", "hosts", i, "url") from None
        if name is None:
            name = "local" if is_loopback(url) else (urlsplit(url).hostname or url)
        if not isinstance(name, str) or not name.strip():
            raise section.error("name must be text", "hosts", i, "name")
        trusted = item.get("trusted", False)
        if not isinstance(trusted, bool):
            raise section.error("must be true or false", "hosts", i, "trusted")
        if not is_loopback(url) and not trusted:
            raise section.error(f"{url} is another machine: prompts sent there leave this computer. "
                                "Add `trusted: true` if it is yours", "hosts", i)
        mem = item.get("memory_gb")
        if mem is not None and (isinstance(mem, bool) or not isinstance(mem, (int, float)) or mem <= 0):
            raise section.error("must be a positive number of GiB", "hosts", i, "memory_gb")
        if any(h.name == name for h in hosts):
            raise section.error(f"duplicate host name {name!r}", "hosts", i, "name")
        if any(h.url == url for h in hosts):
            raise section.error(f"duplicate host url {url}", "hosts", i, "url")
        hosts.append(OllamaHost(name.strip(), url, trusted or is_loopback(url),
                                int(mem * GiB) if mem is not None else None))
    return hosts
