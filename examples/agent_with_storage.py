"""An agent with memories in one file and its sessions in another.

NOTED_MODEL=openai:gpt-4o-mini scripts/uv.sh run python examples/agent_with_storage.py
"""

from _model import example_model

from noted import Agent, Memory, SqliteDb

# Create memory storage
memory_db = SqliteDb(memory_table="memories", db_file="tmp/memory.db", create_dirs=True)
memory = Memory(db=memory_db)

# Create agent storage
agent_storage = SqliteDb(session_table="agent_sessions", db_file="tmp/agent_storage.db")

# Create agent with both memory and storage
agent = Agent(
    model=example_model("openai:gpt-4o"),
    memory=memory,
    db=agent_storage,
    enable_user_memories=True,
)

memory.clear(user_id="user@example.com")
agent.print_response("I love Italian food.", user_id="user@example.com")
agent.wait_for_memories()
print(f"memories: {[m.memory for m in memory.get_user_memories(user_id='user@example.com')]}")
sessions = agent_storage.list_sessions(user_id="user@example.com")
print(f"sessions: {len(sessions)}, runs: {sessions[0].run_count}")
