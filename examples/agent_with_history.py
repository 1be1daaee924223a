"""An agent that keeps the conversation: session history in SQLite, replayed to the model.

    scripts/uv.sh run python examples/agent_with_history.py         # two turns, the saved session
    scripts/uv.sh run python examples/agent_with_history.py --chat  # then chat in the terminal

Set NOTED_MODEL (for example ``ollama:llama3.2`` or ``openai:gpt-4o-mini``) to talk to a
real model; without it a scripted model answers, so the example runs offline.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from noted import Agent, SqliteDb
from noted.models import ChatModel
from noted.testing import ScriptedModel

DB = Path("tmp") / "agent.db"


def model() -> ChatModel | str:
    return os.environ.get("NOTED_MODEL") or ScriptedModel(
        [
            "Nice to meet you, Ava! Skiing is a great way to spend the winter.",
            "You told me your name is Ava and that you like to ski.",
            "Happy to keep chatting.",
        ]
    )


def main() -> None:
    agent = Agent(
        model=model(),
        db=SqliteDb(db_file=DB, create_dirs=True),
        user_id="ava",
        session_id="ski-trip",
        instructions="You are a friendly assistant. Keep answers short.",
        add_history_to_context=True,
        num_history_runs=5,
        markdown=True,
    )
    agent.print_response("My name is Ava and I like to ski.", stream=True)
    agent.print_response("What do you know about me?", stream=True)
    session = agent.db.get_session("ski-trip", "ava")
    assert session is not None
    print(f"session {session.session_id}: {session.run_count} runs saved in {DB}")
    if "--chat" in sys.argv[1:]:
        agent.cli_app(stream=True)


if __name__ == "__main__":
    main()
