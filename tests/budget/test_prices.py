"""Prices: overrides (JSON and TOML) win over genai-prices, `provider:name` over a bare name, the
local model is free, and an unknown model has no price rather than a zero one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic_ai.models.fallback import FallbackModel
from pydantic_ai.models.function import FunctionModel
from pydantic_ai.models.test import TestModel
from pydantic_ai.usage import RequestUsage

from agentkeep.budget.prices import NANO, Pricer, load_overrides, to_nano
from agentkeep.budget.tokens import MEDIA_TOKENS, InputBound
from agentkeep.errors import ConfigError


def _model(name: str) -> FunctionModel:
    return FunctionModel(lambda messages, info: None, model_name=name)  # type: ignore[arg-type,return-value]


def test_an_override_wins_over_genai_prices(tmp_path: Path) -> None:
    """gpt-4o-mini is in genai-prices, but the operator's price is the one used."""
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({"gpt-4o-mini": {"input": 1, "output": 2}}))
    price = Pricer.from_file(path).price("openai:gpt-4o-mini")
    assert price is not None and price.source == "override"
    assert price.worst_nano(1_000_000, 1_000_000) == 3 * NANO


def test_a_provider_qualified_key_wins_over_a_bare_name(tmp_path: Path) -> None:
    """`openai-chat:x` names the OpenAI model x specifically; the bare `x` price loses to it."""
    path = tmp_path / "prices.toml"
    path.write_text('[x]\ninput = 1\noutput = 1\n\n["openai-chat:x"]\ninput = 5\noutput = 5\n')
    pricer = Pricer.from_file(path)
    openai_price, other_price = pricer.price("openai:x"), pricer.price("anthropic:x")
    assert openai_price is not None and other_price is not None
    assert openai_price.worst_nano(1_000_000, 0) == 5 * NANO
    assert other_price.worst_nano(1_000_000, 0) == 1 * NANO


def test_genai_prices_knows_common_models_and_nothing_is_free_by_accident() -> None:
    """A known model gets a catalog price; the built-in local model costs 0; an unknown model is None."""
    pricer = Pricer()
    known = pricer.price("openai:gpt-4o-mini")
    assert known is not None and known.source == "genai-prices"
    assert known.cost_nano(RequestUsage(input_tokens=1_000_000)) == to_nano("0.15")
    local = pricer.price("local:smollm2")
    assert local is not None and local.worst_nano(10**6, 10**6) == 0
    assert pricer.price("openai:no-such-model-anywhere") is None
    assert pricer.price(TestModel()) is None


def test_the_worst_case_of_a_catalog_model_bounds_every_service_tier() -> None:
    """The reservation covers the dearest tier: never less than any real cost of the same tokens."""
    price = Pricer().price("openai:gpt-4o-mini")
    assert price is not None
    worst = price.worst_nano(2000, 500)
    for tier in (None, {"service_tier": "priority"}, {"service_tier": "flex"}):
        assert price.cost_nano(RequestUsage(input_tokens=2000, output_tokens=500), tier) <= worst


def test_a_fallback_chain_costs_its_dearest_member_and_is_unknown_if_any_member_is(tmp_path: Path) -> None:
    """Either member may answer, so the worst case is the dearer one; settling uses the one that did."""
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({"cheap": {"input": 1, "output": 1}, "dear": {"input": 10, "output": 10}}))
    pricer = Pricer.from_file(path)
    chain = FallbackModel(_model("cheap"), _model("dear"))
    price = pricer.price(chain)
    assert price is not None and price.worst_nano(1_000_000, 0) == 10 * NANO
    answered = pricer.price_response(chain, "cheap")
    assert answered is not None and answered.worst_nano(1_000_000, 0) == NANO
    assert pricer.price(FallbackModel(_model("cheap"), _model("unpriced"))) is None


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{not json", "not valid"),
        ('{"m": {"input": 1}}', "'output'"),
        ('{"m": {"input": -1, "output": 1}}', "'input'"),
        ("[1, 2]", "must map"),
    ],
)
def test_a_broken_prices_file_is_one_clear_config_error(tmp_path: Path, content: str, problem: str) -> None:
    """Each mistake names itself; nothing is silently priced at 0."""
    path = tmp_path / "prices.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match=problem):
        load_overrides(path)


def test_a_missing_prices_file_is_a_config_error(tmp_path: Path) -> None:
    """The operator named a file that is not there."""
    with pytest.raises(ConfigError, match="cannot read"):
        load_overrides(tmp_path / "absent.json")


def test_the_input_bound_is_at_least_the_bytes_sent_and_counts_media() -> None:
    """The bound covers the text's UTF-8 bytes and gives each image a flat allowance."""
    from pydantic_ai.messages import BinaryContent, ModelRequest, UserPromptPart

    text = "héllo wörld " * 100
    plain = ModelRequest(parts=[UserPromptPart(text)])
    with_image = ModelRequest(parts=[UserPromptPart(["look", BinaryContent(data=b"\x89PNG", media_type="image/png")])])
    bound = InputBound()
    assert bound.tokens([plain], None) >= len(text.encode())
    assert bound.tokens([with_image], None) >= MEDIA_TOKENS
