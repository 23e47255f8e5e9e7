"""`agentkeep init --target lambda`: the SAM template passes cfn-lint and points at these handlers."""

from __future__ import annotations

import importlib
import re
import subprocess
from pathlib import Path

import pytest

from tests.deploy.support import require_tool
from tests.support.cli import run_cli


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("bot")
    (directory / "agent.py").write_text("from pydantic_ai import Agent\n\nagent = Agent('test')\n")
    result = run_cli("init", "--target", "lambda", str(directory), cwd=directory)
    assert result.returncode == 0, result.stderr
    return directory


def test_the_sam_template_passes_cfn_lint(project: Path) -> None:
    """cfn-lint, with the SAM transform and its informational checks, finds nothing."""
    tool = require_tool("cfn-lint", "the cfn-lint wheel, in the dev extra")
    result = subprocess.run(
        [tool, "--include-checks", "I", "--", str(project / "template.yaml")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_functions_run_the_handlers_agentkeep_serverless_has(project: Path) -> None:
    """The API function and the scheduled worker name `handler` and `worker_handler`, which exist."""
    template = (project / "template.yaml").read_text()
    commands = re.findall(r'Command: \["([\w.]+)"\]', template)
    assert commands == ["agentkeep.serverless.handler", "agentkeep.serverless.worker_handler"]
    assert 'CMD ["agentkeep.serverless.handler"]' in (project / "Dockerfile.lambda").read_text()
    for command in commands:
        module, _, name = command.rpartition(".")
        assert callable(getattr(importlib.import_module(module), name))
    assert "Schedule: rate(1 minute)" in template and "AGENTKEEP_TARGET: /var/task/agent.py" in template


def _workspace_problems(text: str) -> list[str]:
    """What is wrong with the template's workspace bucket and its grants; cfn-lint checks no IAM
    action names, condition keys or deletion policies, so this reads them itself."""
    from cfnlint.decode import decode_str

    template, errors = decode_str(text)
    assert not errors, errors
    problems: list[str] = []
    resources = template["Resources"]
    policies = {p["PolicyName"]: p for p in resources["FunctionRole"]["Properties"]["Policies"]}
    statements = policies["use-workspace-prefix"]["PolicyDocument"]["Statement"]
    objects, listing = statements
    if objects["Action"] != ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]:
        problems.append(f"object actions: {objects['Action']}")
    if objects["Resource"] != {"Fn::Sub": "${WorkspaceBucket.Arn}/${WorkspacePrefix}/*"}:
        problems.append(f"object resource: {objects['Resource']}")
    if listing["Action"] != "s3:ListBucket" or listing["Resource"] != {"Fn::GetAtt": ["WorkspaceBucket", "Arn"]}:
        problems.append(f"listing: {listing['Action']} on {listing['Resource']}")
    if listing.get("Condition") != {"StringLike": {"s3:prefix": [{"Fn::Sub": "${WorkspacePrefix}/*"}]}}:
        problems.append(f"listing condition: {listing.get('Condition')}")
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    if variables.get("AGENTKEEP_WORKSPACE_URL") != {"Fn::Sub": "s3://${WorkspaceBucket}/${WorkspacePrefix}"}:
        problems.append(f"AGENTKEEP_WORKSPACE_URL: {variables.get('AGENTKEEP_WORKSPACE_URL')}")
    bucket = resources["WorkspaceBucket"]
    if bucket.get("DeletionPolicy") != "Retain" or bucket.get("UpdateReplacePolicy") != "Retain":
        problems.append("the bucket is not kept when the stack is deleted or replaced")
    if set(bucket["Properties"]["PublicAccessBlockConfiguration"].values()) != {True}:
        problems.append("the bucket is not closed to the public")
    every_action = [
        action
        for policy in policies.values()
        for statement in policy["PolicyDocument"]["Statement"]
        for action in (statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]])
    ]
    problems += [f"wildcard action {action}" for action in every_action if action.endswith("*")]
    return problems


def test_the_functions_may_use_the_workspace_prefix_of_their_bucket_and_nothing_else(project: Path) -> None:
    """The template creates a private bucket kept past the stack, points AGENTKEEP_WORKSPACE_URL at
    its prefix, and grants the functions get, put, delete under that prefix and a listing of it only."""
    assert _workspace_problems((project / "template.yaml").read_text()) == []


@pytest.mark.parametrize(
    ("change", "found"),
    [
        (("- s3:DeleteObject\n", "- s3:DeleteObjects\n"), "object actions"),
        (("s3:prefix:", "s3:prefixx:"), "listing condition"),
        (("- s3:GetObject\n", "- s3:*\n"), "wildcard action s3:*"),
        (("    DeletionPolicy: Retain\n    UpdateReplacePolicy: Retain\n", ""), "not kept"),
    ],
)
def test_the_structural_check_catches_what_cfn_lint_lets_through(
    project: Path, change: tuple[str, str], found: str
) -> None:
    """The check is real: a misspelt action, a misspelt condition key, a wildcard and a bucket
    deleted with the stack each fail it (cfn-lint passes all four)."""
    text = (project / "template.yaml").read_text()
    assert change[0] in text
    problems = _workspace_problems(text.replace(change[0], change[1], 1))
    assert any(found in problem for problem in problems), problems
