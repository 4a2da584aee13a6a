"""The usage record: one per request, whatever happened to it. Written by the server, stored by the ledger."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class UsageRecord:
    """What one request used and cost. Money is in US dollars; `cost` is None when the price is unknown."""

    request_id: str
    ts: float  # unix seconds when the request arrived
    agent: str  # agent name ("master" for the master key, "anonymous" when auth is off)
    tier: str  # the tier that answered, after aliasing, fallback and downgrade ("" when none was chosen)
    requested_model: str  # what the client asked for
    deployment: str  # deployment id that answered ("" when none did)
    provider: str  # "openai" | "anthropic" | "ollama" | "cache" | ""
    model: str  # upstream model name
    dialect_in: str
    status: str  # "ok" | "error" | "client_closed" | "refused"
    http_status: int = 200
    error: str = ""  # error code when status != ok (never message text that could hold content)
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    usage_estimated: bool = False  # token figures estimated (a stream cut short before the upstream's usage)
    cost: float | None = 0.0
    saved: float | None = 0.0  # what the tier's cloud model would have charged (local and cache hits)
    price_known: bool = True
    latency_ms: float = 0.0
    ttft_ms: float | None = None  # time to first byte sent to the client, streams only
    overhead_ms: float = 0.0
    stream: bool = False
    cache_hit: bool = False
    fallback_path: list[str] = field(default_factory=list)  # deployment ids tried before the one that answered
    privacy: str = "any"  # "any" | "local"
    privacy_rule: str = ""  # name of the rule that raised the level (never the matched text)
    location: str = ""  # "local" | "trusted" | "cloud" of the deployment that answered
