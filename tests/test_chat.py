"""The terminal front end: print_response, cli_app in a pseudo-terminal, `noted chat` and
`noted sessions` against a local server speaking the OpenAI wire format."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import termios
import textwrap
import time
from pathlib import Path

import pexpect
import pytest

from noted import Agent, Memory, SqliteDb, UserMemory
from noted.models import ModelResponse, ToolCall
from noted.testing import ScriptedModel
from wire import SSE, WireServer

SRC = str(Path(__file__).resolve().parents[1] / "src")


def child_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    env["TERM"] = "xterm"
    env["COLUMNS"] = "120"
    env.update(extra)
    return env


def piped(
    args: list[str], said: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Python run with ``args`` (a script, ``-m noted.cli ...``), ``said`` on its standard
    input (not a terminal), in ``env`` (:func:`child_env` by default)."""
    return subprocess.run(
        [sys.executable, *args],
        input=said,
        check=False,
        capture_output=True,
        text=True,
        env=child_env() if env is None else env,
        timeout=60,
    )


def interruptible() -> None:
    """In a spawned child before it runs: Ctrl-C interrupts it, as at a terminal, even
    when the tests run as a background job of a shell without job control (whose
    commands start with SIGINT ignored, and Python then leaves it ignored)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def spawn(args: list[str], **env: str) -> pexpect.spawn:
    child = pexpect.spawn(
        sys.executable,
        args,
        env=child_env(**env),
        encoding="utf-8",
        codec_errors="replace",  # the terminal echoes what is typed, UTF-8 or not
        timeout=30,
        dimensions=(40, 120),
        preexec_fn=interruptible,
    )
    return child


def reading(child: pexpect.spawn) -> None:
    """Wait until the prompt reads (readline takes the terminal out of line mode): a Ctrl-D
    sent before that is taken by the terminal's line mode and lost."""
    deadline = time.monotonic() + 10
    while termios.tcgetattr(child.child_fd)[3] & termios.ICANON:
        assert time.monotonic() < deadline, "the prompt never read"
        time.sleep(0.01)


def finish(child: pexpect.spawn) -> str:
    rest = child.read()
    child.close()
    assert child.exitstatus == 0, (child.exitstatus, child.signalstatus, rest)
    return rest


def test_print_response_streams_to_the_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    def shout(text: str) -> str:
        return text.upper()

    model = ScriptedModel(
        [ModelResponse(tool_calls=[ToolCall("shout", {"text": "hi"})]), "Said **HI**."]
    )
    result = Agent(model, tools=[shout], markdown=True).print_response("shout hi", stream=True)
    assert result.content == "Said **HI**."
    shown = capsys.readouterr().out
    assert "shout" in shown
    assert "Said HI." in shown  # rendered as markdown: the asterisks are gone
    result = Agent(ScriptedModel(["plain answer"])).print_response("hello", stream=False)
    assert "plain answer" in capsys.readouterr().out


ESCAPES = "\x1b[2J\x1b[H\x1b]0;PWNED\x07\x1b[5mblink\x1b[0m\x9b2J\x07"
ESCAPES_SCRIPT = textwrap.dedent(
    f"""
    from noted import Agent
    from noted.errors import ModelError
    from noted.models import ModelResponse, ToolCall
    from noted.testing import FunctionModel, ScriptedModel
    ESCAPES = {ESCAPES!r}

    def look(path: str) -> str:
        return "found" + ESCAPES

    for stream, markdown in [(True, True), (True, False), (False, True)]:
        call = ModelResponse(tool_calls=[ToolCall("look", {{"path": "x"}})])
        model = ScriptedModel([call, "Hi" + ESCAPES + " there, " + str(stream) + str(markdown)])
        Agent(model, tools=[look]).print_response("hi", stream=stream, markdown=markdown)

    def fail(messages, tools):
        raise ModelError("the server said" + ESCAPES + " no")

    Agent(FunctionModel(fail)).cli_app()
    """
)


def test_a_models_escape_sequences_do_not_reach_the_terminal() -> None:
    # An answer, a tool's result or an error could clear the screen, set the window title
    # or make the rest of the chat blink: they were printed as they came.
    child = spawn(["-c", ESCAPES_SCRIPT])
    child.logfile_read = io.StringIO()
    child.expect("You")
    child.sendline("hello")
    child.expect("the server said")
    child.expect("You")
    child.sendline("exit")
    finish(child)
    shown = child.logfile_read.getvalue()
    for sequence in ["\x1b[2J", "\x1b]0;", "PWNED", "\x1b[5m", "\x9b", "\x07"]:
        assert sequence not in shown, sequence
    for answer in ["TrueTrue", "TrueFalse", "FalseTrue"]:
        assert f"Hiblink there, {answer}" in shown
    assert "foundblink" in shown and "the server saidblink no" in shown


