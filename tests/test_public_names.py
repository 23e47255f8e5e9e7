"""Each public module's `__all__` is exactly the pinned list: a name added or dropped is a decision
made here, in review, not by accident (as starlette and httpx pin theirs).

`PUBLIC_NAMES` is the table to extend: one row per module, its names as `__all__` lists them.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import agentkeep

PUBLIC_NAMES: dict[str, list[str]] = {
    "agentkeep": ["__version__"],
    "agentkeep.api_models": [
        "ERROR_RESPONSES",
        "ErrorBody",
        "ErrorOut",
        "HealthOut",
        "LiveOut",
        "MessageOut",
        "ReadyOut",
        "RunAcceptedOut",
        "RunCreate",
        "RunOut",
        "RunResultOut",
        "SessionOut",
        "TaskCreate",
        "UsageOut",
        "run_view",
    ],
    "agentkeep.config": ["Schedule", "Settings", "load_settings", "setting_name"],
    "agentkeep.errors": [
        "RUN_FAILURE_STATUS",
        "RUN_FAILURE_TYPES",
        "AgentkeepError",
        "BudgetExceeded",
        "CircuitOpen",
        "ConfigError",
        "Draining",
        "InvalidRequest",
        "MethodNotAllowed",
        "NotFound",
        "Overloaded",
        "PayloadTooLarge",
        "PriceUnknown",
        "RateLimited",
        "RunFailed",
        "SessionBusy",
        "StartupFailed",
        "Unauthorized",
        "Unavailable",
        "ValidationFailed",
        "envelope",
        "render",
        "send_envelope",
        "type_for_status",
    ],
    "agentkeep.failures": ["CancelRequested", "Detached", "ToolError", "ToolInterrupted", "classify"],
    "agentkeep.hooks": [
        "Hook",
        "ModelCall",
        "ModelProceed",
        "RunOutcome",
        "RunState",
        "ToolCall",
        "ToolProceed",
        "Usage",
        "idempotency_key",
        "idempotency_scope",
    ],
    "agentkeep.lifecycle": ["ActiveRuns", "RunScope", "failure_status", "record_failure", "run_scope", "shielded"],
    "agentkeep.loader": ["AgentMap", "load_agents", "target_source"],
    "agentkeep.pipeline": ["PipelineCapability"],
    "agentkeep.runtime": [
        "ANONYMOUS_USER",
        "SESSION_ID_RE",
        "EventSink",
        "PreparedRun",
        "RunEvent",
        "RunRequest",
        "Runtime",
        "check_session_id",
        "clean_message",
        "new_id",
    ],
    "agentkeep.startup": ["gc_paused"],
    "agentkeep.stores.workspace_backup": [
        "WorkspaceReport",
        "backup_workspace",
        "restore_workspace",
        "workspace_sidecar",
    ],
    "agentkeep.transcript": ["load_chunks", "simple_messages"],
    "agentkeep.worker": ["Step", "WorkerLoop"],
    "agentkeep.budget": [
        "AlertDispatcher",
        "Budget",
        "BudgetMetrics",
        "Caps",
        "Ledger",
        "Pricer",
        "budget_from_settings",
        "caps_of",
    ],
    "agentkeep.budget.alerts": ["AlertDispatcher", "parse_thresholds"],
    "agentkeep.budget.hook": ["Budget", "BudgetMetrics"],
    "agentkeep.budget.prices": ["NANO", "Price", "Pricer", "load_overrides", "to_nano", "to_usd"],
    "agentkeep.budget.reclaimer": ["Reclaimer"],
    "agentkeep.budget.records": [
        "NO_CAPS",
        "SESSION",
        "USER_DAY",
        "Alert",
        "Caps",
        "CounterState",
        "Entry",
        "Refused",
        "Reservation",
        "Settled",
        "utc_day",
    ],
    "agentkeep.budget.tables": ["alerts", "counters", "create_tables", "ledger", "metadata", "reservations"],
    "agentkeep.budget.tokens": ["MEDIA_TOKENS", "InputBound"],
    "agentkeep.budget.transactor": ["Conn", "Rows", "Transactor"],
    "agentkeep.deploy": ["TARGETS", "InitReport", "Project", "Rendered", "init", "render", "specs_for", "write"],
    "agentkeep.deploy.project": ["DEFAULT_AGENT", "Project", "default_name", "existing_password", "find_agent"],
    "agentkeep.deploy.render": ["TARGETS", "Rendered", "Spec", "read_template", "render", "specs_for"],
    "agentkeep.durable": ["DurableEngine", "Identity", "ask", "identity", "step", "task"],
    "agentkeep.durable.asking": ["CURRENT", "Tally", "TaskContext", "current_tally", "tally_scope"],
    "agentkeep.durable.checkpoints": ["DurableSteps", "workflow_status"],
    "agentkeep.durable.deadline": ["DrainReport", "StepGate", "drain_until"],
    "agentkeep.durable.engine": ["DurableEngine", "abandon_launch"],
    "agentkeep.durable.runner": ["Runner"],
    "agentkeep.durable.schedules": ["PREFIX", "Enqueue", "Scheduler", "check_schedules"],
    "agentkeep.durable.setup": [
        "QUEUE",
        "Identity",
        "dbos_config",
        "identity",
        "route_dbos_logs",
        "system_database_url",
    ],
    "agentkeep.durable.takeover": ["Takeover"],
    "agentkeep.durable.tasks": [
        "TASKS",
        "StepFailed",
        "TaskFunction",
        "ask",
        "step",
        "task",
        "task_failure",
        "task_record",
    ],
    "agentkeep.durable.upgrade": ["fork_suffix", "resume", "resume_stale_runs", "run_id_of", "stale"],
    "agentkeep.durable.upkeep": ["FileSweep", "Upkeep", "prune_workflows"],
    "agentkeep.durable.webhooks": ["RETRY", "WebhookFailed", "WebhookSender", "sign"],
    "agentkeep.durable.workflows": [
        "REGISTRY",
        "Registry",
        "WorkflowBodies",
        "run_workflow",
        "scheduled_workflow",
        "task_workflow",
        "webhook_workflow",
    ],
    "agentkeep.models": ["DEFAULT_MODEL", "model_label", "resolve_model"],
    "agentkeep.models.local": [
        "DEFAULT_MAX_TOKENS",
        "INSTALL_HINT",
        "LocalModel",
        "LocalModelUnavailable",
        "local_model",
    ],
    "agentkeep.observability": [
        "RunStats",
        "Telemetry",
        "Tracing",
        "configure_logging",
        "configure_tracing",
        "metrics",
    ],
    "agentkeep.observability.logs": [
        "REDACTED",
        "TEXT_FIELDS",
        "Redactor",
        "configure_logging",
        "drop_text_below_debug",
        "log_format",
    ],
    "agentkeep.observability.metrics": [
        "ACTIVE_RUNS",
        "BUDGET_OVERRUNS",
        "BUDGET_REJECTIONS",
        "CIRCUIT_STATE",
        "CONTENT_TYPE_LATEST",
        "COST",
        "MODEL_LATENCY",
        "MODEL_REQUESTS",
        "RATE_LIMITED",
        "REGISTRY",
        "RUNS",
        "RUN_DURATION",
        "RUN_ITERATIONS",
        "TOKENS",
        "TOOL_CALLS",
        "TOOL_LATENCY",
        "bounded",
        "exposition",
    ],
    "agentkeep.observability.stats": ["WINDOW", "RunSample", "RunStats", "memory_mb", "percentile"],
    "agentkeep.observability.steps": ["Step", "StepRecorder", "step_views", "steps_json"],
    "agentkeep.observability.telemetry": ["Telemetry"],
    "agentkeep.observability.tracing": ["Tracing", "configure_tracing"],
    "agentkeep.resilience": [
        "BreakerBackend",
        "BreakerModel",
        "CircuitBreaker",
        "CircuitState",
        "MemoryBreakerBackend",
        "ModelCircuitOpen",
        "ModelGuard",
        "Permit",
        "RateLimit",
        "RateLimiter",
        "Resilience",
        "RetryPolicy",
        "caller_key",
        "exponential_backoff",
        "full_jitter",
        "is_transient",
        "open_breaker",
    ],
    "agentkeep.resilience.breaker": [
        "MAX_MODELS",
        "BreakerBackend",
        "CircuitBreaker",
        "CircuitState",
        "MemoryBreakerBackend",
        "ModelCircuitOpen",
        "Permit",
        "StateListener",
    ],
    "agentkeep.resilience.breaker_redis": ["RedisBreakerBackend"],
    "agentkeep.resilience.hook": ["Resilience", "open_breaker"],
    "agentkeep.resilience.model": ["BreakerModel", "ModelGuard"],
    "agentkeep.resilience.ratelimit": ["RateLimit", "RateLimiter", "caller_key"],
    "agentkeep.resilience.retry": [
        "TRANSIENT_STATUSES",
        "RetryPolicy",
        "exponential_backoff",
        "full_jitter",
        "is_circuit_open",
        "is_rate_limit",
        "is_transient",
        "leaf_errors",
        "retry_after",
    ],
    "agentkeep.resilience.shutdown": ["Drainable", "GracefulServer", "log_loop_exception"],
    "agentkeep.server": ["DEFAULT_ROUTERS", "OPS_ROUTERS", "create_app"],
    "agentkeep.server.usage": ["caller_is_admin", "router"],
    "agentkeep.services": ["Services", "build_services"],
    "agentkeep.serverless": ["handler", "worker_handler"],
    "agentkeep.serverless.container": ["Container", "container", "on_lambda"],
    "agentkeep.serverless.worker": ["time_box", "work"],
    "agentkeep.server.auth": [
        "Authenticator",
        "auth_required",
        "authenticate",
        "bearer_scheme",
        "check_auth",
        "is_loopback",
    ],
    "agentkeep.server.console": ["router"],
    "agentkeep.server.static": ["CONTENT_TYPES", "StaticFile", "serve_file", "static_file"],
    "agentkeep.server.docs": ["router"],
    "agentkeep.server.launch": [
        "Checked",
        "ServeOptions",
        "banner",
        "bind",
        "check",
        "prepare_server",
        "reload_dirs",
        "supervise",
    ],
    "agentkeep.server.reload": ["SourceReload", "source_files"],
    "agentkeep.server.errors": ["error_response", "install_error_handlers"],
    "agentkeep.server.files": ["DOWNLOAD_CSP", "router"],
    "agentkeep.server.guards": ["RUN_ROUTES", "rate_limited", "rate_limiter", "read_rate_limiter", "starts_run"],
    "agentkeep.server.listing": ["router"],
    "agentkeep.server.middleware": ["BodyLimit", "JSONBodies", "SecurityHeaders"],
    "agentkeep.server.ops": ["BreakerState", "StatsOut", "router"],
    "agentkeep.server.state": ["AppState", "app_state"],
    "agentkeep.server.routes": ["State", "User", "current_user", "probes", "router", "visible_run"],
    "agentkeep.server.task_routes": ["router"],
    "agentkeep.sqlite": [
        "AsyncTransaction",
        "FetchedRows",
        "SQLiteFile",
        "Transaction",
        "WouldWait",
        "configure",
        "is_busy",
        "precompiled",
        "write_lock",
    ],
    "agentkeep.sqlite.plans": ["FetchedRows", "Plan", "is_precompiled", "precompiled"],
    "agentkeep.sqlite.transactions": [
        "CHECKPOINT_EVERY",
        "AsyncTransaction",
        "SQLiteFile",
        "Transaction",
        "WouldWait",
        "configure",
        "is_busy",
        "write_lock",
    ],
    "agentkeep.stores": ["RunRecord", "RunStatus", "SessionRecord", "Usage", "open_store"],
    "agentkeep.stores.base": ["HourUsage", "RunQuery", "RunRecord", "RunStatus", "SessionRecord", "Usage"],
    "agentkeep.stores.database": ["Database", "async_url", "describe_database", "sqlite_file"],
    "agentkeep.stores.keys": [
        "KEY_PREFIX",
        "KeyRecord",
        "KeyStore",
        "NewKey",
        "check_user_id",
        "open_key_store",
        "parse_key",
    ],
    "agentkeep.stores.schema": [
        "MIGRATIONS",
        "Migration",
        "api_keys",
        "metadata",
        "pending",
        "runs",
        "schema_version",
        "session_history",
        "sessions",
        "workers",
    ],
    "agentkeep.stores.sql": ["SQLStore"],
    "agentkeep.stores.workers": ["Workers"],
    "agentkeep.testing": [],
    "agentkeep.testing.mock_llm": ["MockLLM", "MockLLMControl", "MockLLMProcess", "Reply", "ReplyKind", "ToolCall"],
    "agentkeep.tools": [  # the contract names the five functions
        "BaseWorkspace",
        "FetchPolicy",
        "FetchResult",
        "Fetcher",
        "FileInfo",
        "FileMissing",
        "RunResult",
        "Sandbox",
        "SandboxLimits",
        "ToolFailure",
        "ToolRefused",
        "Workspace",
        "fetch_url",
        "list_files",
        "read_file",
        "run_python",
        "write_file",
    ],
    "agentkeep.tools.disk": ["SANDBOX_ALIAS", "SANDBOX_UID", "Workspace"],
    "agentkeep.tools.fetch": ["ADDRESS_TABLE", "FetchPolicy", "FetchResult", "Fetcher", "default_fetcher", "fetch_url"],
    "agentkeep.tools.files": [
        "Workspace",
        "check_workspace",
        "default_workspace",
        "list_files",
        "read_file",
        "remove_session_files",
        "workspace_of",
        "workspace_root",
        "write_file",
    ],
    "agentkeep.tools.objects": ["ObjectWorkspace", "parse_url"],
    "agentkeep.tools.sandbox": ["RunResult", "Sandbox", "SandboxLimits", "default_sandbox", "find_bwrap", "run_python"],
    "agentkeep.tools.scope": [
        "SESSIONS",
        "USERS",
        "RunOwner",
        "WorkspaceScope",
        "bound_to",
        "current_owner",
        "folder_name",
        "is_folder_name",
        "scope_folder",
    ],
    "agentkeep.tools.staging": ["Staged", "staged"],
    "agentkeep.tools.sweep": ["scope_folders", "stale_folders"],
    "agentkeep.tools.workspace": [
        "MAX_ENTRIES",
        "MAX_LISTED",
        "TEMPORARY",
        "BaseWorkspace",
        "FileInfo",
        "child",
        "shown",
    ],
}

# Modules of issue 14's other parts, whose `__all__` their own change adds; each moves into the table then.
AWAITING_ALL = {
    "agentkeep.cli",
}

_SRC = Path(agentkeep.__file__).parent


def _public_modules() -> dict[str, Path]:
    """Every module of the package by dotted name, minus `__main__` and `_private` ones."""
    found = {}
    for path in sorted(_SRC.rglob("*.py")):
        parts = list(path.relative_to(_SRC.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        if parts[-1] == "__main__" or any(part.startswith("_") for part in parts):
            continue
        found[".".join(parts)] = path
    return found


def _declares_all(path: Path) -> bool:
    tree = ast.parse(path.read_text())
    targets = [t for node in tree.body if isinstance(node, ast.Assign) for t in node.targets]
    targets += [node.target for node in tree.body if isinstance(node, ast.AnnAssign)]
    return any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets)


@pytest.mark.parametrize(("module_name", "names"), PUBLIC_NAMES.items(), ids=list(PUBLIC_NAMES))
def test_a_modules_public_names_are_exactly_the_pinned_ones(module_name: str, names: list[str]) -> None:
    """`__all__` is the pinned list, in its sorted order, and every name in it exists in the module."""
    module = importlib.import_module(module_name)
    assert module.__all__ == names
    assert [name for name in names if not hasattr(module, name)] == []


def test_every_public_module_declares_all() -> None:
    """A new public module without `__all__` fails here; so does one of `AWAITING_ALL` that gained one
    (move it into `PUBLIC_NAMES`)."""
    missing = {name for name, path in _public_modules().items() if not _declares_all(path)}
    assert missing == AWAITING_ALL


def test_the_table_names_only_real_public_modules() -> None:
    """A row for a module that was renamed or removed (or made private) fails instead of lingering."""
    assert set(PUBLIC_NAMES) - set(_public_modules()) == set()
