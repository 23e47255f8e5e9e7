"""agentkeep: a production runtime for Pydantic AI agents.

from agentkeep import AgentApp, RunInfo   # an agent with its deps and lifespan (agentkeep.apps)
"""

from agentkeep.apps import AgentApp, RunInfo

__version__ = "0.1.0"

__all__ = ["AgentApp", "RunInfo", "__version__"]
