"""The memory lesson traced into Phoenix, offline: two sessions of one user, answered by the
examples' rule-based model. Exports to the Phoenix at ``PHOENIX_COLLECTOR_ENDPOINT``.

    PHOENIX_COLLECTOR_ENDPOINT=http://127.0.0.1:6006 python tests/phoenix_flow.py DB_FILE

Prints one JSON line per turn: the session id, the run id and the answer.
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from example_model import example_model
from noted import Agent, SqliteDb

PROJECT = "11-memory"
SESSIONS = [
    ["I love Italian food. I'm learning Spanish.", "My daughter's name is Emma."],
    ["What do you know about me?"],
]


def main(db_file: str, project: str = PROJECT) -> None:
    with warnings.catch_warnings():  # Phoenix's own imports warn about their dependencies
        warnings.simplefilter("ignore")
        from phoenix.otel import register

    # The lesson's one line: every installed OpenInference instrumentor, noted's too.
    provider = register(
        project_name=project,
        auto_instrument=True,
        batch=True,
        protocol="http/protobuf",
        verbose=False,
    )
    db = SqliteDb(db_file)
    for messages in SESSIONS:
        # A new agent per session, as when the lesson's script is run again.
        agent = Agent(
            name="Assistant",
            model=example_model("gpt-4o-mini"),
            instructions="You are a helpful assistant. Be concise.",
            db=db,
            user_id="demo-user",
            enable_user_memories=True,
            add_history_to_context=True,
            num_history_runs=5,
            add_datetime_to_context=True,
            markdown=True,
        )
        for message in messages:
            answer = ""
            run_id = None
            for event in agent.run(message, stream=True):
                answer += getattr(event, "text", "")
                result = getattr(event, "result", None)
                if result is not None:
                    run_id = result.run_id
            session = agent.get_session_id()
            print(json.dumps({"session_id": session, "run_id": run_id, "answer": answer}))
        if not agent.wait_for_memories(timeout=30):
            raise SystemExit("the memory updates did not finish")
    provider.force_flush()
    provider.shutdown()


if __name__ == "__main__":
    main(*sys.argv[1:3])
