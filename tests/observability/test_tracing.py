"""Traces: exported over OTLP when an endpoint is configured, with GenAI attributes; nothing otherwise."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from agentkeep.config import Settings
from agentkeep.observability import configure_tracing
from agentkeep.testing.mock_llm import MockLLM, Reply
from tests.support.server import ServerProcess

AGENT = str(Path(__file__).with_name("telemetry_agent.py"))


class Collector:
    """A minimal OTLP/HTTP trace receiver: keeps every span it is sent, with its attributes."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        self.requests = 0
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

                body = self.rfile.read(int(self.headers["Content-Length"]))
                collector.receive(self.path, ExportTraceServiceRequest.FromString(body))
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def receive(self, path: str, request: Any) -> None:
        assert path == "/v1/traces"
        self.requests += 1
        for resource_spans in request.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    attributes = {a.key: _value(a.value) for a in span.attributes}
                    self.spans.append(
                        {
                            "name": span.name,
                            "trace_id": span.trace_id.hex(),
                            "span_id": span.span_id.hex(),
                            "parent": span.parent_span_id.hex(),
                            "attributes": attributes,
                            "resource": resource,
                        }
                    )

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _value(value: Any) -> Any:
    return getattr(value, value.WhichOneof("value")) if value.WhichOneof("value") else None


@pytest.fixture
def collector() -> Iterator[Collector]:
    pytest.importorskip("opentelemetry.sdk", reason="the otel extra is not installed")
    receiver = Collector()
    yield receiver
    receiver.close()


def test_a_run_exports_one_trace_with_model_and_tool_spans(tmp_path: Path, collector: Collector) -> None:
    """invoke_agent → 2 chat and execute_tool spans, one trace, GenAI attributes, our service name."""
    with MockLLM(default=Reply.call_then_answer("add", {"a": 2, "b": 3}, "5")) as mock:
        env = {
            "OPENAI_BASE_URL": mock.base_url,
            "OPENAI_API_KEY": "test",
            "AGENTKEEP_DATABASE_URL": f"sqlite:///{tmp_path / 'a.db'}",
            "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url,
            "OTEL_BSP_SCHEDULE_DELAY": "100",
        }
        with ServerProcess(AGENT, tmp_path, env=env) as server:
            assert server.post_run(message="what is 2+3?").status_code == 200
            deadline = time.monotonic() + 20
            while not any(s["name"].startswith("invoke_agent") for s in collector.spans):
                assert time.monotonic() < deadline, f"no agent span exported; got {collector.spans}"
                time.sleep(0.05)
    run = next(s for s in collector.spans if s["name"].startswith("invoke_agent"))
    trace = [s for s in collector.spans if s["trace_id"] == run["trace_id"]]
    chats = [s for s in trace if s["name"] == "chat mock"]
    tools = [s for s in trace if s["name"] == "execute_tool add"]
    assert len(chats) == 2 and len(tools) == 1
    by_id = {s["span_id"]: s for s in trace}
    for span in [*chats, *tools]:  # each hangs under the run span
        parent = span
        while parent["parent"] and parent["span_id"] != run["span_id"]:
            parent = by_id[parent["parent"]]
        assert parent is run
    assert chats[0]["attributes"]["gen_ai.request.model"] == "mock"
    assert chats[0]["attributes"]["gen_ai.usage.input_tokens"] > 0
    assert tools[0]["attributes"]["gen_ai.tool.name"] == "add"
    assert run["resource"]["service.name"] == "agentkeep"
    assert "what is 2+3?" not in str(trace)  # message text goes into spans only at debug level


def test_without_an_endpoint_nothing_is_set_up() -> None:
    """No OTEL_EXPORTER_OTLP_ENDPOINT: no provider, agents left uninstrumented."""
    from pydantic_ai import Agent

    before = Agent._instrument_default
    assert configure_tracing(Settings(_env_file=None)) is None  # type: ignore[call-arg]
    assert Agent._instrument_default is before


def test_an_endpoint_without_the_otel_extra_is_a_logged_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    """A configured endpoint with the SDK missing disables tracing instead of failing start-up."""
    import builtins

    real_import = builtins.__import__

    def no_sdk(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith("opentelemetry.sdk") or name.startswith("opentelemetry.exporter"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_sdk)
    settings = Settings(_env_file=None, otel_endpoint="http://127.0.0.1:4318")  # type: ignore[call-arg]
    assert configure_tracing(settings) is None
