"""Settings, read once.

Sources, strongest first: CLI flags (passed as init arguments), the environment (`AGENTKEEP_*`),
a `.env` file, files in `/run/secrets/`, `agentkeep.toml`, then the defaults below.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

__all__ = ["Schedule", "Settings", "load_settings", "setting_name"]

SECRETS_DIR = Path("/run/secrets")
TOML_FILE = "agentkeep.toml"


def _env_alias(name: str, *extra: str) -> AliasChoices:
    return AliasChoices(f"AGENTKEEP_{name}", f"agentkeep_{name.lower()}", name.lower(), *extra)


class Schedule(BaseModel):
    """One `[[schedules]]` entry of agentkeep.toml: run an agent with a fixed message, or a task, on a cron."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$", description="Unique name.")
    cron: str = Field(description="5 fields (minute first), or 6 with seconds first; UTC unless `timezone`.")
    agent: str | None = Field(None, description="The agent to run (default: the first) with `message`.")
    message: str | None = Field(None, description="What the agent is told at each tick.")
    task: str | None = Field(None, description="Or: the task to run, with `input`.")
    input: dict[str, Any] = Field(default_factory=dict, description="The task's input.")
    user: str = Field("anonymous", description="The user the runs belong to (and are visible to).")
    session_id: str | None = Field(None, description="Continue this session at every tick; default: a new one.")
    timezone: str | None = Field(None, description="IANA time zone of the cron, e.g. Europe/Paris.")

    @model_validator(mode="after")
    def _one_kind(self) -> Schedule:
        if (self.message is None) == (self.task is None):
            raise ValueError(f"schedule {self.name!r} needs either `message` (an agent run) or `task`")
        return self


