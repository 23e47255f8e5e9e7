"""Agents with a structured `output_type` (a Pydantic model), one of them with an output validator.

city       answers with a `City`
census     answers with a `City` whose population must be positive: a negative one is sent back
           to the model (a `ModelRetry`), so its first attempt is discarded
writer     answers with text, refusing an answer that starts with "draft"
"""

from pydantic import BaseModel
from pydantic_ai import Agent, ModelRetry, RunContext


class City(BaseModel):
    name: str
    population: int
    tags: list[str] = []


city = Agent("openai-chat:mock", name="city", output_type=City, instructions="Describe the city asked about.")
census = Agent("openai-chat:mock", name="census", output_type=City, instructions="Count the city's people.")
writer = Agent("openai-chat:mock", name="writer", instructions="Write the final answer.")


@census.output_validator
def positive(ctx: RunContext[None], found: City) -> City:
    if not ctx.partial_output and found.population < 0:
        raise ModelRetry("a population cannot be negative: count again")
    return found


@writer.output_validator
def final_only(ctx: RunContext[None], answer: str) -> str:
    if not ctx.partial_output and answer.startswith("draft"):
        raise ModelRetry("that was a draft: give the final answer")
    return answer


agents = {"city": city, "census": census, "writer": writer}
