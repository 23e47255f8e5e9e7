"""`agentkeep`: serve, worker, keys, backup, restore, init.

Exit status: 0 success, 2 usage error (bad flags, bad TARGET, bad configuration), 1 failure.
A user mistake prints one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import socket
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from pydantic import ValidationError

from agentkeep import __version__
from agentkeep.errors import AgentkeepError, ConfigError

if TYPE_CHECKING:
    from agentkeep.resilience.shutdown import GracefulServer
    from agentkeep.server.launch import ServeOptions

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
    serve.add_argument(
        "--reload", action="store_true", help="development: restart when a .py file in TARGET's directory changes"
    )

    worker = commands.add_parser("worker", help="execute background runs; serve /health, /ready, /metrics")
    _target_and_address(worker, port=8001)
    worker.set_defaults(no_worker=False, ssl_certfile=None, ssl_keyfile=None, reload=False)

    init = commands.add_parser("init", help="write deployment files (Docker, Compose, systemd, Kubernetes, Lambda)")
    init.add_argument("directory", nargs="?", default=".", metavar="DIR", help="the agent project (default .)")
    init.add_argument(
        "--target",
        choices=["docker", "compose", "systemd", "k8s", "lambda", "all"],
        default="docker",
        help="the platform (default docker)",
    )
    init.add_argument("--agent", metavar="TARGET", help="the agent to serve (default: agent.py, app.py, ... in DIR)")
    init.add_argument("--name", help="service and image name (default: DIR's name)")
    init.add_argument("--force", action="store_true", help="overwrite files that exist with other content")
    _security_commands(commands)
    runs = commands.add_parser("runs", help="background runs left by another version of the agent (docs/durable.md)")
    runs_actions = runs.add_subparsers(dest="runs_command", required=True, metavar="ACTION")
    resume = runs_actions.add_parser("resume", help="continue unfinished runs of other versions on TARGET's version")
    resume.add_argument("target", metavar="TARGET", help="module:attr or path/to/file.py[:attr], as served")
    resume.add_argument("run_ids", nargs="*", metavar="RUN_ID", help="only these runs (default: every one)")
    return parser


def _security_commands(commands: Any) -> None:
    keys = commands.add_parser("keys", help="create, list and revoke API keys")
    actions = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="create a key for a user and print it (shown only this once)")
    create.add_argument("--user", required=True, help="the user the key acts as; it owns what the key creates")
    create.add_argument("--admin", action="store_true", help="may also read any user's usage")
    listing = actions.add_parser("list", help="every key: id, user, admin, created, last used, revoked")
    listing.add_argument("--json", action="store_true", help="one JSON object per key, per line")
    revoke = actions.add_parser("revoke", help="revoke a key for good")
    revoke.add_argument("key_id", metavar="ID", help="the key's id, as `keys list` shows it")
    backup = commands.add_parser("backup", help="a consistent, checked snapshot of the SQLite database (while serving)")
    backup.add_argument("path", metavar="PATH", help="file to write, or a directory to put a timestamped file in")
    restore = commands.add_parser("restore", help="replace the SQLite database with a backup (servers stopped)")
    restore.add_argument("path", metavar="PATH", help="a file written by `agentkeep backup`")


def _target_and_address(command: argparse.ArgumentParser, port: int = 8000) -> None:
    command.add_argument("target", metavar="TARGET", help="module:attr or path/to/file.py[:attr]")
    command.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    command.add_argument("--port", type=int, default=port, help=f"port to bind (default {port})")


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    try:
        code = _dispatch(args)
    except (AgentkeepError, ValidationError) as exc:
        _fail(*_error_line(exc))
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)


def _error_line(exc: Exception) -> tuple[int, str]:
    """The exit status and the one line for a mistake (2) or a failure (1); anything else is a bug and re-raised."""
    if isinstance(exc, ConfigError):
        return USAGE_ERROR, exc.message
    if isinstance(exc, ValidationError):
        return USAGE_ERROR, _first_error(exc)
    if isinstance(exc, AgentkeepError):
        return FAILURE, exc.message
    raise exc


def _dispatch(args: argparse.Namespace) -> int:
    if args.command in {"serve", "worker"}:
        return _serve(args)
    if args.command == "init":
        return _init(args)
    if args.command == "keys":
        return _keys(args)
    if args.command in {"backup", "restore"}:
        return _backup_or_restore(args)
    if args.command == "runs":
        return _runs_resume(args)
    raise ConfigError(f"unknown command {args.command!r}")


def _serve(args: argparse.Namespace) -> int:
    from agentkeep.startup import gc_paused

    with gc_paused():  # the imports and the app: a quarter of the time to /ready otherwise
        from agentkeep.server.launch import ServeOptions, bind, check, prepare_server

        options = ServeOptions(
            target=args.target,
            host=args.host,
            port=args.port,
            api=args.command == "serve",  # a `worker` serves only /health, /live, /ready, /metrics and /v1/stats
            worker=not args.no_worker,
            ssl_certfile=args.ssl_certfile,
            ssl_keyfile=args.ssl_keyfile,
            reload=args.reload,
        )
        checked = check(options)  # every configuration mistake, before the port is taken
        sock = bind(options.host, options.port)
        server = None if options.reload else prepare_server(checked)
    if server is None:  # --reload: this process only watches, a child serves
        from agentkeep.server.launch import supervise

        return supervise(checked, sock, _serve_reloaded)
    return _run(server, sock)


def _run(server: GracefulServer, sock: socket.socket) -> int:
    server.run(sockets=[sock])
    if server.startup_error is not None:  # the services did not open: nothing listened, nothing claimed it did
        raise server.startup_error
    return server.exit_code if server.started else FAILURE


def _serve_reloaded(options: ServeOptions, sockets: list[socket.socket]) -> None:
    """A `serve --reload` child: check and serve like `serve`; a mistake in the edited code is one
    line, and the supervisor starts a new child at the next change."""
    from agentkeep.startup import gc_paused

    try:
        with gc_paused():
            from agentkeep.server.launch import check, prepare_server

            server = prepare_server(check(options))
        code = _run(server, sockets[0])
    except Exception as exc:
        code, message = _error_line(exc)
        print(f"agentkeep: error: {message}", file=sys.stderr, flush=True)
    sys.exit(code)


def _runs_resume(args: argparse.Namespace) -> int:
    from agentkeep.config import load_settings
    from agentkeep.durable import DurableEngine, Identity, identity
    from agentkeep.durable.upgrade import resume_stale_runs
    from agentkeep.loader import load_agents, target_source

    settings = load_settings()
    load_agents(args.target)
    if not DurableEngine.available():
        raise ConfigError("background runs need the durable extra: pip install 'agentkeep[durable]'")
    version = identity(settings, source=target_source(args.target), port=0).version
    me = Identity("agentkeep-runs-resume", version)  # it takes no work, so no run is ever its own
    resumed = resume_stale_runs(settings, me, set(args.run_ids) or None)
    for run_id, old_version, workflow_id in resumed:
        print(f"resumed {run_id} (was {old_version}) as {workflow_id} on {me.version}")
    print(f"{len(resumed)} run(s) resumed")
    return 0


def _init(args: argparse.Namespace) -> int:
    from pathlib import Path

    from agentkeep.config import load_settings
    from agentkeep.deploy import init

    directory = Path(args.directory)
    report = init(directory, args.target, settings=load_settings(), agent=args.agent, name=args.name, force=args.force)
    for path in report.written:
        print(f"wrote {directory / path}")
    for path in report.kept:
        print(f"kept  {directory / path} (exists)")
    for path in report.unchanged:
        print(f"same  {directory / path}")
    for note in report.notes:
        print(f"note: {note}")
    print("next: docs/deploy.md has the commands for each target")
    return 0


def _keys(args: argparse.Namespace) -> int:
    import asyncio
    import json

    from agentkeep.config import load_settings
    from agentkeep.errors import NotFound
    from agentkeep.stores.database import describe_database, sqlite_file
    from agentkeep.stores.keys import KeyRecord, open_key_store

    def when(ts: float | None) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts)) if ts is not None else "-"

    def row(key: KeyRecord) -> dict[str, Any]:
        return {
            "id": key.key_id,
            "user": key.user_id,
            "admin": key.admin,
            "created": when(key.created_at),
            "last_used": when(key.last_used_at),
            "revoked": when(key.revoked_at),
        }

    url = load_settings().database_url.get_secret_value()
    file = sqlite_file(url)
    new_file = file is not None and not file.exists()  # before opening, which would create it

    async def act() -> int:
        async with open_key_store(url) as keys:
            if args.keys_command == "create":
                new = await keys.create(args.user, admin=args.admin)
                print(new.token)
                role = " (admin)" if args.admin else ""
                where = describe_database(url)
                print(
                    f"created key {new.record.key_id} for {args.user}{role} in {where}; it is not shown again",
                    file=sys.stderr,
                )
                if new_file:
                    print(
                        f"warning: {file} did not exist and was created now; a server on another database "
                        "refuses this key (run this where the server runs, or set AGENTKEEP_DATABASE_URL to its)",
                        file=sys.stderr,
                    )
            elif args.keys_command == "revoke":
                if (revoked := await keys.revoke(args.key_id)) is None:
                    raise NotFound(f"no key {args.key_id!r}; `agentkeep keys list` shows the ids")
                print(f"revoked key {revoked.key_id} of {revoked.user_id}")
            else:
                rows = [row(key) for key in await keys.list()]
                for item in rows if args.json else []:
                    print(json.dumps(item))
                if not args.json:
                    _print_table(["id", "user", "admin", "created", "last_used", "revoked"], rows)
        return 0

    return asyncio.run(act())


def _print_table(columns: list[str], rows: list[dict[str, Any]]) -> None:
    cells = [[("yes" if r[c] else "no") if isinstance(r[c], bool) else str(r[c]) for c in columns] for r in rows]
    widths = [max([len(c), *(len(line[i]) for line in cells)]) for i, c in enumerate(columns)]
    for line in [[c.upper().replace("_", " ") for c in columns], *cells]:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())


def _backup_or_restore(args: argparse.Namespace) -> int:
    from pathlib import Path

    from agentkeep.config import load_settings
    from agentkeep.stores.backup import backup_sqlite, postgres_commands, restore_sqlite, sqlite_path
    from agentkeep.stores.workspace_backup import backup_workspace, restore_workspace

    settings = load_settings()
    url = settings.database_url.get_secret_value()
    workspace = settings.workspace_dir if settings.workspace_url is None else None
    path = Path(args.path)
    restoring = args.command == "restore"
    database = sqlite_path(url)
    if database is None:
        note = "PostgreSQL is backed up and restored with its own tools; run (password from PGPASSWORD or ~/.pgpass):"
        print(note, file=sys.stderr)
        for line in postgres_commands(url, path, restore=restoring):
            print(line)
        return 0
    if restoring:
        report = restore_sqlite(database, path)
        kept = f"; the replaced database is kept as {report.kept}" if report.kept else ""
        print(f"restored {path} to {report.path}: {report.sessions} sessions, {report.runs} runs{kept}")
        files = restore_workspace(workspace, path) if workspace is not None else None
        if files is not None:
            kept = f"; the replaced workspace is kept as {files.kept}" if files.kept else ""
            print(f"restored the workspace {files.path}: {files.files} files{kept}")
    else:
        report = backup_sqlite(database, path)
        print(
            f"backed up {database} to {report.path}: {report.size_bytes} bytes, "
            f"{report.sessions} sessions, {report.runs} runs, integrity ok"
        )
        files = backup_workspace(workspace, report.path) if workspace is not None else None
        if files is not None:
            print(f"backed up the workspace {workspace} to {files.path}: {files.files} files")
        elif settings.workspace_url is not None:
            print("the workspace is in object storage, which is its own backup (versioning or replication)")
    return 0


def _first_error(exc: ValidationError) -> str:
    """`AGENTKEEP_RATE_LIMIT: 'x' is not a rate limit: …`: the setting as the user wrote it, and what is wrong."""
    from agentkeep.config import setting_name

    error: Any = exc.errors()[0]
    loc = [str(p) for p in error.get("loc", ())]
    where = setting_name(loc[0]) if loc else "configuration"
    if loc[1:]:
        where += " " + ".".join(loc[1:])
    message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
    if message[:2].istitle():  # pydantic's "Input should be …" reads as the middle of our line
        message = message[0].lower() + message[1:]
    return f"{where}: {message}"


def _fail(code: int, message: str) -> NoReturn:
    print(f"agentkeep: error: {message}", file=sys.stderr)
    sys.exit(code)
