"""What an agent with memory does on each turn, spelled out step by step.

    scripts/uv.sh run python examples/memory_turn_by_turn.py

Recall the session's history and the user's long-term facts, ask the model, record the
run in the session, and store a fact the user stated. The model here is a small
stand-in that looks for the user's name in what it is given, so the example runs offline.
"""

from noted import Memory, Message, SqliteDb, UserMemory
from noted.models import ModelRequest
from noted.sessions import RunResult, new_run_id
from noted.testing import FunctionModel


# --- A stand-in model: it uses the user's name when it can find it in the messages ---
def stand_in_logic(messages: list[Message], tools: object) -> str:
    user_name = "there"
    for m in messages:
        text = m.content or ""
        if "User's name is " in text:
            user_name = text.split("User's name is ")[1].split(".")[0]
            break
        if m.role == "user" and "my name is" in text.lower():
            user_name = text.lower().split("my name is ")[1].split(".")[0].capitalize()
    last_user_message = next((m.content or "" for m in reversed(messages) if m.role == "user"), "")
    if "what's my name" in last_user_message.lower():
        return f"Your name is {user_name}, I remember!"
    return f"Hello {user_name}! You said: '{last_user_message}'."


model = FunctionModel(stand_in_logic)

# 1. One SQLite file keeps both the sessions and the long-term memories
db = SqliteDb(db_file="tmp/my_agent_memory.db", create_dirs=True)
agent_memory = Memory(db=db, model=model)
agent_memory.clear(user_id="user_alpha")
for old in db.list_sessions(user_id="user_alpha"):
    db.delete_session(old.session_id, "user_alpha")
print("Memory component ready.")


def agent_turn(user_input_text: str, memory: Memory, session_id: str, user_id: str) -> RunResult:
    print(f"\nUser: {user_input_text}")
    # 1. RECALL: this session's earlier turns
    history = [m for run in db.get_runs(session_id, user_id, last_n=5) for m in run.messages]
    # 2. RECALL: long-term facts about the user, from any session
    facts = [
        Message(role="system", content=f"Fact: {mem.memory}")
        for mem in memory.get_user_memories(user_id=user_id)
    ]
    messages = [*history, *facts, Message(role="user", content=user_input_text)]
    # 3. The model answers with the history and the facts in view
    answer = model.complete(ModelRequest(messages=messages))
    # 4. The run, as the agent keeps it
    run = RunResult(
        run_id=new_run_id(),
        session_id=session_id,
        user_id=user_id,
        input=user_input_text,
        content=answer.content,
        messages=[Message(role="user", content=user_input_text), answer.to_message()],
    )
    print(f"Agent: {run.content}")
    # 5. RECORD: the turn goes into the session's history
    db.append_run(run)
    # 6. RECORD: a fact the user stated goes into long-term memory
    if "my name is" in user_input_text.lower():
        name = user_input_text.split("my name is ")[1].strip(".")
        new_fact = UserMemory(memory=f"User's name is {name}.", topics=["name"])
        memory.add_user_memory(memory=new_fact, user_id=user_id)
        print(f"Stored fact: {new_fact.memory}")
    return run


# Interaction 1: tell the agent our name
agent_turn("Hi, my name is Chandra.", agent_memory, "session_001", "user_alpha")
# Interaction 2: a follow-up in the same session
agent_turn("What did I just tell you?", agent_memory, "session_001", "user_alpha")

# Interaction 3: a new session, with a fresh Memory on the same file
print("\n--- Later, in a new session (after reloading memory) ---")
reloaded = Memory(db=SqliteDb(db_file="tmp/my_agent_memory.db"), model=model)
agent_turn("Hello again! What's my name?", reloaded, "session_002", "user_alpha")
