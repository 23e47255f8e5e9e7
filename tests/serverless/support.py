"""Helpers for the Lambda tests: a container as a subprocess, and AWS's example events."""

from __future__ import annotations

import base64
import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
EVENTS = HERE / "events"
SOURCES = ("rest_v1", "http_v2", "function_url")


class LambdaProcess:
    """One Lambda container: a fresh interpreter that keeps its module state across invocations."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTKEEP_", "AWS_LAMBDA_"))}
        full_env.update({"PYTHONUNBUFFERED": "1", "AGENTKEEP_LOG_LEVEL": "warning", **env})
        self.stderr_path = cwd / f"lambda-{id(self)}.err"
        self._stderr = self.stderr_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "lambda_process.py")],
            cwd=cwd,
            env=full_env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
        )

    def invoke(self, event: dict[str, Any], *, handler: str = "handler", remaining_ms: int = 900_000) -> Any:
        """The handler's return value; `AssertionError` with its stderr if it raised or died."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        request = {"handler": handler, "event": event, "remaining_ms": remaining_ms}
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, f"the Lambda process died: {self.stderr()}"
        answer = json.loads(line)
        assert "error" not in answer, f"{answer['error']}\n{self.stderr()}"
        return answer["result"]

    def invoke_raw(self, event: dict[str, Any], *, handler: str = "handler") -> dict[str, Any]:
        """The whole answer: {"result": ...} or {"error": "Type: message"}."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"handler": handler, "event": event}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, f"the Lambda process died: {self.stderr()}"
        answer: dict[str, Any] = json.loads(line)
        return answer

    def stderr(self) -> str:
        self._stderr.flush()
        return self.stderr_path.read_text(errors="replace")

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._stderr.close()

    def __enter__(self) -> LambdaProcess:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def http_event(
    source: str,
    method: str,
    path: str,
    body: Any = None,
    *,
    key: str | None = None,
    raw_body: str | None = None,
    base64_body: bool = False,
    query: dict[str, list[str]] | None = None,
) -> dict[str, Any]:
    """AWS's example event for `source`, re-aimed at `method path` with this body and bearer key."""
    event: dict[str, Any] = copy.deepcopy(json.loads((EVENTS / f"{source}.json").read_text()))
    text = raw_body if raw_body is not None else (None if body is None else json.dumps(body))
    encoded = base64_body and text is not None
    payload = base64.b64encode(text.encode()).decode() if encoded and text is not None else text
    auth = {"authorization": f"Bearer {key}"} if key else {}
    if source == "rest_v1":
        event["httpMethod"], event["path"] = method, path
        event["requestContext"]["httpMethod"] = method
        event["requestContext"]["path"] = path
        for name, value in {"content-type": "application/json", **auth}.items():
            event["headers"][name] = value
            event["multiValueHeaders"][name] = [value]
        event["multiValueQueryStringParameters"] = query
        event["queryStringParameters"] = {k: v[-1] for k, v in query.items()} if query else None
    else:
        event["rawPath"] = path
        event["requestContext"]["http"]["method"] = method
        event["requestContext"]["http"]["path"] = path
        event["headers"].update({"content-type": "application/json", **auth})
        pairs = [f"{k}={v}" for k, values in (query or {}).items() for v in values]
        event["rawQueryString"] = "&".join(pairs)
        event["queryStringParameters"] = {k: ",".join(v) for k, v in query.items()} if query else None
    event["body"], event["isBase64Encoded"] = payload, encoded
    return event


def body_of(response: dict[str, Any]) -> Any:
    """The JSON body of a Lambda HTTP response."""
    text = response["body"]
    if response.get("isBase64Encoded"):
        text = base64.b64decode(text).decode()
    return json.loads(text)


def header(response: dict[str, Any], name: str) -> str | None:
    """A response header, from either response shape."""
    if "multiValueHeaders" in response:
        values = response["multiValueHeaders"].get(name.lower())
        return ", ".join(values) if values else None
    value: str | None = response["headers"].get(name.lower())
    return value
