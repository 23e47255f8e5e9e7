"""How `agentkeep serve` and `agentkeep worker` start, in an order that lets every mistake be one line:

    check    settings, TARGET, each agent's model, TLS files, API keys  ConfigError (exit 2)
    bind     the port, before anything listens                           StartupFailed (exit 1)
    open     the services on the server's loop: database, migrations     StartupFailed (exit 1)
    serve    uvicorn on the bound socket; once it listens, the banner (stderr) and `server.started`

Nothing before `serve` logs that the server started, so a failure is never preceded by a claim that
it did. `--reload` (development) runs the same steps in a child process that a supervisor restarts
whenever a `.py` file under the TARGET's directory changes; the supervisor holds the socket, so a
request made during a restart waits in the backlog instead of being refused.
"""

from __future__ import annotations

import errno
import os
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentkeep import __version__
from agentkeep.config import Settings
from agentkeep.errors import ConfigError, StartupFailed
from agentkeep.loader import AgentMap

if TYPE_CHECKING:
    from agentkeep.resilience.shutdown import GracefulServer

__all__ = ["Checked", "ServeOptions", "banner", "bind", "check", "prepare_server", "reload_dirs", "supervise"]

# The drain (GracefulServer) already waited for the runs; uvicorn's own grace only covers the last writes.
_CLOSE_GRACE_S = 5


@dataclass(frozen=True)
class ServeOptions:
    """What the command line asked for (picklable: a `--reload` child receives it)."""

    target: str
    host: str = "127.0.0.1"
    port: int = 8000
    api: bool = True  # False: `agentkeep worker` (only /health, /live, /ready, /metrics, /v1/stats)
    worker: bool = True  # False: `serve --no-worker`, background runs are executed elsewhere
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    reload: bool = False

    @property
    def command(self) -> str:
        return "serve" if self.api else "worker"


@dataclass
class Checked:
    """The configuration, found sound: what `prepare_server` builds the app from."""

    options: ServeOptions
    settings: Settings
    agents: AgentMap
    models: dict[str, str]  # agent name → the model it runs on, for the banner
    auth: bool  # whether /v1 needs API keys


def check(options: ServeOptions) -> Checked:
    """Read the settings, load TARGET and resolve every agent's model; `ConfigError` for a mistake."""
    from agentkeep.config import load_settings
    from agentkeep.loader import load_agents
    from agentkeep.models import resolve_model
    from agentkeep.observability import configure_logging

    settings = load_settings()
    configure_logging(settings)
    agents = load_agents(options.target)
    models = {}
    for name, app in agents.items():
        model = resolve_model(settings.model, app.agent)  # a missing provider key fails here, before binding
        models[name] = _model_label(model if model is not None else app.agent.model)
    if bool(options.ssl_certfile) != bool(options.ssl_keyfile):
        raise ConfigError("--ssl-certfile and --ssl-keyfile go together")
    for pem in (options.ssl_certfile, options.ssl_keyfile):
        if pem and not os.path.isfile(pem):
            raise ConfigError(f"no such file: {pem}")
    auth = True  # a worker serves no /v1 route but /v1/stats
    if options.api:
        import asyncio

        from agentkeep.server.auth import check_auth

        auth = asyncio.run(check_auth(settings, options.host))  # refuses an unsafe bind before it happens
    return Checked(options, settings, agents, models, auth)


