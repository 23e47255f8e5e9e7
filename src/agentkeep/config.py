"""Settings, read once.

Sources, strongest first: CLI flags (passed as init arguments), the environment (`AGENTKEEP_*`),
a `.env` file, files in `/run/secrets/`, `agentkeep.toml`, then the defaults below.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

SECRETS_DIR = Path("/run/secrets")
TOML_FILE = "agentkeep.toml"


def _env_alias(name: str, *extra: str) -> AliasChoices:
    return AliasChoices(f"AGENTKEEP_{name}", f"agentkeep_{name.lower()}", name.lower(), *extra)


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
    log_format: Literal["json", "console"] = Field("json", description="JSON lines or a console view.")
    auth: Literal["auto", "required", "off"] = Field(
        "auto", description="API keys: required, off, or auto (required unless bound to loopback)."
    )
    rate_limit: str = Field("60/minute", description="Per API key, or per client address with auth off.")
    max_message_chars: int = Field(10_000, ge=1, description="Longest accepted message.")
    max_body_bytes: int = Field(1_048_576, ge=1, description="Largest accepted request body.")
    max_concurrent_runs: int = Field(100, ge=1, description="Per process; above it new runs get 503.")
    drain_timeout_s: float = Field(30.0, ge=0, description="Graceful shutdown drain.")
    run_timeout_s: float = Field(300.0, gt=0, description="Deadline of one run.")
    model_request_timeout_s: float = Field(120.0, gt=0, description="Deadline of one model request.")
    max_model_requests: int = Field(50, ge=1, description="Cap on model requests per run.")
    breaker_failures: int = Field(5, ge=1, description="Consecutive failures that open a breaker.")
    breaker_reset_s: float = Field(60.0, gt=0, description="Open time before a half-open trial.")
    budget_run_usd: float | None = Field(None, ge=0, description="Hard cap per run.")
    budget_session_usd: float | None = Field(None, ge=0, description="Hard cap per session.")
    budget_user_daily_usd: float | None = Field(None, ge=0, description="Hard cap per user per UTC day.")
    budget_alerts_usd: str | None = Field(None, description="Comma list of alert thresholds.")
    alert_webhook_url: str | None = Field(None, description="Receives a JSON POST per threshold crossing.")
    prices_file: Path | None = Field(None, description="Price overrides, JSON or TOML.")
    workspace_dir: Path = Field(Path("./data/workspace"), description="Root of the file tools.")
    webhook_secret: SecretStr | None = Field(None, description="HMAC key signing completion webhooks.")
    run_retention_days: float = Field(7.0, gt=0, description="Finished runs are pruned after this.")
    recovery_s: float = Field(60.0, gt=0, description="A dead worker's runs are taken over within this.")
    target: str | None = Field(None, description="The agent for agentkeep.serverless handlers.")
    cors_origins: str | None = Field(None, description="Comma list of allowed CORS origins.")

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.strip().lower()
        if level not in {"debug", "info", "warning", "error", "critical"}:
            raise ValueError(f"unknown log level {value!r}")
        return level

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
        values += [v for k, v in os.environ.items() if k.endswith(("_API_KEY", "_TOKEN", "_SECRET")) and v]
        return [v for v in values if len(v) >= 6]


def load_settings(**overrides: Any) -> Settings:
    """Read the settings once; `overrides` are CLI flags, which win over everything else."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})
