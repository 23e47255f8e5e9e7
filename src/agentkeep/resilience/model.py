"""A model behind its circuit breaker, with one deadline per attempt and the SDK's own retries off.

`ModelGuard.wrap()` is applied by the resilience hook to the model serving each attempt at a model
request. A plain model becomes a `BreakerModel`; a `FallbackModel` gets each of its models guarded
(so an open breaker moves the request on to the next model), once, and the guarded copy is reused.

    BreakerModel.request()
        breaker refuses   → ModelCircuitOpen at once, nothing sent
        breaker allows    → the wrapped model's request, under `timeout_s`
            succeeds      → breaker.success()
            5xx, reset, timeout             → breaker.failure()
            4xx the request caused          → breaker.success(): the provider is up and answering
            429                             → neither: counted by the hook when retries run out

Retrying is the hook's business (one level up, where the run's deadline is known); this wrapper
makes exactly one attempt, so sets the provider SDK's `max_retries` to 0 for models that take it,
lest the SDK's two default retries multiply every attempt by three.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self, TypeVar

from pydantic_ai import exceptions as pai
from pydantic_ai.messages import ModelMessage, ModelResponse
from pydantic_ai.models import Model, ModelRequestParameters, StreamedResponse
from pydantic_ai.models.fallback import FallbackModel
from pydantic_ai.models.wrapper import WrapperModel
from pydantic_ai.settings import ModelSettings, merge_model_settings

from agentkeep.resilience.breaker import CircuitBreaker, ModelCircuitOpen
from agentkeep.resilience.retry import is_rate_limit, is_transient

__all__ = ["BreakerModel", "ModelGuard"]

_T = TypeVar("_T")
_NO_SDK_RETRIES = ModelSettings(max_retries=0)
_MAX_CACHED_FALLBACKS = 256


@dataclass(init=False)
class BreakerModel(WrapperModel):
    """One model behind the breaker named after it."""

    breaker: CircuitBreaker
    timeout_s: float

    def __init__(self, wrapped: Model, breaker: CircuitBreaker, *, timeout_s: float) -> None:
        super().__init__(wrapped)
        self.breaker = breaker
        self.timeout_s = timeout_s

    @property
    def key(self) -> str:
        """The breaker's name: the model's name as its provider knows it, as in the metrics."""
        return self.wrapped.model_name

    # The wrapped model's HTTP client belongs to whoever owns the model (the agent, or the
    # FallbackModel this guard copied): a per-attempt wrapper must never close it.
    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        return None

    async def request(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
    ) -> ModelResponse:
        settings = self._without_sdk_retries(model_settings)
        response = await self._attempt(lambda: self.wrapped.request(messages, settings, model_request_parameters))
        await self.breaker.success(self.key)
        return response

    @asynccontextmanager
    async def request_stream(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
        run_context: Any = None,
    ) -> AsyncIterator[StreamedResponse]:
        settings = self._without_sdk_retries(model_settings)
        async with AsyncExitStack() as stack:
            opening = self.wrapped.request_stream(messages, settings, model_request_parameters, run_context)
            # The deadline covers opening the stream (the provider's answer); reading the rest is
            # bounded by the run's deadline, since a scope must not be held across the `yield`.
            stream = await self._attempt(lambda: stack.enter_async_context(opening))
            await self.breaker.success(self.key)
            try:
                yield stream
            except Exception as exc:
                await self._report(exc)
                raise

    async def _attempt(self, send: Callable[[], Awaitable[_T]]) -> _T:
        permit = await self.breaker.check(self.key)
        if not permit.allowed:
            raise ModelCircuitOpen(self.key, permit.retry_after)
        deadline = asyncio.timeout(self.timeout_s)
        try:
            async with deadline:
                return await send()
        except TimeoutError:
            if not deadline.expired():
                raise
            await self.breaker.failure(self.key)
            raise pai.ModelRequestTimeout(self.key, self.timeout_s) from None
        except Exception as exc:
            await self._report(exc)
            raise

    async def _report(self, exc: Exception) -> None:
        if is_rate_limit(exc):
            return
        if is_transient(exc):
            await self.breaker.failure(self.key)
        elif isinstance(exc, pai.ModelHTTPError | pai.ModelRequestRejectedError):
            await self.breaker.success(self.key)

    def _without_sdk_retries(self, settings: ModelSettings | None) -> ModelSettings | None:
        if "max_retries" in type(self.wrapped).unsupported_settings:
            return settings
        return merge_model_settings(settings, _NO_SDK_RETRIES)


class ModelGuard:
    """Puts models behind their breakers; remembers the guarded copy of each FallbackModel."""

    def __init__(self, breaker: CircuitBreaker, *, timeout_s: float) -> None:
        self.breaker = breaker
        self.timeout_s = timeout_s
        # id → (original, guarded copy); the original is kept so its id cannot be reused.
        self._fallbacks: dict[int, tuple[FallbackModel, FallbackModel]] = {}

    def wrap(self, model: Model) -> Model:
        """`model` behind its breaker; a FallbackModel with each of its models behind theirs."""
        if isinstance(model, BreakerModel):
            return model
        if isinstance(model, FallbackModel):
            return self._guarded_fallback(model)
        return BreakerModel(model, self.breaker, timeout_s=self.timeout_s)

    def _guarded_fallback(self, model: FallbackModel) -> FallbackModel:
        cached = self._fallbacks.get(id(model))
        if cached is not None and cached[0] is model:
            return cached[1]
        guarded = FallbackModel(*[self.wrap(m) for m in model.models])
        # Keep the user's `fallback_on`; FallbackModel only holds it in parsed form.
        guarded._predicates = model._predicates
        if len(self._fallbacks) >= _MAX_CACHED_FALLBACKS:
            self._fallbacks.clear()
        self._fallbacks[id(model)] = (model, guarded)
        return guarded