def bind(host: str, port: int) -> socket.socket:
    """A socket bound to host:port (not yet listening), or `StartupFailed` saying which flag to change."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise StartupFailed(f"port {port} is in use; pass --port or set PORT for make run") from None
        if exc.errno == errno.EACCES:
            raise StartupFailed(f"no permission to bind port {port}; pass --port with a port above 1023") from None
        reason = exc.strerror or str(exc)
        raise StartupFailed(f"cannot bind {host}:{port} ({reason}); pass --host, e.g. 127.0.0.1 or 0.0.0.0") from None
    sock.set_inheritable(True)
    return sock


def prepare_server(checked: Checked, *, reloading: bool = False) -> GracefulServer:
    """The app and its server, which opens the services before it listens and prints the banner once it does."""
    import uvicorn

    from agentkeep.durable import identity
    from agentkeep.loader import target_source
    from agentkeep.resilience.shutdown import GracefulServer
    from agentkeep.server import create_app

    options, settings = checked.options, checked.settings
    me = identity(settings, source=target_source(options.target), port=options.port)
    app = create_app(
        settings,
        checked.agents,
        tls=bool(options.ssl_certfile),
        auth=checked.auth,
        api=options.api,
        worker=options.worker,
        me=me,
    )
    config = uvicorn.Config(
        app,
        host=options.host,
        port=options.port,
        log_config=None,
        access_log=False,
        server_header=False,
        date_header=True,
        ssl_certfile=options.ssl_certfile,
        ssl_keyfile=options.ssl_keyfile,
        timeout_graceful_shutdown=_CLOSE_GRACE_S,
    )
    state = app.state.agentkeep
    server = GracefulServer(
        config,
        state,
        drain_timeout_s=settings.drain_timeout_s,
        prepare=state.open,
        on_started=lambda: _announce(checked, reloading=reloading),
    )
    state.on_fatal = server.fatal
    return server


def banner(checked: Checked, *, reloading: bool = False) -> str:
    """What a person starting the server reads first: where it is, what it serves, on what."""
    from agentkeep.durable import DurableEngine
    from agentkeep.stores.database import describe_database

    options, settings = checked.options, checked.settings
    base = f"{'https' if options.ssl_certfile else 'http'}://{_visible_host(options.host)}:{options.port}"
    agents = ", ".join(f"{name} ({model})" for name, model in checked.models.items())
    if not DurableEngine.available():
        background = "background runs off (pip install 'agentkeep[durable]')"
    elif not options.worker:
        background = "background runs queued for `agentkeep worker`"
    else:
        background = "background runs executed here"
    lines = [f"agentkeep {__version__} {options.command} {options.target}"]
    if options.api:
        lines += [f"  console   {base}/", f"  API docs  {base}/docs"]
    else:
        lines += [f"  health    {base}/health  ({base}/metrics)"]
    lines += [
        f"  {'agent ' if len(checked.models) == 1 else 'agents'}    {agents}",
        f"  database  {describe_database(settings.database_url.get_secret_value())}",
        f"  auth      {_auth_line(checked)}",
        f"  workers   1 process; {background}",
    ]
    if options.reload:
        watched = ", ".join(str(d) for d in reload_dirs(options.target))
        lines.append(f"  reload    {'restarted; ' if reloading else ''}watching {watched}")
    lines.append("Stop with Ctrl+C.")
    return "\n".join(lines)


def _announce(checked: Checked, *, reloading: bool) -> None:
    import structlog

    options = checked.options
    print(banner(checked, reloading=reloading), file=sys.stderr, flush=True)
    structlog.get_logger("agentkeep.server").info(
        "server.started",
        command=options.command,
        host=options.host,
        port=options.port,
        agents=checked.models,
        auth=checked.auth,
        workers=1,
    )


def _auth_line(checked: Checked) -> str:
    mode = checked.settings.auth
    if checked.auth:
        return f"API keys required (AGENTKEEP_AUTH={mode}); `agentkeep keys create --user NAME` makes one"
    if mode == "off":
        return "off: every caller is anonymous (AGENTKEEP_AUTH=off)"
    return "off while bound to loopback (AGENTKEEP_AUTH=auto); on any other address keys are required"


def _visible_host(host: str) -> str:
    """The address a browser on this machine opens for a server bound to `host`."""
    if host in {"0.0.0.0", ""}:
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _model_label(model: Any) -> str:
    if model is None:
        return "no model"
    if isinstance(model, str):
        return model
    system = getattr(model, "system", None)
    name = getattr(model, "model_name", type(model).__name__)
    return f"{system}:{name}" if system else str(name)


# --- --reload -------------------------------------------------------------------------------------


def reload_dirs(target: str) -> list[Path]:
    """The directory whose `.py` files a reload watches: the TARGET file's (or its module's)."""
    from agentkeep.loader import target_source

    source = target_source(target)
    return [source.parent if source is not None else Path.cwd()]


def supervise(checked: Checked, sock: socket.socket, child: Callable[..., None]) -> int:
    """Serve from a child process, restarted when a watched file changes, until SIGINT or SIGTERM.

    `child(options, sockets=...)` runs in each child (a module-level function: it is pickled);
    it checks, prepares and serves like a plain `serve`, printing its own error line on a mistake,
    after which the next change starts a new one.
    """
    import functools

    import uvicorn

    from agentkeep.server.reload import SourceReload

    options = checked.options
    # The supervisor's config only carries what uvicorn's reloader reads; each child builds its own.
    config = uvicorn.Config("agentkeep", reload=True, reload_dirs=[str(d) for d in reload_dirs(options.target)])
    SourceReload(config, target=functools.partial(child, options), sockets=[sock]).run()
    return 0
