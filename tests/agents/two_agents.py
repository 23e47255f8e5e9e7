"""Two agents and no `agents` dict: serving this file needs an explicit :ATTR."""

from pydantic_ai import Agent
from pydantic_ai.models.test import TestModel

first = Agent(TestModel(), name="first")
second = Agent(TestModel(), name="second")