CHAT_SCRIPT = textwrap.dedent(
    """
    import sys
    from noted import Agent, SqliteDb
    from noted.testing import ScriptedModel
    model = ScriptedModel(["Hello Ava, nice to meet you!", "You told me your name is Ava."])
    agent = Agent(model, db=SqliteDb(sys.argv[1]), user_id="ava", add_history_to_context=True)
    agent.cli_app(stream=True)
    history = len(model.requests[-1].messages) if model.requests else 0
    print("requests:", len(model.requests), "history:", history)
    """
)


def test_cli_app_chats_and_exits_on_exit(tmp_path: Path) -> None:
    child = spawn(["-c", CHAT_SCRIPT, str(tmp_path / "chat.db")])
    child.expect("You")
    child.sendline("My name is Ava")
    child.expect("nice to meet you!")
    child.expect("You")
    child.sendline("What is my name?")
    child.expect("your name is Ava.")
    child.expect("You")
    child.sendline("exit")
    rest = finish(child)
    assert "requests: 2 history: 3" in rest  # the second turn saw the first one
    assert "Traceback" not in rest
    with SqliteDb(tmp_path / "chat.db") as db:
        [session] = db.list_sessions("ava")
        assert session.run_count == 2


def test_cli_app_takes_a_line_longer_than_the_terminals_line_mode(tmp_path: Path) -> None:
    # A terminal in line mode keeps 4,095 bytes of a line and drops the rest silently.
    child = spawn(["-c", CHAT_SCRIPT, str(tmp_path / "chat.db")])
    child.expect("You")
    long = "a" * 5000 + " END"
    for start in range(0, len(long), 500):  # as a paste arrives, in pieces
        child.send(long[start : start + 500])
    child.sendline("")
    child.expect("nice to meet you!")
    child.expect("You")
    child.sendline("exit")
    finish(child)
    with SqliteDb(tmp_path / "chat.db") as db:
        [session] = db.list_sessions("ava")
        [run] = db.get_runs(session.session_id, "ava")
        assert run.input == long


@pytest.mark.parametrize("how", ["ctrl-d", "ctrl-c"])
def test_cli_app_leaves_quietly_on_ctrl_d_and_ctrl_c(tmp_path: Path, how: str) -> None:
    child = spawn(["-c", CHAT_SCRIPT, str(tmp_path / "chat.db")])
    child.expect("You")
    if how == "ctrl-d":
        reading(child)
        child.sendeof()
    else:
        child.sendintr()
    rest = finish(child)
    assert "Traceback" not in rest
    assert "requests: 0" in rest  # the program went on after the chat ended


LINES_SCRIPT = textwrap.dedent(
    """
    from noted import Agent
    from noted.testing import ScriptedModel
    model = ScriptedModel(["First.", "Second.", "Third."])
    Agent(model).cli_app()
    print("messages:", [request.messages[-1].content for request in model.requests])
    input("after the chat> ")
    """
)


def test_cli_app_takes_messages_of_several_lines(tmp_path: Path) -> None:
    # A paste of several lines was sent line by line, each a message of its own: the
    # terminal was not told to mark pastes. A typed line could not go on to the next one.
    child = spawn(["-c", LINES_SCRIPT])
    child.logfile_read = io.StringIO()
    child.expect("You")
    reading(child)
    child.send("\x1b[200~first line\nsecond line\x1b[201~\r")  # as a terminal marks a paste
    child.expect("First.")
    child.expect("You")
    child.send("typed \\\r")
    child.send("and more\r")
    child.expect("Second.")
    child.expect("You")
    child.sendline("exit")
    child.expect("after the chat> ")
    child.sendline("")
    rest = finish(child)
    shown = child.logfile_read.getvalue()
    assert "messages: ['first line\\nsecond line', 'typed \\nand more']" in shown
    prompt = shown.index("Chatting with")
    assert "\x1b[?2004h" in shown[prompt:]  # bracketed paste, at the chat's prompt
    after = shown.index("after the chat> ")
    assert "\x1b[?2004h" not in shown[after - 20 :] + rest  # and off again after it


def test_ctrl_d_on_a_continuation_line_sends_the_message_and_the_chat_goes_on() -> None:
    # Ctrl-D at the "..." prompt ended the chat, the message typed so far lost.
    child = spawn(["-c", LINES_SCRIPT])
    child.logfile_read = io.StringIO()
    child.expect("You")
    child.send("half \\\r")
    child.expect_exact("...")
    child.send("typed\\\r")
    child.expect_exact("...")
    reading(child)
    child.sendeof()
    child.expect("First.")
    child.expect("You")
    reading(child)
    child.sendeof()  # at the first line's prompt: the chat ends
    child.expect("after the chat> ")
    child.sendline("")
    finish(child)
    assert "messages: ['half \\ntyped']" in child.logfile_read.getvalue()


