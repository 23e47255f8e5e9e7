"""fetch_url without a network: the policy it is built from, and how a refusal reaches the model.

The attack run against real servers is test_fetch_ssrf.py; nothing here opens a connection.
"""

from __future__ import annotations

from ipaddress import ip_address

import pytest
from pydantic_ai import Agent
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart, ToolReturnPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from agentkeep.tools import Fetcher, FetchPolicy, ToolRefused, fetch_url
from agentkeep.tools._config import tool_settings
from agentkeep.tools.fetch import ADDRESS_TABLE


@pytest.mark.parametrize("address", ["4000::1", "80::1", "::1:2:3:4", "8000::1", "100::1", "fec0::1"])
def test_ipv6_outside_global_unicast_is_refused(address: str) -> None:
    """Beyond ssrfguard's table: IPv6 outside 2000::/3 is not globally routable, so it is refused."""
    assert ADDRESS_TABLE.classify(ip_address(address)).blocked


@pytest.mark.parametrize("address", ["2606:2800:220:1::1", "93.184.216.34", "::ffff:93.184.216.34"])
def test_public_addresses_stay_permitted(address: str) -> None:
    """The extra rows do not shadow public unicast or decoded IPv4-mapped public addresses."""
    assert not ADDRESS_TABLE.classify(ip_address(address)).blocked


def test_settings_shape_the_policy(tool_env: pytest.MonkeyPatch) -> None:
    """AGENTKEEP_FETCH_* become the policy: hosts, ports, byte and time caps."""
    tool_env.setenv("AGENTKEEP_FETCH_ALLOW_HOSTS", "api.example.com, *.docs.example.com")
    tool_env.setenv("AGENTKEEP_FETCH_DENY_HOSTS", "bad.example.com")
    tool_env.setenv("AGENTKEEP_FETCH_PORTS", "443,8443")
    tool_env.setenv("AGENTKEEP_FETCH_MAX_BYTES", "2048")
    tool_env.setenv("AGENTKEEP_FETCH_TIMEOUT_S", "3.5")
    policy = FetchPolicy.from_settings(tool_settings())
    assert policy == FetchPolicy(
        allow_hosts=("api.example.com", "*.docs.example.com"),
        deny_hosts=("bad.example.com",),
        ports=(443, 8443),
        max_bytes=2048,
        timeout_s=3.5,
    )


@pytest.mark.parametrize(
    "url",
    ["http://169.254.169.254/latest/meta-data/", "http://[::1]:80/", "file:///etc/passwd", "not a url", "http://[::1"],
)
async def test_literal_and_malformed_urls_are_refused_without_a_lookup(url: str) -> None:
    """URLs decidable from their text are refused before any DNS query or connection."""

    def no_lookups(*args: object, **kwargs: object) -> list[tuple[int, int, int, str, tuple[str, int]]]:
        raise AssertionError(f"resolver called with {args}")

    with pytest.raises(ToolRefused, match="fetch_url refused"):
        await Fetcher(resolver=no_lookups).fetch(url)


async def test_the_model_sees_a_refusal_and_the_run_goes_on() -> None:
    """In an agent run a refused fetch is the tool's failed result: the model reads why and answers."""
    seen: list[str] = []

    def model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        returns = [part for message in messages for part in message.parts if isinstance(part, ToolReturnPart)]
        if not returns:
            return ModelResponse(parts=[ToolCallPart("fetch_url", {"url": "http://169.254.169.254/latest/"})])
        seen.append(str(returns[-1].content))
        return ModelResponse(parts=[TextPart("that address is off limits")])

    agent = Agent(FunctionModel(model), tools=[fetch_url])
    result = await agent.run("fetch the metadata")
    assert result.output == "that address is off limits"
    assert len(seen) == 1
    assert "169.254.169.254" in seen[0]
    assert "refused" in seen[0]
