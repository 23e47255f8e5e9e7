"""Safe tools for agents: SSRF-safe fetch, workspace-jailed files, sandboxed Python.

Each public function is a plain function a Pydantic AI agent takes as a tool; its docstring is
the description the model reads:

    from pydantic_ai import Agent
    from agentkeep.tools import fetch_url, list_files, read_file, run_python, write_file

    agent = Agent("openai:gpt-4o-mini", tools=[fetch_url, read_file, write_file, list_files, run_python])

They read their limits from the settings (AGENTKEEP_WORKSPACE_DIR or _URL, AGENTKEEP_WORKSPACE_SCOPE,
AGENTKEEP_FETCH_*, AGENTKEEP_FILE_MAX_BYTES, AGENTKEEP_SANDBOX_*) on first use, and act for the run
they are called in (`tools.scope`). `Fetcher`, `Workspace` (on disk; `tools.objects.ObjectWorkspace`
on S3) and `Sandbox` are the same tools with explicit configuration. A refusal or failure raises `ToolRefused` /
`ToolFailure` (Pydantic AI `ToolFailed`s): the model sees the one-line reason and the run goes on.
"""

from agentkeep.tools._errors import FileMissing, ToolFailure, ToolRefused
from agentkeep.tools.fetch import Fetcher, FetchPolicy, FetchResult, fetch_url
from agentkeep.tools.files import Workspace, list_files, read_file, write_file
from agentkeep.tools.sandbox import RunResult, Sandbox, SandboxLimits, run_python
from agentkeep.tools.workspace import BaseWorkspace, FileInfo

__all__ = [
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
]
