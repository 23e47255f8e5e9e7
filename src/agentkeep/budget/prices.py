"""What a model request costs: the operator's overrides, then genai-prices; the local model is free.

Amounts are integer nano-dollars (`NANO` per USD) so every sum and cap comparison is exact. A
`Price` answers two questions: the worst case of a request before it is sent (`worst_nano`, for the
reservation) and the real cost of its response (`cost_nano`). A model without a price is `None`,
never zero: an unknown price must not pass for free.

Overrides come from `AGENTKEEP_PRICES_FILE`, JSON or TOML, USD per million tokens:

    {"gpt-4o-mini": {"input": 0.15, "output": 0.6}, "openai:my-finetune": {"input": 3, "output": 12}}

A key is the model's name as its provider knows it, or `provider:name`, which wins over a bare name.
"""

from __future__ import annotations

import json
import math
import tomllib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic_ai.models import Model
from pydantic_ai.usage import RequestUsage

from agentkeep.errors import ConfigError

__all__ = ["NANO", "Price", "Pricer", "load_overrides", "to_nano", "to_usd"]

NANO = 10**9
_PER_MILLION = Decimal(1_000_000)
# `agentkeep.models.local.LocalModel.system`; spelled out because models sit above budget in the layers.
LOCAL_SYSTEM = "local"


def to_nano(usd: Decimal | float | str) -> int:
    """USD as nano-dollars, rounded up: a cost or a reservation is never under-counted."""
    return math.ceil(Decimal(str(usd)) * NANO)


def to_usd(nano: int) -> float:
    return nano / NANO


class Price:
    """The price of one model; subclasses say where it comes from."""

    source: str = "unknown"

    def worst_nano(self, input_tokens: int, output_tokens: int) -> int:
        """The most a request of at most these token counts can cost."""
        raise NotImplementedError

    def cost_nano(self, usage: RequestUsage, details: dict[str, Any] | None = None) -> int:
        """What a response with this usage costs (`details`: the provider's, e.g. its service tier)."""
        raise NotImplementedError


@dataclass(frozen=True)
class FixedPrice(Price):
    """A flat price per million input and output tokens (an override, or zero for the local model)."""

    input_per_m: Decimal
    output_per_m: Decimal
    source: str = "override"

    def worst_nano(self, input_tokens: int, output_tokens: int) -> int:
        return to_nano((input_tokens * self.input_per_m + output_tokens * self.output_per_m) / _PER_MILLION)

    def cost_nano(self, usage: RequestUsage, details: dict[str, Any] | None = None) -> int:
        return self.worst_nano(usage.input_tokens, usage.output_tokens)


@dataclass(frozen=True)
class CatalogPrice(Price):
    """A model genai-prices knows: cache, tiered and service-tier prices included."""

    model_info: Any  # genai_prices.types.ModelInfo
    source: str = "genai-prices"
    _rates: dict[int, tuple[Decimal, Decimal]] = field(default_factory=dict, compare=False, repr=False)

    def worst_nano(self, input_tokens: int, output_tokens: int) -> int:
        input_rate, output_rate = self._worst_rates(_bucket(input_tokens))
        return to_nano(input_tokens * input_rate + output_tokens * output_rate)

    def cost_nano(self, usage: RequestUsage, details: dict[str, Any] | None = None) -> int:
        if usage.cost is not None:  # Pydantic AI priced the response with genai-prices already
            return to_nano(usage.cost)
        prices = self.model_info.get_prices(datetime.now(UTC), details or None)
        return to_nano(prices.calc_price(usage)["total_price"])

    def _worst_rates(self, size: int) -> tuple[Decimal, Decimal]:
        """USD per input and per output token, the dearest of every service tier and cache mode, for
        any request of at most `size` input tokens. Tiered prices only rise with the input size, so
        the rates measured at the bucket's top bound every request in it; computing them costs a
        few milliseconds, hence the cache."""
        if size not in self._rates:
            from genai_prices import Usage

            now = datetime.now(UTC)
            contexts: list[dict[str, Any] | None] = [None, *(v.when for v in self.model_info.price_variants or ())]
            input_rate = output_rate = Decimal(0)
            for context in contexts:
                prices = self.model_info.get_prices(now, context)
                for cache_write in (0, size):  # every input token might be a cache write, dearer on some providers
                    base = prices.calc_price(Usage(input_tokens=size, cache_write_tokens=cache_write))["total_price"]
                    full = prices.calc_price(
                        Usage(input_tokens=size, cache_write_tokens=cache_write, output_tokens=_PROBE)
                    )["total_price"]
                    input_rate = max(input_rate, base / size)
                    output_rate = max(output_rate, (full - base) / _PROBE)
            self._rates[size] = (input_rate, output_rate)
        return self._rates[size]


_PROBE = 1_000_000


def _bucket(tokens: int) -> int:
    """The power of two at or above `tokens` (at least 1024): few buckets, each priced once."""
    return 1 << max(10, (max(tokens, 1) - 1).bit_length())


FREE = FixedPrice(Decimal(0), Decimal(0), source="local")


