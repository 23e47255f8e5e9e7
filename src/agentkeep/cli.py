"""`agentkeep`: serve, worker, keys, backup, restore, init.

Exit status: 0 success, 2 usage error (bad flags, bad TARGET, bad configuration), 1 failure.
A user mistake prints one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from pydantic import ValidationError

from agentkeep import __version__
from agentkeep.errors import AgentkeepError, ConfigError

USAGE_ERROR = 2
FAILURE = 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="agentkeep", description="A production runtime for Pydantic AI agents.")
    parser.add_argument("--version", action="version", version=f"agentkeep {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="serve TARGET's agents over HTTP")
    _target_and_address(serve)
    serve.add_argument("--no-worker", action="store_true", help="do not execute background runs here")
    serve.add_argument("--ssl-certfile", help="serve HTTPS with this certificate (PEM)")
    serve.add_argument("--ssl-keyfile", help="the certificate's private key (PEM)")
    return parser


def _target_and_address(command: argparse.ArgumentParser) -> None:
    command.add_argument("target", metavar="TARGET", help="module:attr or path/to/file.py[:attr]")
    command.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    command.add_argument("--port", type=int, default=8000, help="port to bind (default 8000)")


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    try:
        code = _dispatch(args)
    except ConfigError as exc:
        _fail(USAGE_ERROR, exc.message)
    except ValidationError as exc:
        _fail(USAGE_ERROR, f"invalid configuration: {_first_error(exc)}")
    except AgentkeepError as exc:
        _fail(FAILURE, exc.message)
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "serve":
        return _serve(args)
    raise ConfigError(f"unknown command {args.command!r}")


def _serve(args: argparse.Namespace) -> int:
    from agentkeep.config import load_settings
    from agentkeep.loader import load_agents
    from agentkeep.models import resolve_model
    from agentkeep.observability import configure_logging

    settings = load_settings()
    configure_logging(settings)
    agents = load_agents(args.target)
    for agent in agents.values():
        resolve_model(settings.model, agent)  # a missing provider key fails here, before binding
    if bool(args.ssl_certfile) != bool(args.ssl_keyfile):
        raise ConfigError("--ssl-certfile and --ssl-keyfile go together")

    import uvicorn

    from agentkeep.server import create_app

    app = create_app(settings, agents, tls=bool(args.ssl_certfile))
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_config=None,
        access_log=False,
        server_header=False,
        date_header=True,
        ssl_certfile=args.ssl_certfile,
        ssl_keyfile=args.ssl_keyfile,
        timeout_graceful_shutdown=int(settings.drain_timeout_s) + 1,
    )
    server = uvicorn.Server(config)
    server.run()
    return 0 if server.started else FAILURE


def _first_error(exc: ValidationError) -> str:
    error: Any = exc.errors()[0]
    where = ".".join(str(p) for p in error.get("loc", ())) or "value"
    return f"{where}: {error.get('msg')}"


def _fail(code: int, message: str) -> NoReturn:
    print(f"agentkeep: error: {message}", file=sys.stderr)
    sys.exit(code)
