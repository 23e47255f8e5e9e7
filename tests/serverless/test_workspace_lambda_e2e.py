"""Lambda with its files in S3: each invocation's container is a fresh interpreter with an empty
/tmp, so a file can only reach the next one through the bucket (a real moto server here)."""

from __future__ import annotations

from pathlib import Path

from agentkeep.testing.mock_llm import MockLLM, Reply
from tests.serverless.conftest import function_env
from tests.serverless.support import LambdaProcess, body_of, http_event
from tests.support.cli import make_key
from tests.support.s3 import fresh_bucket, s3_env
from tests.support.services import fresh_postgres_database
from tests.support.workspace import CROSS_SCOPE, WORKSPACE_AGENT, tool_answer

SECRET = "written-in-container-one-3b9d"


def test_a_file_written_in_one_invocation_is_read_in_the_next(
    mock_llm: MockLLM, tmp_path: Path, s3_endpoint: str
) -> None:
    """Container one's run writes notes.md with write_file and is gone; container two, with its own
    empty local workspace, reads it back in the same session and lists it on the files route; bob's
    run in a session of the same name does not find it; neither container left a file on its disk."""
    with fresh_postgres_database() as url:
        alice, bob = make_key(url, "alice"), make_key(url, "bob")
        storage = s3_env(s3_endpoint, fresh_bucket(s3_endpoint))

        def container(n: int) -> LambdaProcess:
            local = tmp_path / f"tmp-{n}"
            env = function_env(mock_llm, url, WORKSPACE_AGENT, AGENTKEEP_WORKSPACE_DIR=str(local), **storage)
            return LambdaProcess(env, tmp_path)

        def run(lambda_: LambdaProcess, key: str, tool: str, args: dict[str, str]) -> str:
            mock_llm.enqueue(Reply.tool_call(tool, args), Reply.text("done"))
            sent = len(mock_llm.requests)
            body = {"session_id": "lam", "message": f"use {tool}"}
            response = lambda_.invoke(http_event("function_url", "POST", "/v1/runs", body, key=key))
            assert response["statusCode"] == 200, response
            return tool_answer(mock_llm.requests[sent:])

        with container(1) as first:
            assert "wrote" in run(first, alice, "write_file", {"path": "notes.md", "content": SECRET})
        with container(2) as second:
            assert run(second, alice, "read_file", {"path": "notes.md"}) == SECRET
            listing = body_of(second.invoke(http_event("http_v2", "GET", "/v1/sessions/lam/files", key=alice)))
            assert [f["path"] for f in listing["files"]] == ["notes.md"]
            answer = run(second, bob, "read_file", {"path": "notes.md"})
            CROSS_SCOPE.attempt(answer, SECRET, "read_file from bob on Lambda")
        assert [p for p in tmp_path.glob("tmp-*/**/*") if p.is_file()] == []
