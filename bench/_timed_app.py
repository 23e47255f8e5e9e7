"""`agentkeep serve TARGET --port PORT`, with each response's server-side time in a header.

    python bench/_timed_app.py TARGET PORT

The app is exactly the one `agentkeep serve` builds; an outermost ASGI middleware adds
`Server-Timing: app;dur=<ms>`, the time from the request reaching the app to its response
headers leaving it, so benchmarks can tell the server's time from the network's and the client's.
"""

from __future__ import annotations

import sys
import time

import uvicorn
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agentkeep.config import load_settings
from agentkeep.loader import load_agents
from agentkeep.observability import configure_logging
from agentkeep.resilience.shutdown import GracefulServer
from agentkeep.server import create_app


class ServerTiming:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()

        async def timed(message: Message) -> None:
            if message["type"] == "http.response.start":
                dur = (time.perf_counter() - started) * 1000
                message = {
                    **message,
                    "headers": [*message.get("headers", []), (b"server-timing", f"app;dur={dur:.3f}".encode())],
                }
            await send(message)

        await self.app(scope, receive, timed)


def main() -> None:
    target, port = sys.argv[1], int(sys.argv[2])
    settings = load_settings()
    configure_logging(settings)
    app = create_app(settings, load_agents(target), auth=False)  # loopback, as `serve` decides for 127.0.0.1
    config = uvicorn.Config(ServerTiming(app), host="127.0.0.1", port=port, log_config=None, access_log=False)
    server = GracefulServer(config, app.state.agentkeep, drain_timeout_s=settings.drain_timeout_s)
    server.run()


if __name__ == "__main__":
    main()