def load_overrides(path: Path | None) -> dict[str, FixedPrice]:
    """Read `AGENTKEEP_PRICES_FILE`; a mistake in it is a `ConfigError` naming the entry."""
    if path is None:
        return {}
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read AGENTKEEP_PRICES_FILE {path}: {exc.strerror}") from None
    try:
        data = tomllib.loads(text) if path.suffix.lower() == ".toml" else json.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"AGENTKEEP_PRICES_FILE {path} is not valid {path.suffix or 'JSON'}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"AGENTKEEP_PRICES_FILE {path} must map model names to {{input, output}}")
    return {str(name).lower(): _entry(path, str(name), value) for name, value in data.items()}


def _entry(path: Path, name: str, value: object) -> FixedPrice:
    rates: list[Decimal] = []
    for key in ("input", "output"):
        raw = value.get(key) if isinstance(value, dict) else None
        if isinstance(raw, bool) or not isinstance(raw, int | float) or raw < 0:
            raise ConfigError(
                f"AGENTKEEP_PRICES_FILE {path}: {name!r} needs '{key}', USD per million tokens, a number >= 0"
            )
        rates.append(Decimal(str(raw)))
    return FixedPrice(rates[0], rates[1])


@dataclass
class Pricer:
    """Finds the `Price` of a model: override by `provider:name`, then by name, then genai-prices."""

    overrides: dict[str, FixedPrice] = field(default_factory=dict)
    _cache: dict[tuple[str, str, str | None], Price | None] = field(default_factory=dict)

    @classmethod
    def from_file(cls, path: Path | None) -> Pricer:
        return cls(load_overrides(path))

    def price(self, model: Model | str | None) -> Price | None:
        """The price of `model` (an instance or a `provider:name` string); None when unknown.

        A model that delegates to others (a fallback chain) is priced at its dearest member, and is
        unknown when any member is.
        """
        if model is None:
            return None
        if isinstance(model, str):
            system, _, name = model.rpartition(":")
            return self._lookup(system, name, None)
        if isinstance(wrapped := getattr(model, "wrapped", None), Model):
            return self.price(wrapped)
        members = _members(model)
        if members is not None:
            prices = [self.price(m) for m in members]
            if not prices or any(p is None for p in prices):
                return None
            return _Dearest(tuple(p for p in prices if p is not None))
        return self._lookup(model.system, model.model_name, _base_url(model))

    def price_response(self, model: Model, response_model_name: str | None) -> Price | None:
        """The price of the member of `model` that answered (by the response's model name)."""
        if isinstance(wrapped := getattr(model, "wrapped", None), Model):
            return self.price_response(wrapped, response_model_name)
        members = _members(model)
        if members and response_model_name:
            for member in members:
                if member.model_name == response_model_name:
                    return self.price(member)
        return self.price(model)

    def _lookup(self, system: str, name: str, base_url: str | None) -> Price | None:
        key = (system, name, base_url)
        if key not in self._cache:
            self._cache[key] = self._find(system, name, base_url)
        return self._cache[key]

    def _find(self, system: str, name: str, base_url: str | None) -> Price | None:
        lowered = name.lower()
        for key, price in self.overrides.items():
            provider, sep, model_name = key.rpartition(":")
            if sep and model_name == lowered and _same_provider(provider, system):
                return price
        if lowered in self.overrides:
            return self.overrides[lowered]
        if system == LOCAL_SYSTEM:
            return FREE
        return _catalog(system, name, base_url)


@dataclass(frozen=True)
class _Dearest(Price):
    """The dearest of several prices: for a request that any of several models may answer."""

    prices: tuple[Price, ...]
    source: str = "fallback"

    def worst_nano(self, input_tokens: int, output_tokens: int) -> int:
        return max(p.worst_nano(input_tokens, output_tokens) for p in self.prices)

    def cost_nano(self, usage: RequestUsage, details: dict[str, Any] | None = None) -> int:
        return max(p.cost_nano(usage, details) for p in self.prices)


def _same_provider(key_provider: str, system: str) -> bool:
    """`openai-chat:gpt-4o` in a prices file names the model whose `system` is `openai`."""
    return key_provider in {system, system.split("-")[0]} or key_provider.split("-")[0] == system


def _members(model: Model) -> list[Model] | None:
    """The models a fallback chain may hand a request to; None for a plain model."""
    members = getattr(model, "models", None)
    if isinstance(members, list | tuple) and members and all(isinstance(m, Model) for m in members):
        return list(members)
    return None


def _base_url(model: Model) -> str | None:
    try:
        url = model.base_url
    except Exception:  # some providers resolve their URL lazily and raise until a client exists
        return None
    return url if isinstance(url, str) else None


def _catalog(system: str, name: str, base_url: str | None) -> Price | None:
    from genai_prices.data_snapshot import get_snapshot

    # The API URL identifies a provider better than its name (resellers share names); then the name.
    for provider_id, url in ((None, base_url), (system or None, None)):
        if provider_id is None and url is None:
            continue
        try:
            _, info = get_snapshot().find_provider_model(name, None, provider_id, url)
        except LookupError:
            continue
        return CatalogPrice(info)
    return None
