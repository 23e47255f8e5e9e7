"""How a tool says no.

A tool the model calls reports a problem by raising one of these. Both derive from Pydantic AI's
`ToolFailed`: inside an agent run the message becomes the tool's (failed) result, the model reads
it and adapts, and the run goes on. Unlike `ModelRetry` it does not spend the tool's retry budget,
so one refused URL cannot end a run; bound a model that keeps probing with the run's own limits
(AGENTKEEP_MAX_MODEL_REQUESTS). Called directly from Python they are ordinary exceptions to catch.

    ToolFailed              (pydantic_ai)
    └── ToolFailure         the tool could not do it: host down, bubblewrap absent, storage failing
        ├── FileMissing     the workspace has no such file (the files routes answer 404)
        └── ToolRefused     the request broke a safety rule and nothing was done
"""

from __future__ import annotations

from pydantic_ai.exceptions import ToolFailed


class ToolFailure(ToolFailed):
    """A tool could not do what was asked; `message` says why in one line."""


class ToolRefused(ToolFailure):
    """The request broke a safety rule (SSRF, workspace jail, sandbox) and was not carried out."""


class FileMissing(ToolFailure):
    """The workspace has no file (or folder) at the path asked for."""
