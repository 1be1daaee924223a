"""The basic set-up: connect a database, enable memory, and read the memories back.

    NOTED_MODEL=openai:gpt-4o-mini scripts/uv.sh run python examples/basic_memory_agent.py

Memories go to the table named by ``memory_table`` (created on first use; the default is
``noted_memories``).
"""

from _model import example_model

from noted import Agent, SqliteDb

db = SqliteDb(db_file="tmp/agent.db", memory_table="my_memories", create_dirs=True)

agent = Agent(
    model=example_model("openai:gpt-4o-mini"),
    db=db,
    enable_user_memories=True,
)

agent.print_response("My name is Sarah and I like to swim.", user_id="sarah@example.com")
agent.wait_for_memories()

# Retrieve the memories about the user, e.g. to show a profile or to debug
memories = agent.get_user_memories(user_id="sarah@example.com")
print("Memories about Sarah:")
for m in memories:
    print(f"- {m.memory} {m.topics}")
