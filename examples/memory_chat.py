"""Chat in the terminal with an agent that learns facts about you and keeps them.

    NOTED_MODEL=openai:gpt-4o-mini scripts/uv.sh run python examples/memory_chat.py

Try: "I love Italian food and I'm learning Spanish", then Ctrl-C, run it again (a new
session, the same user) and ask "What do you know about me?".
"""

from _model import example_model

from noted import Agent, SqliteDb

db = SqliteDb(db_file="tmp/memory_chat.db", create_dirs=True)

agent = Agent(
    name="Assistant",
    model=example_model("openai:gpt-4o-mini"),
    instructions="You are a helpful assistant. Be concise.",
    db=db,
    user_id="demo-user",  # fixed user = memories persist
    enable_user_memories=True,  # extract and store facts about user
    add_history_to_context=True,
    num_history_runs=5,
    add_datetime_to_context=True,
    markdown=True,
)

agent.cli_app(stream=True)