class Settings(BaseSettings):
    """Everything agentkeep can be told; see the README's configuration table."""

    model_config = SettingsConfigDict(
        env_prefix="AGENTKEEP_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        secrets_dir=str(SECRETS_DIR) if SECRETS_DIR.is_dir() else None,
        populate_by_name=True,
        toml_file=TOML_FILE,
    )

    database_url: SecretStr = Field(
        SecretStr("sqlite:///./data/agentkeep.db"),
        description="Sessions, runs, ledger, keys and durable state; postgresql://… for a fleet.",
    )
    redis_url: SecretStr | None = Field(
        None, description="When set, rate limits and circuit breakers are shared through Redis."
    )
    model: str | None = Field(None, description="Overrides every agent's model (e.g. local:smollm2).")
    log_level: str = Field(
        "info",
        validation_alias=_env_alias("LOG_LEVEL", "LOG_LEVEL"),
        description="debug, info, warning or error.",
    )
    log_format: Literal["auto", "json", "console"] = Field(
        "auto", description="JSON lines, a console view, or auto: the console view on a terminal, JSON otherwise."
    )
    auth: Literal["auto", "required", "off"] = Field(
        "auto", description="API keys: required, off, or auto (required unless bound to loopback)."
    )
    rate_limit: str = Field(
        "60/minute",
        description="Runs per API key (per client address with auth off): POST routes that start or resume runs.",
    )
    read_rate_limit: str = Field("600/minute", description="Every other /v1 request, per API key or client address.")
    max_message_chars: int = Field(10_000, ge=1, description="Longest accepted message.")
    max_body_bytes: int = Field(1_048_576, ge=1, description="Largest accepted request body.")
    max_concurrent_runs: int = Field(100, ge=1, description="Per process; above it new runs get 503.")
    drain_timeout_s: float = Field(30.0, ge=0, description="Graceful shutdown drain.")
    run_timeout_s: float = Field(300.0, gt=0, description="Deadline of one run.")
    approval_timeout_s: float = Field(
        86_400.0, gt=0, description="A run waiting for a tool decision is cancelled (its calls denied) after this."
    )
    model_request_timeout_s: float = Field(120.0, gt=0, description="Deadline of one model request.")
    max_model_requests: int = Field(50, ge=1, description="Cap on model requests per run.")
    max_tokens_per_run: int | None = Field(
        None, ge=1, description="Input + output tokens one run may use, its sub-agents' included (iteration_limit)."
    )
    max_tool_calls_per_run: int | None = Field(
        None, ge=1, description="Tool calls one run may make, its sub-agents' included (iteration_limit)."
    )
    breaker_failures: int = Field(5, ge=1, description="Consecutive failures that open a breaker.")
    breaker_reset_s: float = Field(60.0, gt=0, description="Open time before a half-open trial.")
    budget_run_usd: float | None = Field(None, ge=0, description="Hard cap per run.")
    budget_session_usd: float | None = Field(None, ge=0, description="Hard cap per session.")
    budget_user_daily_usd: float | None = Field(None, ge=0, description="Hard cap per user per UTC day.")
    budget_alerts_usd: str | None = Field(None, description="Comma list of alert thresholds.")
    budget_max_tokens: int = Field(
        4096, ge=1, description="max_tokens set on a model request that has none, when a budget applies."
    )
    budget_reservation_ttl_s: float = Field(
        60.0, gt=0, description="A budget reservation of a process that died is released after this."
    )
    alert_webhook_url: str | None = Field(None, description="Receives a JSON POST per threshold crossing.")
    prices_file: Path | None = Field(None, description="Price overrides, JSON or TOML.")
    workspace_dir: Path = Field(Path("./data/workspace"), description="Root of the file tools on local disk.")
    workspace_url: str | None = Field(
        None,
        description="Object storage for the file tools instead of workspace_dir: s3://bucket/prefix (AWS_* variables).",
    )
    workspace_scope: Literal["session", "user", "shared"] = Field(
        "session", description="What one run's file tools see: its session's folder, its user's, or one shared folder."
    )
    file_max_bytes: int = Field(1_048_576, ge=1, description="Largest file read_file returns or write_file writes.")
    fetch_allow_hosts: str | None = Field(None, description="Comma list of the only hosts fetch_url may reach.")
    fetch_deny_hosts: str | None = Field(None, description="Comma list of hosts (and subdomains) fetch_url refuses.")
    fetch_ports: str = Field("80,443", description="Comma list of ports fetch_url may connect to.")
    fetch_max_bytes: int = Field(1_048_576, ge=1, description="Response bytes fetch_url keeps; the rest is cut.")
    fetch_timeout_s: float = Field(10.0, gt=0, description="Deadline of one fetch_url call, redirects included.")
    sandbox_timeout_s: float = Field(10.0, gt=0, description="Wall-clock deadline of one run_python call.")
    sandbox_memory_mb: int = Field(512, ge=64, description="Address-space limit of one run_python call.")
    webhook_secret: SecretStr | None = Field(None, description="HMAC key signing completion webhooks.")
    run_retention_days: float = Field(7.0, gt=0, description="Finished runs are pruned after this.")
    recovery_s: float = Field(60.0, gt=0, description="A dead worker's runs are taken over within this.")
    worker_concurrency: int | None = Field(
        None, ge=1, description="Background runs one process executes at once; default: max_concurrent_runs."
    )
    user_concurrency: int = Field(8, ge=1, description="Background runs of one user executing at once, fleet-wide.")
    webhook_allow_networks: str | None = Field(
        None, description="Comma list of networks completion webhooks may reach although private (10.0.0.0/8)."
    )
    executor_id: str | None = Field(None, description="This process's name to the durable engine; default host:port.")
    app_version: str | None = Field(
        None, description="Version of the agent code for durable runs; default: a hash of the TARGET file."
    )
    target: str | None = Field(None, description="The agent for agentkeep.serverless handlers.")
    cors_origins: str | None = Field(None, description="Comma list of allowed CORS origins.")
    schedules: list[Schedule] = Field(
        default_factory=list, description="Cron runs ([[schedules]] in agentkeep.toml), once per tick per fleet."
    )
    otel_endpoint: str | None = Field(
        None,
        validation_alias=AliasChoices("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
        description="OpenTelemetry collector (OTLP/HTTP); when set, with the otel extra, every run is traced.",
    )
    telemetry: bool = Field(True, description="Per-run logs, metrics and stats; off only to measure their cost.")

    @field_validator("workspace_url")
    @classmethod
    def _object_store_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        bucket, _, _ = value.strip().removeprefix("s3://").partition("/")
        if not value.strip().startswith("s3://") or not bucket:
            raise ValueError("must look like s3://bucket/prefix")
        return value.strip()

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.strip().lower()
        if level not in {"debug", "info", "warning", "error", "critical"}:
            raise ValueError(f"unknown log level {value!r}")
        return level

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: SecretStr | None) -> SecretStr | None:
        # The URL itself is never repeated in the message: it may hold a password.
        if value is not None and not value.get_secret_value().startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("not a Redis URL: it starts with redis://, rediss:// or unix://")
        return value

    @field_validator("fetch_ports")
    @classmethod
    def _ports(cls, value: str) -> str:
        for port in (p.strip() for p in value.split(",") if p.strip()):
            if not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"{port!r} is not a port: write a comma list like 80,443")
        return value

    @field_validator("rate_limit", "read_rate_limit")
    @classmethod
    def _rate(cls, value: str) -> str:
        from limits import parse  # what the rate limiter reads it with; imported only to check it

        try:
            parse(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a rate limit: write it like 60/minute or 5/second") from None
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (
            init_settings,
            env_settings,
            dotenv_settings,
            file_secret_settings,
            TomlConfigSettingsSource(settings_cls),
        )

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.get_secret_value().startswith("sqlite")

    def secret_values(self) -> list[str]:
        """Every secret this process knows, for log redaction."""
        values = [
            s.get_secret_value() for s in (self.database_url, self.redis_url, self.webhook_secret) if s is not None
        ]
        secret_names = ("_API_KEY", "_TOKEN", "_SECRET", "_SECRET_ACCESS_KEY")  # the last: AWS_SECRET_ACCESS_KEY
        values += [v for k, v in os.environ.items() if k.endswith(secret_names) and v]
        return [v for v in values if len(v) >= 6]


def load_settings(**overrides: Any) -> Settings:
    """Read the settings once; `overrides` are CLI flags, which win over everything else."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})


def setting_name(field: str) -> str:
    """The name a user sets `field` by: `rate_limit` → AGENTKEEP_RATE_LIMIT; an alias as it is
    (OTEL_EXPORTER_OTLP_ENDPOINT); `schedules` → agentkeep.toml's [[schedules]]."""
    if field == "schedules":
        return f"{TOML_FILE} [[schedules]]"
    info = Settings.model_fields.get(field)
    alias = info.validation_alias if info is not None else None
    if isinstance(alias, AliasChoices) and isinstance(alias.choices[0], str):
        return alias.choices[0]
    return field if field.isupper() else f"AGENTKEEP_{field.upper()}"
