"""Where a deployment runs: `local` (this machine), `trusted` (a host the user lists) or `cloud`.

Inference, when the deployment sets no explicit `location`:
  - an Ollama model whose name or tag ends in `cloud` (`gpt-oss:120b-cloud`, `glm-4.6:cloud`) is `cloud`:
    Ollama forwards those to its own servers, wherever the Ollama server itself runs;
  - an `api_base` on a loopback address (127.0.0.0/8, ::1, IPv4-mapped loopback, `localhost`) is `local`,
    whatever the provider (Ollama, llama.cpp, LM Studio, vLLM on this machine);
  - an `api_base` whose host is in `trusted_hosts` (names, addresses or networks such as
    192.168.1.0/24) is `trusted`;
  - everything else is `cloud`, including anything we cannot parse with certainty (fail closed): user info
    in the URL, backslashes, whitespace, non-http schemes, `localhost.evil.com`, `127.0.0.1.nip.io`,
    `0.0.0.0`, shorthand addresses such as `127.1`.
A loopback `api_base` that is itself a proxy to a cloud service must say `location: cloud` explicitly.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Iterable, Literal

from app.netloc import ip_of, is_loopback_host, url_host  # noqa: F401 - re-exported
from app.config.schema import Deployment

Location = Literal["local", "trusted", "cloud"]
LOCATIONS = ("local", "trusted", "cloud")

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class TrustedHosts:
    """Host names (lower case, exact) and networks the user trusts with sensitive traffic."""

    names: frozenset[str] = frozenset()
    networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def parse(cls, entries: Iterable[str]) -> "TrustedHosts":
        """Raises ValueError naming the bad entry."""
        names: set[str] = set()
        nets: list[IPNetwork] = []
        for raw in entries:
            entry = raw.strip().lower().rstrip(".")
            if not entry:
                raise ValueError("empty host")
            try:
                nets.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
                continue
            except ValueError:
                pass
            if not _valid_hostname(entry):
                raise ValueError(f"{raw!r} is not a host name, an IP address or a network (no scheme or port)")
            names.add(entry)
        return cls(frozenset(names), tuple(nets))

    def __contains__(self, host: object) -> bool:
        if not isinstance(host, str):
            return False
        host = host.lower().rstrip(".")
        if host in self.names:
            return True
        ip = ip_of(host)
        return ip is not None and any(ip.version == n.version and ip in n for n in self.networks)


def _valid_hostname(name: str) -> bool:
    if len(name) > 253:
        return False
    labels = name.split(".")
    return all(0 < len(lab) <= 63 and lab[0] != "-" and lab[-1] != "-"
               and all(ch.isascii() and (ch.isalnum() or ch == "-") for ch in lab) for lab in labels)


def is_ollama_cloud_model(model: str) -> bool:
    """Ollama's cloud models: the tag (or, failing closed, the name) ends in `cloud`."""
    return model.strip().lower().endswith("cloud")


def location_of(deployment: Deployment, trusted_hosts: TrustedHosts | Iterable[str] = ()) -> Location:
    """The deployment's location: its explicit `location`, else inferred (see the module doc)."""
    explicit = deployment.location
    if explicit is not None:
        if explicit not in LOCATIONS:
            return "cloud"  # the config validates this; a bad value here must still fail closed
        return explicit
    if is_ollama_cloud_model(deployment.model):
        # Ollama runs `…cloud` models on ollama.com whichever API reaches it (/api/chat, or /v1 as
        # `openai/<model>` at localhost:11434/v1). Any provider: a local name ending in "cloud" fails closed.
        return "cloud"
    host = url_host(deployment.api_base)
    if host is None:
        return "cloud"
    if is_loopback_host(host):
        return "local"
    trusted = trusted_hosts if isinstance(trusted_hosts, TrustedHosts) else TrustedHosts.parse(trusted_hosts)
    if host in trusted:
        return "trusted"
    return "cloud"