def test_a_piped_chat_whose_last_line_goes_on_sends_it() -> None:
    # Standard input ending on a line that ends with a backslash: the message was dropped.
    script = "from noted import Agent\nfrom noted.testing import ScriptedModel\n"
    script += "model = ScriptedModel(['One.', 'Two.'])\nAgent(model).cli_app(stream=False)\n"
    script += "print([request.messages[-1].content for request in model.requests])\n"
    done = piped(["-c", script], "hi\nlast \\\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["One.", "Two.", "['hi', 'last ']"]


def test_cli_app_prompt_is_redrawn_with_the_line(tmp_path: Path) -> None:
    # The prompt was printed apart from readline, which took it to be empty: Ctrl-L (and a
    # line wrapped past the edge, or history) redrew the line over it, the prompt gone.
    child = spawn(["-c", LINES_SCRIPT])
    child.expect("You")
    reading(child)
    child.send("abc")
    child.expect("abc")
    child.send("\x0c")  # Ctrl-L: clear the screen and draw the line again
    child.expect("\x1b\\[2J")
    child.expect("abc")
    assert "You" in child.before, repr(child.before)
    child.sendintr()
    child.expect("after the chat> ")
    child.sendline("")
    finish(child)


@pytest.mark.parametrize("errors", ["surrogateescape", "strict"])
def test_cli_app_takes_a_line_that_is_not_utf8(errors: str) -> None:
    # A byte that is not UTF-8 (a terminal set to Latin-1) got the message refused as "not
    # valid Unicode text: surrogates not allowed", or, where standard input's errors are
    # strict, ended the chat with a traceback.
    child = spawn(["-c", LINES_SCRIPT], PYTHONIOENCODING=f"utf-8:{errors}")
    child.expect("You")
    reading(child)
    os.write(child.child_fd, b"caf\xe9 ol\xc3\xa9\r")
    child.expect("First.")
    child.expect("You")
    child.sendline("exit")
    child.expect("after the chat> ")
    # readline keeps the stray byte, if not where it was typed
    assert re.search("messages: \\['caf ol.*\ufffd.*\u00e9'\\]", child.before), child.before
    child.sendline("")
    rest = finish(child)
    assert "Traceback" not in rest


TALL_SCRIPT = textwrap.dedent(
    """
    import asyncio
    from noted import Agent
    from noted.models import TextDelta, UsageDelta
    from noted.testing import ScriptedModel

    class Slow(ScriptedModel):
        async def _send_stream(self, request):
            self._record(request)
            for n in range(60):  # past the 12-line screen, a line per 0.05 s
                yield TextDelta(f"line {n:02d} of the answer\\n\\n")
                if n > 20:
                    await asyncio.sleep(0.05)
            yield UsageDelta(1, 1, finish_reason="stop")

    Agent(Slow([])).print_response("tell me a lot", stream=True, markdown=False)
    print("done")
    """
)


SLOW_CHAT_SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    from noted import Agent, SqliteDb
    from noted.models import TextDelta, UsageDelta
    from noted.testing import ScriptedModel

    class Slow(ScriptedModel):
        async def _send_stream(self, request):
            self._record(request)
            for n in range(600):
                yield TextDelta(f"word{n} ")
                await asyncio.sleep(0.05)
            yield UsageDelta(1, 1, finish_reason="stop")

    Agent(Slow([]), db=SqliteDb(sys.argv[1]), user_id="ava").cli_app(stream=True)
    """
)


@pytest.mark.parametrize("ending", [signal.SIGTERM, signal.SIGHUP])
def test_a_chat_ended_by_sigterm_or_sighup_keeps_the_turn_and_the_cursor(
    tmp_path: Path, ending: signal.Signals
) -> None:
    # The default action killed the process mid-answer: the turn was lost and the cursor
    # left hidden. Now it ends as by Ctrl-C, then by the signal.
    child = spawn(["-c", SLOW_CHAT_SCRIPT, str(tmp_path / "chat.db")])
    child.expect("You")
    child.sendline("tell me a story")
    child.expect("word3 ")
    child.kill(ending)
    rest = child.read()
    child.close()
    assert child.signalstatus == ending, (child.exitstatus, child.signalstatus, rest)
    assert rest.rfind("\x1b[?25h") > rest.rfind("\x1b[?25l")  # the cursor shown again
    assert "Traceback" not in rest
    with SqliteDb(tmp_path / "chat.db") as db:
        [session] = db.list_sessions("ava")
        [run] = db.get_runs(session.session_id, "ava")
        assert run.status == "failed" and run.input == "tell me a story"


def test_a_streamed_answer_taller_than_the_screen_is_printed_once() -> None:
    # Live redraws could not reach the lines that scrolled off: each refresh printed the
    # whole answer again below them (hundreds of copies of its first line).
    child = spawn(["-c", TALL_SCRIPT])
    child.setwinsize(12, 60)
    child.expect("done", timeout=30)
    shown = child.before
    finish(child)
    assert shown.count("line 00 of") <= 3, shown.count("line 00 of")
    assert all(f"line {n:02d} of" in shown for n in range(60))
    assert shown.rindex("line 00 of") < shown.rindex("line 59 of")


SLOW_START_SCRIPT = textwrap.dedent(
    """
    import asyncio
    from noted import Agent
    from noted.models import TextDelta, UsageDelta
    from noted.testing import ScriptedModel

    class SlowStart(ScriptedModel):
        async def _send_stream(self, request):
            self._record(request)
            await asyncio.sleep(2)  # a local model loading, a busy server
            yield TextDelta("At last.")
            yield UsageDelta(1, 1, finish_reason="stop")

    Agent(SlowStart([])).print_response("hi", stream=True)
    print("done")
    """
)


def test_a_streamed_answer_shows_that_it_is_awaited() -> None:
    # Until its first words came the screen showed nothing, where --no-stream says
    # "thinking...".
    child = spawn(["-c", SLOW_START_SCRIPT])
    assert child.expect_exact(["thinking...", "At last."]) == 0
    child.expect("At last.")
    child.expect("done")
    finish(child)


STUCK_AT_EXIT_SCRIPT = textwrap.dedent(
    """
    import asyncio
    from noted import Agent
    from noted.testing import FunctionModel

    async def fn(messages, tools):
        if (messages[0].content or "").startswith("You maintain the long-term memory"):
            await asyncio.sleep(3600)  # a memory update that does not end
        return "Noted."

    Agent(FunctionModel(fn), enable_user_memories=True).run("I like tea")
    print("answered")
    """
)


def test_a_program_waiting_for_memory_updates_at_exit_says_so_and_stops_on_ctrl_c() -> None:
    # It waited up to a minute in silence, and a Ctrl-C meanwhile printed a traceback.
    child = spawn(["-c", STUCK_AT_EXIT_SCRIPT])
    child.expect("answered")
    child.expect("waiting up to 60 s for 1 background task", timeout=10)
    child.sendintr()
    child.expect("stopped unfinished", timeout=10)
    rest = finish(child)
    assert "Traceback" not in rest


LOST_SIGINT_SCRIPT = textwrap.dedent(
    """
    import signal, sys, threading, time
    from noted import Agent
    from noted.testing import ScriptedModel
    main = threading.main_thread().ident

    def interrupt_from_another_thread():
        # Wait until the prompt is reading, then take the SIGINT on this thread: CPython
        # notes it, but the main thread's read is not interrupted by it.
        while sys._current_frames()[main].f_code.co_name != "_input":
            time.sleep(0.01)
        time.sleep(0.3)
        signal.pthread_kill(threading.get_ident(), signal.SIGINT)

    threading.Thread(target=interrupt_from_another_thread, daemon=True).start()
    Agent(ScriptedModel([])).cli_app()
    print("left the chat")
    """
)


def test_cli_app_leaves_on_a_ctrl_c_that_missed_the_prompts_read() -> None:
    child = spawn(["-c", LOST_SIGINT_SCRIPT])
    child.expect("You")
    child.expect("left the chat", timeout=10)
    rest = finish(child)
    assert "Traceback" not in rest


def openai_stream(text: str) -> SSE:
    pieces = text.split(" ")
    chunks: list[object] = []
    for i, piece in enumerate(pieces):
        delta = {"content": piece + (" " if i < len(pieces) - 1 else "")}
        if i == 0:
            delta["role"] = "assistant"
        chunks.append(
            {
                "id": "chatcmpl-1",
                "object": "chat.completion.chunk",
                "created": 1,
                "model": "test-model",
                "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
            }
        )
    chunks.append(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "test-model",
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17},
        }
    )
    chunks.append("[DONE]")
    return SSE(chunks)


def noted(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "noted.cli", *args],
        check=False,
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=60,
    )


def noted_chat(
    wire: WireServer, db: Path, said: str, *options: str
) -> subprocess.CompletedProcess[str]:
    """`noted chat` on ``db`` with memory off, ``said`` on its standard input and its
    model (``openai:test-model``) answered by ``wire`` (``options`` before ``--memory``),
    in this environment without ``$NOTED_DB``."""
    argv = ["chat", "--model", "openai:test-model", *options, "--memory", "off", "--db", str(db)]
    env = {k: v for k, v in os.environ.items() if k != "NOTED_DB"}
    env |= {"PYTHONPATH": SRC, "OPENAI_BASE_URL": wire.url + "/v1", "OPENAI_API_KEY": "test-key"}
    return piped(["-m", "noted.cli", *argv], said, env)


def test_noted_chat_continues_a_session_across_processes(wire: WireServer, tmp_path: Path) -> None:
    db = str(tmp_path / "chat.db")
    env = {"OPENAI_BASE_URL": wire.url + "/v1", "OPENAI_API_KEY": "test-key"}
    from wire import Reply

    learned = {"op": "add", "id": None, "memory": "User likes to ski", "topics": ["hobbies"]}
    wire.add(
        openai_stream("Hello Ava, noted."),
        Reply(body=openai_reply(json.dumps({"operations": [learned]}))),  # the memory manager
    )
    args = ["-m", "noted.cli", "chat", "--model", "openai:test-model", "--db", db]
    child = spawn([*args, "--user", "ava", "--session", "trip"], **env)
    child.expect("You")
    child.sendline("My name is Ava and I like to ski.")
    child.expect("noted.")
    child.expect("You")
    child.sendline("quit")
    finish(child)

    wire.add(openai_stream("You like to ski."), Reply(body=openai_reply('{"operations": []}')))
    child = spawn([*args, "--user", "ava", "--session", "trip", "--memory-dates"], **env)
    child.expect("You")
    child.sendline("What do I like?")
    child.expect("like to ski.")
    child.expect("You")
    reading(child)
    child.sendeof()
    finish(child)

    assert len(wire.requests) == 4  # per turn: the answer and one memory call
    second = wire.requests[2].body
    assert second["model"] == "test-model"
    assert second["stream"] is True
    assert second["messages"][0]["role"] == "system"
    with SqliteDb(db) as store:  # --memory-dates: the day the fact was written
        [ski] = Memory(db=store, embedder=None).get_user_memories("ava")
    assert ski.updated_at is not None
    learned_on = ski.updated_at.date().isoformat()
    assert f"- ({learned_on}) User likes to ski" in second["messages"][0]["content"]
    assert wire.requests[3].body["response_format"]["type"] == "json_schema"
    assert [(m["role"], m["content"]) for m in second["messages"][1:]] == [
        ("user", "My name is Ava and I like to ski."),
        ("assistant", "Hello Ava, noted."),
        ("user", "What do I like?"),
    ]

    listed = noted("sessions", "list", "--db", db, "--json")
    assert listed.returncode == 0, listed.stderr
    [session] = json.loads(listed.stdout)
    assert (session["session_id"], session["user_id"], session["run_count"]) == ("trip", "ava", 2)

    shown = noted("sessions", "show", "trip", "--db", db, "--json")
    runs = json.loads(shown.stdout)["runs"]
    assert [r["content"] for r in runs] == ["Hello Ava, noted.", "You like to ski."]
    assert runs[1]["metrics"]["input_tokens"] == 12

    text = noted("sessions", "show", "trip", "--db", db)
    assert "What do I like?" in text.stdout
    assert "You like to ski." in text.stdout
    assert noted("sessions", "show", "trip", "--db", db, "--user", "bob").returncode == 1

    gone = noted("sessions", "delete", "trip", "missing", "--db", db)
    assert gone.returncode == 1
    assert "deleted 1 session(s)" in gone.stdout
    assert "missing" in gone.stderr
    assert json.loads(noted("sessions", "list", "--db", db, "--json").stdout) == []


@pytest.mark.parametrize("when", ["at the prompt", "during an answer"])
def test_noted_chat_ended_by_ctrl_c_exits_with_130(
    wire: WireServer, tmp_path: Path, when: str
) -> None:
    # It exited 0, as after exit, quit or Ctrl-D: a script could not tell it was stopped.
    db = str(tmp_path / "chat.db")
    env = {"OPENAI_BASE_URL": wire.url + "/v1", "OPENAI_API_KEY": "test-key"}
    args = ["-m", "noted.cli", "chat", "--model", "openai:test-model", "--db", db]
    child = spawn([*args, "--user", "ava"], **env)
    child.expect("You")
    if when == "at the prompt":
        from wire import Reply

        # the memory update outlasts the chat: the program still waits for it, saying so
        nothing = Reply(body=openai_reply('{"operations": []}'), delay=3)
        wire.add(openai_stream("Hello Ava, noted."), nothing)
        child.sendline("My name is Ava.")
        child.expect("noted.")
        child.expect("You")
        reading(child)
        child.sendintr()
        child.expect("waiting up to 60 s for 1 background task", timeout=10)
    else:
        story = openai_stream("Once upon a time")
        wire.add(SSE(story.events[:2], hold=True))  # the rest never comes
        child.sendline("tell me a story")
        child.expect("upon")
        child.sendintr()
    rest = child.read()
    child.close()
    assert child.exitstatus == 130, (child.exitstatus, child.signalstatus, rest)
    assert "Traceback" not in rest
    with SqliteDb(db) as store:
        [session] = store.list_sessions("ava")
        [run] = store.get_runs(session.session_id, "ava")
    assert run.status == ("completed" if when == "at the prompt" else "failed")


def test_noted_sessions_show_prints_no_escape_sequences(tmp_path: Path) -> None:
    # A transcript is read in a terminal too: the model's escapes were printed as they came.
    db = tmp_path / "x.db"
    with SqliteDb(db) as store:
        agent = Agent(ScriptedModel(["Hi" + ESCAPES]), db=store, user_id="ava", session_id="s")
        agent.run("hello" + ESCAPES)
    shown = noted("sessions", "show", "s", "--db", str(db))
    assert shown.returncode == 0, shown.stderr
    assert "you: helloblink" in shown.stdout and "assistant: Hiblink" in shown.stdout
    assert "\x1b" not in shown.stdout and "\x07" not in shown.stdout and "\x9b" not in shown.stdout


def test_noted_chat_with_messages_from_a_pipe_writes_the_answers_alone(
    wire: WireServer, tmp_path: Path
) -> None:
    # `echo hi | noted chat` wrote the banner and a "You > " prompt before each answer to
    # standard output, and cut a plain answer's lines at 80 columns.
    from wire import Reply

    long_line = "word " * 60
    wire.add(Reply(openai_reply("First " + long_line.strip())), Reply(openai_reply("Second.")))
    done = noted_chat(wire, tmp_path / "c.db", "hi\nsay \\\nmore\n", "--plain")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "First " + long_line.strip() + "\nSecond.\n"
    [said] = done.stderr.splitlines()
    with SqliteDb(tmp_path / "c.db") as store:
        [session] = store.list_sessions("default")
    assert said == f"Chatting with test-model (session {session.session_id})."
    assert [r.body["messages"][-1]["content"] for r in wire.requests] == ["hi", "say \nmore"]


def test_noted_chat_writes_a_markdown_answer_to_a_file_as_the_model_wrote_it(
    wire: WireServer, tmp_path: Path
) -> None:
    # Rendered for a terminal, it came out centred, its links gone and its code indented.
    from wire import Reply

    answer = "# Trip\n\nSee [the map](https://example.com/map).\n\n```\nski --fast\n```"
    wire.add(Reply(openai_reply(answer)))
    done = noted_chat(wire, tmp_path / "c.db", "plan my trip\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout == answer + "\n"


def test_a_learned_memory_is_listed_without_its_escape_sequences(tmp_path: Path) -> None:
    # What the memory manager learned from a chat is the model's text: `noted memories
    # list` and `show` printed its escapes as they came.
    db = tmp_path / "x.db"
    with SqliteDb(db) as store:
        learned = UserMemory("likes " + ESCAPES + "ski")
        memory_id = Memory(db=store, embedder=None).add_user_memory(learned, user_id="ava")
    for command in (["list"], ["show", memory_id]):
        shown = noted("memories", *command, "--db", str(db), "--user", "ava")
        assert shown.returncode == 0, shown.stderr
        assert "likes blinkski" in shown.stdout
        assert "\x1b" not in shown.stdout and "\x9b" not in shown.stdout, shown.stdout


def test_noted_chat_needs_a_model(tmp_path: Path) -> None:
    env_without = {k: v for k, v in os.environ.items() if k != "NOTED_MODEL"}
    done = subprocess.run(
        [sys.executable, "-m", "noted.cli", "chat", "--db", str(tmp_path / "x.db")],
        check=False,
        capture_output=True,
        text=True,
        env={**env_without, "PYTHONPATH": SRC},
        timeout=60,
    )
    assert done.returncode == 1
    assert "choose a model" in done.stderr


def test_noted_chat_refuses_json_output(tmp_path: Path) -> None:
    # `noted chat --json` was taken and did nothing: the answers came as text all the same.
    db = tmp_path / "x.db"
    done = subprocess.run(
        [sys.executable, "-m", "noted.cli", "chat", "--json", "--db", str(db), "-m", "openai:m"],
        check=False,
        capture_output=True,
        text=True,
        input="hello\n",
        env=child_env(OPENAI_API_KEY="k"),
        timeout=60,
    )
    assert done.returncode == 2, done
    assert "noted chat: error: --json: the chat prints its answers as text" in done.stderr
    assert "noted sessions show SESSION --json" in done.stderr
    assert done.stdout == "" and not db.exists()


def test_noted_chat_refuses_at_its_start_what_every_turn_would_fail_on(tmp_path: Path) -> None:
    # A missing API key, or a session of another user, failed each message in turn.
    db = tmp_path / "x.db"
    with SqliteDb(db) as store:
        Agent(ScriptedModel(["Hi."]), db=store, user_id="ava", session_id="trip").run("hello")
    env = {k: v for k, v in child_env().items() if k not in ("OPENAI_API_KEY", "NOTED_MODEL")}
    chat = [sys.executable, "-m", "noted.cli", "chat", "--db", str(db), "--model", "openai:m"]

    def run(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*chat, *args],
            check=False,
            capture_output=True,
            text=True,
            input="hello\n",
            env={**env, **extra},
            timeout=60,
        )

    done = run()
    assert done.returncode == 1 and "needs an API key" in done.stderr, done
    assert "Chatting with" not in done.stdout
    done = run("--user", "bob", "--session", "trip", OPENAI_API_KEY="k")
    assert done.returncode == 1 and "belongs to another user" in done.stderr, done
    assert "Chatting with" not in done.stdout


def test_a_failed_turn_is_one_error_line_on_stderr_and_the_chat_goes_on(
    wire: WireServer, tmp_path: Path
) -> None:
    from wire import Reply

    message = "Invalid model 'test-model': " + "the model you asked for does not exist " * 4
    # not a terminal: the answers are not streamed
    wire.add(Reply({"error": {"message": message}}, status=400), Reply(openai_reply("Still here.")))
    done = noted_chat(wire, tmp_path / "c.db", "hi\nagain\nexit\n", "--plain")
    assert done.returncode == 0, done.stderr
    [banner, line] = done.stderr.splitlines()  # messages from a pipe: the banner is there
    assert banner.startswith("Chatting with test-model (session ")
    assert line.startswith("error: ") and "does not exist" in line and line.endswith("exist")
    assert "error" not in done.stdout and "Still here." in done.stdout


def test_a_retried_turn_shows_its_retries_on_the_status_line(
    wire: WireServer, tmp_path: Path
) -> None:
    # Each retry of a server down or answering 5xx was a log line of its own ("... failed
    # (...); retry 1 of 3 in 0.44 s"), printed between the prompt and the error line.
    from wire import Reply

    down = Reply({"error": {"message": "overloaded"}}, status=503)
    wire.add(down, down, down, down, openai_stream("Back again."))
    env = {"OPENAI_BASE_URL": wire.url + "/v1", "OPENAI_API_KEY": "test-key"}
    argv = ["chat", "--model", "openai:test-model", "--memory", "off"]
    child = spawn(["-m", "noted.cli", *argv, "--db", str(tmp_path / "c.db")], **env)
    child.logfile_read = io.StringIO()
    child.expect("You")
    child.sendline("hi")
    child.expect("error: openai answered HTTP 503: overloaded")
    child.expect("You")
    child.sendline("again")
    child.expect("Back again.")
    child.expect("You")
    child.sendline("exit")
    finish(child)
    shown = child.logfile_read.getvalue()
    for retry in ("1 of 3", "2 of 3", "3 of 3"):
        assert re.search(rf"retrying in \d s \({retry}\)\.\.\.", shown), retry
    assert "failed (" not in shown and "retry 1 of 3" not in shown
    assert shown.count("error:") == 1


def test_a_retried_turn_from_a_pipe_is_one_error_line(wire: WireServer, tmp_path: Path) -> None:
    from wire import Reply

    down = Reply({"error": {"message": "overloaded"}}, status=503)
    wire.add(down, down, down, down, Reply(openai_reply("Back again.")))
    done = noted_chat(wire, tmp_path / "c.db", "hi\nagain\n")
    assert done.returncode == 0, done.stderr
    [banner, line] = done.stderr.splitlines()
    assert banner.startswith("Chatting with test-model")
    assert line == "error: openai answered HTTP 503: overloaded"
    assert done.stdout == "Back again.\n"


def openai_reply(text: str) -> dict[str, object]:
    return {
        "id": "chatcmpl-2",
        "object": "chat.completion",
        "created": 1,
        "model": "test-model",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12},
    }


def test_agent_retries_a_rate_limit_and_records_a_refusal(wire: WireServer) -> None:
    from noted.errors import ModelHTTPError
    from noted.models import OpenAIChat, RetryPolicy
    from wire import Reply

    model = OpenAIChat(
        "test-model",
        api_key="test-key",
        base_url=wire.url + "/v1",
        retry=RetryPolicy(max_attempts=3, initial_delay=0.01, max_delay=0.02),
    )
    agent = Agent(model, session_id="s")
    wire.add(
        Reply(
            {"error": {"message": "Rate limit reached"}}, status=429, headers={"Retry-After": "0"}
        ),
        Reply(openai_reply("Hello after waiting.")),
    )
    result = agent.run("hi")
    assert result.content == "Hello after waiting."
    assert result.metrics.model_calls == 1  # the retry is the model's business
    assert (result.metrics.input_tokens, result.metrics.output_tokens) == (9, 3)
    assert len(wire.requests) == 2
    wire.add(Reply({"error": {"message": "Invalid model 'test-model'"}}, status=400))
    with pytest.raises(ModelHTTPError, match="Invalid model 'test-model'"):
        agent.run("again")
    assert len(wire.requests) == 3  # a 400 is not retried
    runs = agent.db.get_runs("s", "default")
    assert [r.status for r in runs] == ["completed", "failed"]
    assert "Invalid model" in (runs[1].error or "")
    model.close()


def test_a_streamed_answer_that_is_not_utf8_is_a_model_error(wire: WireServer) -> None:
    # A byte that is not UTF-8 in a server's event stream ended `noted chat` with a
    # traceback (the SDK's UnicodeDecodeError); it is now a failed turn, one error line.
    from noted.errors import ModelOutputError
    from noted.models import OpenAIChat
    from wire import Raw

    events = b"".join(
        b"data: " + (e if isinstance(e, str) else json.dumps(e)).encode() + b"\n\n"
        for e in openai_stream("Caf\u00e9 open").events
    )
    wire.add(Raw(events.replace(b"Caf", b"Caf\xff"), content_type="text/event-stream"))
    model = OpenAIChat("test-model", api_key="test-key", base_url=wire.url + "/v1")
    agent = Agent(model, session_id="s")
    with pytest.raises(ModelOutputError, match=r"not UTF-8 text \(byte 0xff"):
        list(agent.run("hi", stream=True))
    [run] = agent.db.get_runs("s", "default")
    assert run.status == "failed"
    model.close()


def test_noted_chat_says_when_an_answer_was_cut_off_at_the_token_limit(
    wire: WireServer, tmp_path: Path
) -> None:
    """An answer that stopped at the model's token limit is printed, then a note on
    standard error says it was cut off; a whole answer has none."""
    from wire import Reply

    cut = openai_reply("The three steps are: first, pack; second,")
    cut["choices"][0]["finish_reason"] = "length"  # type: ignore[index]
    wire.add(Reply(cut), Reply(openai_reply("Done.")))
    done = noted_chat(wire, tmp_path / "c.db", "steps?\nthanks\n", "--plain")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "The three steps are: first, pack; second,\nDone.\n"
    [_, note] = done.stderr.splitlines()  # the banner, then the one note
    assert note == "note: the answer was cut off at the model's token limit"


def test_noted_chat_gives_the_model_the_timeout_it_is_told(
    wire: WireServer, tmp_path: Path
) -> None:
    """--timeout SECONDS is each model call's limit (a local model on a CPU needs more than
    the default 60 s; here a shorter one is seen to apply)."""
    from wire import Reply

    wire.add(Reply(openai_reply("late"), delay=2.0), Reply(openai_reply("in time")))
    done = noted_chat(wire, tmp_path / "c.db", "hi\n", "--plain", "--timeout", "1")
    assert done.returncode == 0, done.stderr
    # the first call was given up after a second, and tried again (60 s would wait for it)
    assert done.stdout == "in time\n"
    assert len(wire.requests) == 2
    refused = noted_chat(wire, tmp_path / "c.db", "hi\n", "--timeout", "0")
    assert refused.returncode == 2 and "--timeout" in refused.stderr


def test_noted_chat_refuses_a_timeout_for_a_model_run_in_process(tmp_path: Path) -> None:
    # A GGUF model run by llama.cpp in this process has no time limit: --timeout was
    # taken and did nothing.
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF" + bytes(60))
    sdk = tmp_path / "sdk" / "llama_cpp"  # stands in for the local extra: nothing is loaded
    sdk.mkdir(parents=True)
    (sdk / "__init__.py").write_text("class Llama: ...\n")
    argv = [
        "chat",
        "--model",
        f"llamacpp:{model}",
        "--timeout",
        "300",
        "--db",
        str(tmp_path / "c.db"),
    ]
    env = {k: v for k, v in os.environ.items() if k != "NOTED_DB"}
    env["PYTHONPATH"] = os.pathsep.join([SRC, str(sdk.parent)])
    done = piped(["-m", "noted.cli", *argv], "hi\n", env)
    assert done.returncode == 1, done.stderr
    assert "error: --timeout limits the calls of a model served over HTTP" in done.stderr
    assert "LlamaCpp runs in this process" in done.stderr
