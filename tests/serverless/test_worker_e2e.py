"""Long work: a task longer than any one worker invocation completes across several, no step twice.

A task of six 0.4 s steps is submitted through `handler` (202 at once); `worker_handler` is then
invoked again and again in another container, each time with 3 s left, which after the worker's
reserve leaves time for about two or three steps. Each step appends to a side-effect file when it
starts and when it finishes, so a step executed twice, even cut short once, would be there twice.
"""

from __future__ import annotations

from pathlib import Path

from agentkeep.testing.mock_llm import MockLLM, Reply
from tests.serverless.conftest import function_env
from tests.serverless.support import HERE, LambdaProcess, body_of, http_event
from tests.support.cli import make_key
from tests.support.services import fresh_postgres_database

LONG_TASK = str(HERE / "long_task.py")
STEP_S = 0.4
REMAINING_MS = 3000
MAX_INVOCATIONS = 12


def _steps(side: Path) -> list[str]:
    return side.read_text().splitlines() if side.exists() else []


def _done(side: Path) -> int:
    return sum(line.startswith("done") for line in _steps(side))


def test_a_task_longer_than_one_invocation_completes_with_no_step_twice(mock_llm: MockLLM, tmp_path: Path) -> None:
    side = tmp_path / "side.txt"
    with fresh_postgres_database() as url:
        key = make_key(url, "dave")
        env = function_env(mock_llm, url, LONG_TASK, SIDE_EFFECT_FILE=str(side), STEP_S=str(STEP_S))
        with LambdaProcess(env, tmp_path) as api, LambdaProcess(env, tmp_path) as worker:
            idle = worker.invoke({}, handler="worker_handler")  # the cold start, before there is work
            assert idle["stopped_early"] and idle["steps_started"] == 0, idle
            accepted = api.invoke(http_event("function_url", "POST", "/v1/tasks/long", {"input": {}}, key=key))
            assert accepted["statusCode"] == 202, accepted
            run_id = body_of(accepted)["run_id"]
            per_invocation: list[int] = []
            status = "queued"
            for _ in range(MAX_INVOCATIONS):
                before = _done(side)
                report = worker.invoke({"source": "aws.events"}, handler="worker_handler", remaining_ms=REMAINING_MS)
                assert set(report) >= {"steps_started", "steps_refused", "stopped_early"}, report
                per_invocation.append(_done(side) - before)
                run = body_of(api.invoke(http_event("function_url", "GET", f"/v1/runs/{run_id}", key=key)))
                status = run["status"]
                if status in {"succeeded", "failed", "cancelled"}:
                    break
    assert status == "succeeded", (run, worker.stderr()[-3000:])
    assert run["output"] == "1,2,3,4,5,6"
    assert _steps(side) == [f"{what} {n}" for n in range(1, 7) for what in ("start", "done")], _steps(side)
    assert len([n for n in per_invocation if n]) >= 2 and max(per_invocation) < 6, per_invocation


def test_a_background_run_is_accepted_at_once_and_executed_by_the_worker(mock_llm: MockLLM, tmp_path: Path) -> None:
    """POST /v1/runs {background} through `handler`: 202, a run id and its Location, nothing executed;
    one `worker_handler` invocation executes it, and the function answers GET with its output."""
    with fresh_postgres_database() as url:
        key = make_key(url, "erin")
        env = function_env(mock_llm, url, LONG_TASK, SIDE_EFFECT_FILE=str(tmp_path / "side.txt"))
        with LambdaProcess(env, tmp_path) as api, LambdaProcess(env, tmp_path) as worker:
            before = mock_llm.request_count
            body = {"message": "hi", "background": True}
            accepted = api.invoke(http_event("http_v2", "POST", "/v1/runs", body, key=key))
            assert accepted["statusCode"] == 202, accepted
            run_id = body_of(accepted)["run_id"]
            assert accepted["headers"]["location"] == f"/v1/runs/{run_id}"
            assert mock_llm.request_count == before
            mock_llm.enqueue(Reply.text("done in the background"))
            report = worker.invoke({"source": "aws.events"}, handler="worker_handler", remaining_ms=60_000)
            assert report["stopped_early"], report
            run = body_of(api.invoke(http_event("rest_v1", "GET", f"/v1/runs/{run_id}", key=key)))
    assert run["status"] == "succeeded" and run["output"] == "done in the background", run


def test_an_agent_run_longer_than_one_invocation_sends_each_model_request_once(
    mock_llm: MockLLM, tmp_path: Path
) -> None:
    """A background run of six slow model requests (five tool calls between them), longer than one
    worker invocation: it succeeds, the model saw each request once, each tool ran once."""
    tools = tmp_path / "tools.log"
    with fresh_postgres_database() as url:
        key = make_key(url, "frank")
        env = function_env(mock_llm, url, TOOL_LOG=str(tools))
        with LambdaProcess(env, tmp_path) as api, LambdaProcess(env, tmp_path) as worker:
            worker.invoke({}, handler="worker_handler")  # the cold start, before there is work
            mock_llm.reset()
            slow = [Reply.tool_call("add", {"a": n, "b": 1}).with_latency(STEP_S) for n in range(5)]
            mock_llm.enqueue(*slow, Reply.text("all added").with_latency(STEP_S))
            body = {"message": "add three times", "background": True}
            run_id = body_of(api.invoke(http_event("function_url", "POST", "/v1/runs", body, key=key)))["run_id"]
            invocations = 0
            while invocations < MAX_INVOCATIONS:
                invocations += 1
                worker.invoke({}, handler="worker_handler", remaining_ms=REMAINING_MS)
                run = body_of(api.invoke(http_event("function_url", "GET", f"/v1/runs/{run_id}", key=key)))
                if run["status"] not in {"queued", "running"}:
                    break
    assert run["status"] == "succeeded" and run["output"] == "all added", (run, worker.stderr()[-3000:])
    assert invocations >= 2, "the run fitted in one invocation: the test proves nothing"
    assert mock_llm.request_count == 6
    assert tools.read_text().splitlines() == [f"add {n} 1" for n in range(5)]
