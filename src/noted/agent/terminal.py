"""The agent in a terminal: answers rendered with rich, live while they stream, and a
chat loop that ends on ``exit``, ``quit``, Ctrl-D or Ctrl-C without a traceback."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType
from typing import TYPE_CHECKING

from rich.console import Console, ConsoleOptions, RenderableType, RenderResult
from rich.live import Live
from rich.markdown import Markdown
from rich.segment import Segment
from rich.text import Text

from noted._console import err, printable
from noted._interrupt import ctrl_c_reaches_input
from noted.agent.events import ContentDelta, RunCompleted, ToolCallCompleted, ToolCallStarted
from noted.errors import NotedError
from noted.sessions import RunResult

if TYPE_CHECKING:
    from noted.agent.agent import Agent

__all__ = ["EXIT_WORDS", "chat", "print_response"]

EXIT_WORDS = frozenset({"exit", "quit", "bye", ":q"})


def _render(text: str, markdown: bool) -> RenderableType:
    """The model's text to show: never the escape sequences in it (a model's answer must
    not clear the screen, set the window title or colour the prompt)."""
    shown = printable(text)
    return Markdown(shown) if markdown else Text(shown)


class _Tail:
    """The last lines of a renderable that fit the screen. A live view taller than the
    terminal cannot be redrawn (the lines scrolled off stay, and each refresh prints the
    whole text again below them), so while an answer streams its end is shown, and the
    whole answer is printed once when it is done."""

    def __init__(self, renderable: RenderableType) -> None:
        self.renderable = renderable

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        lines = console.render_lines(self.renderable, options.update(height=None), pad=False)
        for line in lines[-max(console.size.height - 1, 1) :]:
            yield from line
            yield Segment.line()


def _tool_line(name: str, detail: str, error: bool = False) -> Text:
    style = "red" if error else "dim"
    return Text(printable(f"  ↳ {name}: {detail}"), style=style)


def print_response(
    agent: Agent,
    message: str,
    *,
    user_id: str | None,
    session_id: str | None,
    stream: bool,
    markdown: bool,
    console: Console | None = None,
) -> RunResult:
    console = console or Console()
    if not stream or not console.is_terminal:  # piped output gets the whole answer at once
        with console.status("thinking...", spinner="dots"):
            result = agent.run(message, user_id=user_id, session_id=session_id)
        for execution in result.tool_calls:
            console.print(_tool_line(execution.name, execution.result[:200], execution.error))
        console.print(_render(result.content or "", markdown))
        return result
    text = ""
    finished: RunResult | None = None
    try:
        with Live(console=console, refresh_per_second=15, transient=True) as live:
            for event in agent.run(message, user_id=user_id, session_id=session_id, stream=True):
                if isinstance(event, ContentDelta):
                    text += event.text
                    live.update(_Tail(_render(text, markdown)))
                elif isinstance(event, ToolCallStarted):
                    call = event.tool_call
                    live.console.print(_tool_line(call.name, call.arguments_json()[:200]))
                elif isinstance(event, ToolCallCompleted):
                    done = event.execution
                    if done.error:
                        live.console.print(_tool_line(done.name, done.result[:200], error=True))
                elif isinstance(event, RunCompleted):
                    finished = event.result
                    text = finished.content or text
    finally:  # the whole answer, or what came of it before a failure or Ctrl-C
        if text:
            console.print(_render(text, markdown))
    if finished is None:  # pragma: no cover - a run ends with RunCompleted or raises
        raise NotedError("the run ended without a result")
    return finished


def chat(
    agent: Agent,
    *,
    user_id: str | None,
    session_id: str | None,
    stream: bool,
    markdown: bool,
    console: Console | None = None,
    errors: Console | None = None,
) -> bool:
    """Chat on ``console`` (standard output); a failed turn's ``error: ...`` line goes to
    ``errors`` (standard error, one line when it is not a terminal) and the chat goes on.
    Returns whether Ctrl-C ended it (at the prompt or during an answer), rather than
    ``exit``, ``quit`` or Ctrl-D."""
    console = console or Console()
    errors = errors or err
    session = session_id or agent.get_session_id(user_id)
    console.print(
        Text(
            f"Chatting with {agent.model.id} (session {session}). "
            "Type 'exit' or press Ctrl-D to leave.",
            style="dim",
        )
    )
    _line_editing()
    interrupted = False
    with _ended_as_by_ctrl_c() as ended:
        try:
            with ctrl_c_reaches_input():
                _chat_loop(agent, user_id, session, stream, markdown, console, errors)
        except KeyboardInterrupt:
            console.print()
            interrupted = True
    if ended:  # the program goes on ending as the signal asks, the chat now closed
        signal.raise_signal(ended[0])
    return interrupted


@contextlib.contextmanager
def _ended_as_by_ctrl_c() -> Iterator[list[int]]:
    """In the block, SIGTERM and SIGHUP (a closed terminal) end the chat as Ctrl-C does:
    a turn being answered is kept as failed and the cursor is shown again, where the
    default action killed the process on the spot. The list holds the signal, if one came;
    the old handlers are back when the block ends."""
    ended: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield ended
        return

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if not ended:
            ended.append(signum)
            raise KeyboardInterrupt

    names = ("SIGTERM", "SIGHUP")
    kinds = [getattr(signal, name) for name in names if hasattr(signal, name)]
    # only where the signal would kill the process (not where the program ignores it, as
    # under nohup, or handles it itself)
    before = {
        kind: signal.signal(kind, on_signal)
        for kind in kinds
        if signal.getsignal(kind) is signal.SIG_DFL
    }
    try:
        yield ended
    finally:
        for kind, handler in before.items():
            signal.signal(kind, handler)


def _line_editing() -> None:
    """Read the prompt through readline where Python has it: a terminal's own line mode
    cuts a typed or pasted line at 4,095 bytes without a word, and has no editing or
    history."""
    with contextlib.suppress(ImportError):
        import readline  # noqa: F401  (input() reads through it once it is imported)


def _chat_loop(
    agent: Agent,
    user_id: str | None,
    session: str,
    stream: bool,
    markdown: bool,
    console: Console,
    errors: Console,
) -> None:
    while True:
        try:
            line = console.input("[bold green]You[/] > ")
        except EOFError:
            console.print()
            return
        if not line.strip():
            continue
        if line.strip().lower() in EXIT_WORDS:
            return
        try:
            print_response(
                agent,
                line,
                user_id=user_id,
                session_id=session,
                stream=stream,
                markdown=markdown,
                console=console,
            )
        except NotedError as exc:
            errors.print(Text(printable(f"error: {exc}"), style="red"))
