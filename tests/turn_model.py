"""A scripted model for the deployment tests: the agent answers "Noted."; the memory
manager, after a short pause (as a real model call takes), adds one memory per turn,
"User said: <the message>"."""

from __future__ import annotations

import json
import time

from noted.models import Message, ToolDefinition
from noted.testing import FunctionModel

MANAGER = "You maintain the long-term memory"


def reply(messages: list[Message], tools: list[ToolDefinition], pause: float = 0.02) -> str:
    if not (messages[0].content or "").startswith(MANAGER):
        return "Noted."
    time.sleep(pause)
    prompt = messages[-1].content or ""
    chat = prompt.split("<conversation>")[1].split("</conversation>")[0]
    said = chat.strip().splitlines()[0].removeprefix("user: ").strip('"')
    op = {"op": "add", "id": None, "memory": f"User said: {said}", "topics": []}
    return json.dumps({"operations": [op]})


def turn_model(model_id: str = "turns") -> FunctionModel:
    return FunctionModel(reply, id=model_id)


def slow_turn_model(model_id: str = "slow") -> FunctionModel:
    """The same, with a memory manager that takes two seconds."""
    return FunctionModel(lambda messages, tools: reply(messages, tools, 2.0), id=model_id)
