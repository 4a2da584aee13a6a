"""Where an address points: the one loopback check and URL-host parser every package uses (the bind
address, Host headers, deployment locations for privacy and pricing, Ollama hosts)."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

_LOOPBACK_NAMES = frozenset({"localhost", "localhost."})
_UNSAFE_URL_CHARS = frozenset("\\ \t\r\n\x00@")


def ip_of(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address `host` names (IPv4-mapped IPv6 as IPv4), or None when it is a name."""
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def is_loopback_host(host: str) -> bool:
    """`localhost` (exactly, trailing dot allowed) or a loopback address (127.0.0.0/8, ::1, IPv4-mapped,
    brackets allowed). Not `localhost.evil.com`."""
    host = host.strip().lower()
    if host in _LOOPBACK_NAMES:
        return True
    ip = ip_of(host)
    return ip is not None and ip.is_loopback


def url_host(url: str) -> str | None:
    """The host an HTTP client will connect to, or None when the URL is not plainly `http(s)://host[:port]/…`
    (anything ambiguous between URL parsers counts as unknown)."""
    if not url or any(ch in _UNSAFE_URL_CHARS for ch in url.split("?", 1)[0].split("#", 1)[0]):
        return None
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError on a bad port
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    if port is not None and not 0 < port < 65536:
        return None
    return parts.hostname
