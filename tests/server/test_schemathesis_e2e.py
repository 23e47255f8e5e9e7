"""Schemathesis against the running server's own OpenAPI: no 5xx, every error in the envelope, auth enforced.

Schemathesis generates valid and invalid requests for every operation the schema lists (coverage,
fuzzing and stateful phases, where runs it creates feed the run and session routes), sends them
with an API key to a server that requires keys, and checks each response:

    not_a_server_error   no 5xx
    ignored_auth         the same request without the key is refused
    error_envelope       every 4xx/5xx is `{"error": {"type", "message"}}` (schemathesis_hooks.py)

The seed is fixed so a failure reproduces; the example count keeps the run to seconds.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from agentkeep.testing.mock_llm import MockLLM
from tests.server.conftest import MOCK_AGENT, server_env
from tests.support.cli import make_key
from tests.support.server import ServerProcess

HOOKS = Path(__file__).with_name("schemathesis_hooks.py")
_SEED = "20240601"
_EXAMPLES = "25"


def test_generated_requests_get_no_5xx_and_every_error_is_an_envelope(tmp_path: Path) -> None:
    """Hundreds of generated requests over every operation pass the three checks; the server logs no crash."""
    url = f"sqlite:///{tmp_path / 'agentkeep.db'}"
    key = make_key(url, "fuzzer")
    with MockLLM() as mock:
        env = server_env(
            mock,
            url,
            AGENTKEEP_AUTH="required",
            AGENTKEEP_RATE_LIMIT="1000000/minute",
            AGENTKEEP_READ_RATE_LIMIT="1000000/minute",
        )
        with ServerProcess(MOCK_AGENT, tmp_path, env=env) as server:
            result = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "schemathesis.cli",
                    "run",
                    f"{server.url}/openapi.json",
                    "--header",
                    f"Authorization: Bearer {key}",
                    "--checks",
                    "not_a_server_error,ignored_auth,error_envelope",
                    "--max-examples",
                    _EXAMPLES,
                    "--seed",
                    _SEED,
                    "--request-timeout",
                    "30",
                    "--no-color",
                ],
                cwd=tmp_path,
                env={**_plain_env(), "SCHEMATHESIS_HOOKS": str(HOOKS)},
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
            logs = server.output()
    report = result.stdout[-6000:] + result.stderr[-2000:]
    assert result.returncode == 0, report
    assert "Tested: " in result.stdout and " passed" in result.stdout, report
    assert '"unhandled_error"' not in logs  # the server's catch-all for an exception no handler knew


def _plain_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("AGENTKEEP_", "SCHEMATHESIS_"))}
