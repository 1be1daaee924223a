"""The agent runtime: the run loop, tools, the system prompt, the terminal front end."""

from noted.agent.agent import Agent
from noted.agent.events import (
    ContentDelta,
    RunCompleted,
    RunEvent,
    RunStarted,
    ToolCallCompleted,
    ToolCallStarted,
)
from noted.agent.tools import Tool

__all__ = [
    "Agent",
    "ContentDelta",
    "RunCompleted",
    "RunEvent",
    "RunStarted",
    "Tool",
    "ToolCallCompleted",
    "ToolCallStarted",
]
