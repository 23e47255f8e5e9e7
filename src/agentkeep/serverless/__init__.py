"""AWS Lambda: the same agent, app and run pipeline as `agentkeep serve`, one invocation at a time.

    handler(event, context)         API Gateway REST (v1), HTTP API (v2) and function URL events →
                                    the contract's HTTP API (events.py → asgi.py → server.create_app)
    worker_handler(event, context)  executes queued and interrupted background runs until shortly
                                    before the invocation's time runs out (worker.py)

    events.py     Lambda event ↔ one HTTP request and response
    asgi.py       the app's lifespan, and one request answered whole
    container.py  what a container keeps between invocations: loop, services (agentkeep.services), app
    worker.py     the worker's time box, on the container's durable engine

The agent is AGENTKEEP_TARGET. Importing this package imports neither the app nor DBOS nor
OpenTelemetry: the first invocation builds the container (docs/serverless.md has the figures).
"""

from __future__ import annotations

from typing import Any

__all__ = ["handler", "worker_handler"]


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Answer one HTTP event; a streamed run is answered whole (Lambda's buffered invoke mode)."""
    from agentkeep.serverless.container import container
    from agentkeep.serverless.events import parse_event, to_lambda_response

    request = parse_event(event)
    box = container()  # imports the app (asgi.py among it) on the first invocation
    from agentkeep.serverless.asgi import call_app

    assert box.app is not None  # container() built them for HTTP
    assert box.lifespan is not None
    response = box.loop.run_until_complete(call_app(box.app, request, box.lifespan.state))
    return to_lambda_response(response, payload_v2=request.payload_v2)


def worker_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Execute background runs until shortly before `context`'s remaining time runs out; a run
    still unfinished then stops at a step boundary and the next invocation resumes it."""
    from agentkeep.serverless.worker import work

    return work(context)
