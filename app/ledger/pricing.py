"""What a request cost, from the upstream's own token counts.

Prices come from `genai-prices` (pydantic's maintained data set of per-model prices), with per-deployment
overrides from the config, spelled as LiteLLM spells them (`input_cost_per_token`, `output_cost_per_token`,
`cache_read_input_token_cost`, `cache_creation_input_token_cost`; US dollars per token).

Only a canonical `app.canonical.Usage` is ever priced. A streamed and a buffered copy of the same exchange
produce the same canonical Usage (the dialect decoders read the upstream's usage fields from the final
response body, or merge them from the stream's usage events), so they cost exactly the same: nothing here
knows or cares whether the request streamed.

How a price is computed (identical to `genai_prices.calc_price`, checked by the tests):
- `Usage.input_tokens` are base-rate prompt tokens only; genai-prices counts *all* prompt tokens as input and
  treats cache reads and cache writes as parts of them. Cache-read and cache-write tokens are charged at
  their own rates; when a model has no cache rate, those tokens are charged at the input rate (as
  genai-prices and LiteLLM both do).
- Tiered models ("cliff" pricing, e.g. prompts over 200k tokens) use the tier that the *total* prompt size
  falls in, for every kind of token.
- Reasoning tokens are part of `output_tokens` and are charged as output.

The hot path: the model lookup in genai-prices (~70 µs) happens once per (deployment, model) and its rates
are kept; pricing a request afterwards is a few Decimal multiplications (a few µs). Models whose prices
change with the date or the time of day (genai-prices' conditional prices) are re-resolved once a minute.

Special cases:
- Local deployments (provider ollama, `location: local`, or a loopback `api_base` with no location set)
  cost 0 and are known.
- No tokens: cost 0 and known, whatever the model.
- A model genai-prices does not know and the config does not price: `cost=None, known=False`; the record
  is flagged and reports count it, it is never silently 0.
- `saved`: what the same tokens would have cost on the tier's cloud model. The "tier's cloud model" is the
  first deployment of the same tier (in file order) that is not local and has a known price; if there is
  none, the first such deployment of the tier's fallback tiers (router_settings.fallbacks, in order).
  Deployments whose price is unknown are skipped. With no priced cloud equivalent, saved is 0.0 (None only
  when the equivalent's rates cannot price these tokens, e.g. an override without an output price).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from genai_prices import data_snapshot
from genai_prices.types import ModelPrice, TieredPrices

from app.canonical import Usage
from app.netloc import is_loopback_host, url_host
from app.config.schema import Config, Deployment
from app.usage import UsageRecord

log = logging.getLogger(__name__)

_MILLION = Decimal(1_000_000)
_THOUSAND = Decimal(1_000)
_ZERO = Decimal(0)
_CONDITIONAL_TTL = 60.0  # seconds a resolved conditional price is reused


@dataclass(frozen=True, slots=True)
class Price:
    """The cost of one request. `cost` is None exactly when `known` is False."""

    cost: float | None
    known: bool
    exact: Decimal | None = None  # the same figure as a Decimal, for exact sums and tests
    source: str = ""  # "local" | "override" | "genai-prices" | "none" (no tokens) | "unknown"


ZERO_PRICE = Price(0.0, True, _ZERO, "none")
LOCAL_PRICE = Price(0.0, True, _ZERO, "local")
UNKNOWN_PRICE = Price(None, False, None, "unknown")


@dataclass(frozen=True, slots=True)
class _Rate:
    """A price per token (already divided by the data set's unit), optionally tiered by prompt size."""

    base: Decimal
    tiers: tuple[tuple[int, Decimal], ...] = ()  # (start, per-token price), ascending

    def at(self, prompt_tokens: int) -> Decimal:
        for start, price in reversed(self.tiers):
            if prompt_tokens > start:
                return price
        return self.base


@dataclass(frozen=True, slots=True)
class _Rates:
    input: _Rate | None
    output: _Rate | None
    cache_read: _Rate | None
    cache_write: _Rate | None
    per_request: Decimal = _ZERO
    source: str = "genai-prices"

    def cost(self, usage: Usage) -> Decimal | None:
        prompt = usage.input_tokens + usage.cache_read_tokens + usage.cache_write_tokens
        # Cache tokens without their own rate are charged as plain input.
        base_in = usage.input_tokens
        total = _ZERO
        if usage.cache_read_tokens:
            if self.cache_read is not None:
                total += self.cache_read.at(prompt) * usage.cache_read_tokens
            else:
                base_in += usage.cache_read_tokens
        if usage.cache_write_tokens:
            if self.cache_write is not None:
                total += self.cache_write.at(prompt) * usage.cache_write_tokens
            else:
                base_in += usage.cache_write_tokens
        if base_in:
            if self.input is None:
                return None
            total += self.input.at(prompt) * base_in
        if usage.output_tokens:
            if self.output is None:
                return None
            total += self.output.at(prompt) * usage.output_tokens
        return total + self.per_request


def _rate(value: Any, per: Decimal) -> _Rate | None:
    if value is None:
        return None
    if isinstance(value, TieredPrices):
        return _Rate(value.base / per, tuple((t.start, t.price / per) for t in value.tiers))
    return _Rate(Decimal(value) / per)


def _rates_from_model_price(mp: ModelPrice) -> _Rates:
    return _Rates(
        input=_rate(mp.input_mtok, _MILLION),
        output=_rate(mp.output_mtok, _MILLION),
        cache_read=_rate(mp.cache_read_mtok, _MILLION),
        cache_write=_rate(mp.cache_write_mtok, _MILLION),
        per_request=(mp.requests_kcount / _THOUSAND) if isinstance(mp.requests_kcount, Decimal) else _ZERO,
    )


def _override(value: float | None) -> _Rate | None:
    if value is None:
        return None
    return _Rate(Decimal(repr(float(value))))


def is_local(dep: Deployment) -> bool:
    """True for deployments that run on this machine (they cost nothing)."""
    key = (dep.provider, dep.location, dep.api_base)
    local = _LOCAL.get(key)
    if local is None:
        local = _LOCAL[key] = _is_local(dep)
    return local


_LOCAL: dict[tuple[str, str | None, str], bool] = {}


def _is_local(dep: Deployment) -> bool:
    if dep.provider == "ollama" or dep.location == "local":
        return True
    if dep.location is not None:
        return False
    return is_loopback_host(url_host(dep.api_base) or "")


class Pricing:
    """Prices usage per deployment. Build one per config (`Pricing(config)`); cheap to rebuild on reload."""

    def __init__(self, config: Config | None = None) -> None:
        self._config = config
        # (deployment id, model, api_base, provider) -> (rates or None, valid from, valid until, snapshot id)
        self._cache: dict[tuple[str, str, str, str], tuple[_Rates | None, float, float, int]] = {}
        self._cloud_for_tier: dict[str, Deployment | None] = {}

    # ------------------------------------------------------------------------------------- prices
    def price(self, deployment: Deployment, usage: Usage, *, at: float | None = None) -> Price:
        """The cost of `usage` on `deployment` (at unix time `at`, default now)."""
        if is_local(deployment):
            return LOCAL_PRICE
        if not (usage.input_tokens or usage.output_tokens or usage.cache_read_tokens or usage.cache_write_tokens):
            return ZERO_PRICE
        rates = self._rates(deployment, at)
        if rates is None:
            return UNKNOWN_PRICE
        exact = rates.cost(usage)
        if exact is None:
            return UNKNOWN_PRICE
        return Price(float(exact), True, exact, rates.source)

    def _rates(self, dep: Deployment, at: float | None) -> _Rates | None:
        snapshot = data_snapshot.get_snapshot()
        key = (dep.id, dep.model, dep.api_base, dep.provider)
        hit = self._cache.get(key)
        if hit is not None and hit[3] == id(snapshot):
            rates, valid_from, valid_until, _ = hit
            if valid_until == math.inf:
                return rates
            when = at if at is not None else time.time()
            if valid_from <= when < valid_until:
                return rates
        when = at if at is not None else time.time()
        rates, valid_until = self._resolve(dep, snapshot, when)
        valid_from = valid_until - _CONDITIONAL_TTL if valid_until != math.inf else -math.inf
        self._cache[key] = (rates, valid_from, valid_until, id(snapshot))
        return rates

    def _resolve(self, dep: Deployment, snapshot: Any, when: float) -> tuple[_Rates | None, float]:
        lib: _Rates | None = None
        valid_until = math.inf
        model = _find_model(snapshot, dep)
        if model is not None:
            ts = datetime.fromtimestamp(when, UTC)
            try:
                lib = _rates_from_model_price(model.get_prices(ts))
            except Exception:  # a data-set entry we cannot read: treat as unknown, never as 0
                log.warning("genai-prices entry for %s is unreadable", dep.label)
                lib = None
            if not isinstance(model.prices, ModelPrice):  # conditional prices: re-resolve now and then
                valid_until = (math.floor(when / _CONDITIONAL_TTL) + 1) * _CONDITIONAL_TTL
        overrides = (dep.input_cost_per_token, dep.output_cost_per_token,
                     dep.cache_read_input_token_cost, dep.cache_creation_input_token_cost)
        if all(v is None for v in overrides):
            return lib, valid_until
        base = lib or _Rates(None, None, None, None)
        rates = _Rates(
            input=_override(dep.input_cost_per_token) or base.input,
            output=_override(dep.output_cost_per_token) or base.output,
            cache_read=_override(dep.cache_read_input_token_cost) or base.cache_read,
            cache_write=_override(dep.cache_creation_input_token_cost) or base.cache_write,
            per_request=base.per_request,
            source="override",
        )
        return rates, valid_until

    # ------------------------------------------------------------------------------------- saved
    def cloud_equivalent(self, tier: str) -> Deployment | None:
        """The deployment whose price a local or cached answer on `tier` is compared with (see module doc)."""
        if tier in self._cloud_for_tier:
            return self._cloud_for_tier[tier]
        found: Deployment | None = None
        if self._config is not None:
            tiers = self._config.tiers
            for name in [tier, *self._config.router.fallbacks.get(tier, [])]:
                for dep in tiers.get(name, []):
                    if not is_local(dep) and self._rates(dep, None) is not None:
                        found = dep
                        break
                if found is not None:
                    break
        self._cloud_for_tier[tier] = found
        return found

    def saved(self, deployment: Deployment, usage: Usage, *, at: float | None = None) -> float | None:
        """What answering locally saved: the cloud equivalent's price of `usage` (0.0 for a cloud deployment)."""
        if not is_local(deployment):
            return 0.0
        cloud = self.cloud_equivalent(deployment.tier)
        if cloud is None:
            return 0.0
        return self.price(cloud, usage, at=at).cost

    # ------------------------------------------------------------------------------------ records
    def fill(self, rec: UsageRecord, deployment: Deployment | None, usage: Usage) -> None:
        """Set the token counts, `cost`, `saved` and `price_known` of `rec` from `usage`.

        `deployment` is the one that answered, or for a cache hit (`rec.cache_hit`) the one that produced
        the cached answer; None when no deployment was reached (refused, failed before any upstream).
        A cache hit costs 0 and saves what the original answer cost (or saved, if it was local).
        """
        rec.input_tokens = usage.input_tokens
        rec.output_tokens = usage.output_tokens
        rec.cache_read_tokens = usage.cache_read_tokens
        rec.cache_write_tokens = usage.cache_write_tokens
        rec.reasoning_tokens = usage.reasoning_tokens
        if deployment is None:
            rec.cost, rec.saved, rec.price_known = 0.0, 0.0, True
            return
        if rec.cache_hit:
            rec.cost, rec.price_known = 0.0, True
            if is_local(deployment):
                rec.saved = self.saved(deployment, usage, at=rec.ts)
            else:
                rec.saved = self.price(deployment, usage, at=rec.ts).cost
            return
        price = self.price(deployment, usage, at=rec.ts)
        rec.cost, rec.price_known = price.cost, price.known
        rec.saved = self.saved(deployment, usage, at=rec.ts) if price.source == "local" else 0.0


def _find_model(snapshot: Any, dep: Deployment) -> Any | None:
    """The genai-prices ModelInfo for a deployment: by its api_base first, then by its provider id."""
    model_ref = dep.model
    attempts: list[dict[str, str]] = []
    if dep.api_base:
        attempts.append({"provider_api_url": dep.api_base})
    attempts.append({"provider_id": dep.provider})
    for kw in attempts:
        try:
            _, model = snapshot.find_provider_model(model_ref, None, kw.get("provider_id"), kw.get("provider_api_url"))
            return model
        except LookupError:
            continue
    return None
