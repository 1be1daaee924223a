"""A scripted model that holds one answer until the test lets it go: the agent's answer to
one message waits (without blocking the loop the model's calls share) while the test
changes the store under the run; other messages are answered "Noted." at once, and the
memory manager and the summarizer answer too (one memory per turn, "User said: ...")."""

from __future__ import annotations

import asyncio
import json
import threading

from noted.errors import ModelError
from noted.models import Message, ToolDefinition
from noted.testing import FunctionModel

MANAGER = "You maintain the long-term memory"
SUMMARIZER = "You keep a running summary"


class HeldAnswer:
    """``model`` answers the message ``held`` once :attr:`release` is set (with a
    :class:`~noted.errors.ModelError` when ``fail``); :attr:`asked` is set when that answer
    was asked for."""

    def __init__(self, held: str, *, fail: bool = False) -> None:
        self.held = held
        self.fail = fail
        self.asked = threading.Event()
        self.release = threading.Event()
        self.model = FunctionModel(self._answer, id="held")

    async def _answer(self, messages: list[Message], tools: list[ToolDefinition]) -> str:
        system = messages[0].content or ""
        if system.startswith(MANAGER):
            said = (messages[-1].content or "").split("user: ")[1].split("\n")[0]
            op = {"op": "add", "id": None, "memory": f"User said: {said}", "topics": []}
            return json.dumps({"operations": [op]})
        if system.startswith(SUMMARIZER):
            return json.dumps({"summary": "a chat", "topics": []})
        if messages[-1].content == self.held:
            self.asked.set()
            await asyncio.to_thread(self.release.wait, 30)
            if self.fail:
                raise ModelError("the model went away")
        return "Noted."
