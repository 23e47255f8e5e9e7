"""Which model failures are retried, and how long the retry policy waits."""

from __future__ import annotations

import pytest
from pydantic_ai import exceptions as pai

from agentkeep.resilience import ModelCircuitOpen, RetryPolicy, exponential_backoff, full_jitter, is_transient


def _http(status: int, retry_after: float | None = None) -> pai.ModelHTTPError:
    error = pai.ModelHTTPError(status, "m", body="x")
    error.retry_after = retry_after
    return error


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_transient_http_statuses_are_retried(status: int) -> None:
    """429 and the 5xx a provider sends when it is briefly unwell are transient."""
    assert is_transient(_http(status))


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_errors_the_request_caused_are_not_retried(status: int) -> None:
    """A 4xx other than 429 fails the same way every time."""
    assert not is_transient(_http(status))


@pytest.mark.parametrize(
    "error",
    [
        pai.ModelConnectionError("m", "connection reset"),
        pai.ModelTimeoutError("m", "read timed out"),
        pai.ModelRequestTimeout("m", 5.0),
        pai.ModelServerError("m", "boom"),
        pai.ModelUnavailableError("m", "overloaded"),
        pai.ModelRateLimitError("m", "slow down"),
    ],
)
def test_resets_timeouts_and_provider_categories_are_transient(error: Exception) -> None:
    """Pydantic AI's categories for outages, resets and timeouts are retried."""
    assert is_transient(error)


@pytest.mark.parametrize(
    "error",
    [
        pai.ModelQuotaExceededError("m", "no credits"),
        pai.ModelAuthenticationError("m", "bad key"),
        ModelCircuitOpen("m", 10.0),
        ValueError("a bug"),
    ],
)
def test_quota_auth_open_breakers_and_bugs_are_not_retried(error: Exception) -> None:
    """Waiting does not fix an empty account, a bad key, an open breaker or a bug."""
    assert not is_transient(error)


def test_a_fallback_group_is_transient_when_any_model_failed_transiently() -> None:
    """A FallbackModel's group: worth another round if one of its models might answer next time."""
    group = pai.FallbackExceptionGroup("all failed", [ModelCircuitOpen("a", 5), _http(503)])
    assert is_transient(group)
    assert not is_transient(pai.FallbackExceptionGroup("all failed", [ModelCircuitOpen("a", 5), _http(400)]))


def test_backoff_doubles_from_the_base_and_is_capped() -> None:
    """base · 2^(attempt-1), never above the cap."""
    assert [exponential_backoff(n, base=0.5, cap=3.0) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]


@pytest.mark.parametrize("rand", [0.0, 0.37, 0.999])
def test_full_jitter_is_uniform_below_the_backoff(rand: float) -> None:
    """Full jitter: rand · backoff, so the wait lies in [0, backoff)."""
    assert full_jitter(3, base=0.5, cap=8.0, rand=lambda: rand) == pytest.approx(rand * 2.0)


def test_at_most_three_attempts_by_default() -> None:
    """Attempts 1 and 2 may be followed by another; attempt 3 is the last."""
    policy = RetryPolicy(rand=lambda: 0.5)
    assert policy.delay(1, _http(503), time_left=100) == pytest.approx(0.25)
    assert policy.delay(2, _http(503), time_left=100) == pytest.approx(0.5)
    assert policy.delay(3, _http(503), time_left=100) is None


def test_retry_after_raises_the_wait_to_what_the_provider_asked() -> None:
    """A 429 saying Retry-After: 2 waits at least 2 s, however small the jittered wait."""
    policy = RetryPolicy(rand=lambda: 0.0)
    assert policy.delay(1, _http(429, retry_after=2.0), time_left=100) == 2.0


def test_no_retry_that_would_end_past_the_deadline() -> None:
    """With 1 s left, a provider asking for 2 s is not waited for: the failure is reported now."""
    policy = RetryPolicy(rand=lambda: 0.0)
    assert policy.delay(1, _http(429, retry_after=2.0), time_left=1.0) is None
    assert policy.delay(1, _http(503), time_left=0.0) is None


def test_an_absurd_retry_after_is_treated_as_down() -> None:
    """A provider asking for more than `max_retry_after_s` is not waited for."""
    policy = RetryPolicy(max_retry_after_s=60)
    assert policy.delay(1, _http(429, retry_after=3600), time_left=10_000) is None


def test_permanent_errors_get_no_delay() -> None:
    """A non-transient error is never retried, whatever the attempt."""
    assert RetryPolicy().delay(1, _http(400), time_left=100) is None
