"""User memory in PostgreSQL: facts learned in one session are known in the next.

    NOTED_MODEL=openai:gpt-4o-mini \
    NOTED_DB_URL=postgresql+psycopg://ai:ai@localhost:5532/ai \
    scripts/uv.sh run python examples/postgres_memory.py

Tables are created on first use (``noted_memories``, ``noted_sessions`` and their
companions); look at them with ``SELECT * FROM noted_memories WHERE user_id = 'demo-user'``.
"""

import os

from _model import example_model

from noted import Agent, Memory
from noted.db import PostgresDb

model = example_model("openai:gpt-4o-mini")
db = PostgresDb(
    db_url=os.environ.get("NOTED_DB_URL", "postgresql+psycopg://ai:ai@localhost:5532/ai")
)


def assistant() -> Agent:
    return Agent(
        model=model,
        instructions="You are a helpful assistant. Be concise.",
        db=db,
        user_id="demo-user",  # a fixed user: the memories persist across sessions
        enable_user_memories=True,  # extract and store facts about the user after each run
        add_history_to_context=True,
        num_history_runs=5,
    )


Memory(db=db).clear(user_id="demo-user")  # start the walkthrough from nothing
agent = assistant()
agent.print_response("I love Italian food. I'm learning Spanish.", session_id="first")
agent.print_response("My daughter's name is Emma", session_id="first")
agent.wait_for_memories()

# A new session (as after a restart): the history is new, the memories are not.
later = assistant()
later.print_response("What food do I like?", session_id="second")
print("Stored memories:")
for m in later.get_user_memories():
    print(f"- {m.memory} {m.topics}")
print(f"sessions: {[s.session_id for s in db.list_sessions(user_id='demo-user')]}")
