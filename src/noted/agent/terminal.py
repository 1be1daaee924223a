"""The agent in a terminal: answers rendered with rich, live while they stream, and a
chat loop with its own commands (``/help``, see :mod:`noted.agent.chat_commands`) that
ends on ``exit``, ``quit``, ``/exit``, Ctrl-D or Ctrl-C without a traceback."""

from __future__ import annotations

import contextlib
import math
import re
import signal
import sys
import threading
import time
from collections.abc import Iterator
from types import FrameType
from typing import TYPE_CHECKING, Final

from rich.console import Console, ConsoleOptions, RenderableType, RenderResult
from rich.live import Live
from rich.markdown import Markdown
from rich.segment import Segment
from rich.spinner import Spinner
from rich.text import Text

from noted._console import err, out, printable
from noted._interrupt import ctrl_c_reaches_input
from noted.agent.chat_commands import Chat, take_line
from noted.agent.events import ContentDelta, RunCompleted, ToolCallCompleted, ToolCallStarted
from noted.errors import NotedError, RunNotSavedError, RunTooLargeError, UserError
from noted.models.base import RetryWait, retries_shown
from noted.sessions import RunResult

if TYPE_CHECKING:
    from noted.agent.agent import Agent
    from noted.memory import Memory

__all__ = ["EXIT_WORDS", "chat", "print_response"]

EXIT_WORDS = frozenset({"exit", "quit", "bye", ":q"})

PROMPT = "[bold green]You[/] > "
MORE = "[dim]...[/] "  # the prompt of a message's next line, after one ending with "\\"

_SGR = re.compile(r"\x1b\[[0-9;]*m")  # the colour codes a rendered prompt has
# the bytes of a line that were not text in the encoding of standard input, as Python
# reads them where its error handler is "surrogateescape" (C and POSIX locales)
_UNDECODED = re.compile("[\udc80-\udcff]")


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


class _Awaited:
    """The status line of an answer being awaited: "thinking...", and while a failed call
    to the model waits to be tried again, "retrying in 2 s (1 of 3)..." counting down
    (where each retry was a log line of its own, printed between the prompt and the
    answer). :meth:`show` is handed the waits (see ``retries_shown``)."""

    def __init__(self) -> None:
        self._retry: tuple[RetryWait, float] | None = None  # the wait, and when it ends

    def show(self, wait: RetryWait) -> None:
        self._retry = (wait, time.monotonic() + wait.seconds)

    def __rich__(self) -> Text:
        if self._retry is None:
            return Text("thinking...")
        wait, until = self._retry
        left = math.ceil(until - time.monotonic())
        when = f"in {left} s " if left > 0 else ""
        return Text(f"retrying {when}({wait.retry} of {wait.retries})...")


def _tool_line(name: str, detail: str, error: bool = False) -> Text:
    style = "red" if error else "dim"
    return Text(printable(f"  ↳ {name}: {detail}"), style=style)


def _print_whole(console: Console, result: RunResult, markdown: bool) -> None:
    """A run's tool calls and answer, printed at once."""
    for execution in result.tool_calls:
        console.print(_tool_line(execution.name, execution.result[:200], execution.error))
    # in a file or a pipe, plain text stays as the model wrote it, its lines not cut
    whole = not markdown and not console.is_terminal
    console.print(_render(result.content or "", markdown), soft_wrap=whole)


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
    awaited = _Awaited()
    if not stream or not console.is_terminal:  # piped output gets the whole answer at once
        try:
            with console.status(awaited, spinner="dots"), retries_shown(awaited.show):
                result = agent.run(message, user_id=user_id, session_id=session_id)
        except (RunNotSavedError, RunTooLargeError) as exc:
            if exc.run is not None:  # answered, not saved: shown, then the error raised
                _print_whole(console, exc.run, markdown)
            raise
        _print_whole(console, result, markdown)
        return result
    text = ""
    finished: RunResult | None = None
    try:
        waiting = Spinner("dots", awaited, style="green")  # until the answer's first words
        with (
            Live(waiting, console=console, refresh_per_second=15, transient=True) as live,
            retries_shown(awaited.show),
        ):
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
    memory: Memory | None = None,
) -> bool:
    """Chat on ``console`` (standard output); a failed turn's ``error: ...`` line goes to
    ``errors`` (standard error, one line when it is not a terminal) and the chat goes on.
    A line such as ``/memories`` is one of the chat's commands (``/help`` lists them),
    which read ``memory`` when the agent uses none.
    Returns whether Ctrl-C ended it (at the prompt or during an answer), rather than
    ``exit``, ``quit``, ``/exit`` or Ctrl-D."""
    console = console or (Console() if sys.stdout.isatty() else out)
    errors = errors or err
    if not console.is_terminal and not console.is_jupyter:
        markdown = False  # a file or a pipe gets the answers as the model wrote them
    session = session_id or agent.get_session_id(user_id)
    typed = sys.stdin.isatty()
    said = f"Chatting with {agent.model.id} (session {session})."
    if typed:
        console.print(
            Text(f"{said} Type /help for commands, 'exit' or Ctrl-D to leave.", style="dim")
        )
    else:  # messages from a pipe or a file: standard output is the answers alone
        errors.print(Text(said, style="dim"))
    interrupted = False
    with _ended_as_by_ctrl_c() as ended, _line_editing() as marked:
        prompts = (_prompt(console, PROMPT, marked), _prompt(console, MORE, marked))
        try:
            with ctrl_c_reaches_input():
                _chat_loop(
                    Chat(agent, user_id, session, console, errors, memory=memory),
                    stream,
                    markdown,
                    prompts if typed else ("", ""),
                )
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


@contextlib.contextmanager
def _line_editing() -> Iterator[bool]:
    """Read the prompt through readline where Python has it: a terminal's own line mode
    cuts a typed or pasted line at 4,095 bytes without a word, and has no editing or
    history. With GNU readline, the block is given True: the prompt's colours can be
    marked for it to leave out of the prompt's width (else it redraws a wrapped line or
    history over the prompt), and it takes a paste of several lines as one message
    (bracketed paste, which Python turns off, is on in the block)."""
    try:
        import readline
    except ImportError:
        yield False
        return
    if "libedit" in (readline.__doc__ or ""):  # no bracketed paste, its own prompt rules
        yield False
        return
    readline.parse_and_bind("set enable-bracketed-paste on")
    try:
        yield True
    finally:
        readline.parse_and_bind("set enable-bracketed-paste off")


def _prompt(console: Console, markup: str, marked: bool) -> str:
    """``markup`` rendered for ``input()``: ``marked``, each colour code between the
    \\x01 and \\x02 with which GNU readline leaves it out of the prompt's width; else
    without colours, which another line editor (libedit) would count as columns."""
    with console.capture() as captured:
        console.print(markup, end="")
    rendered = captured.get()
    if not marked:
        return _SGR.sub("", rendered)
    return _SGR.sub(lambda code: f"\x01{code.group()}\x02", rendered)


def _read_message(prompts: tuple[str, str], console: Console) -> str:
    """A message: a line, and the next one after each that ends with a backslash (the
    backslash left out), as a message of several lines is typed. Ctrl-D (the end of
    input) on a continuation line ends the message there, with what was typed so far,
    and the chat goes on (it ended, the message lost); EOFError comes out only at the
    first line, where Ctrl-D leaves the chat."""
    lines = [_input(prompts[0])]
    while lines[-1].endswith("\\"):
        lines[-1] = lines[-1][:-1]
        try:
            lines.append(_input(prompts[1]))
        except EOFError:
            if prompts[1]:  # the line the prompt was on
                console.print()
            break
    return "\n".join(lines)


def _input(prompt: str) -> str:
    """A line read with ``input()``, each byte of it that is not text in the encoding of
    standard input (a terminal set to Latin-1, a mistyped key) as U+FFFD: the line was
    refused as "not valid Unicode text", or ended the chat with a traceback where the
    encoding's errors are strict. A byte order mark at its start (a file saved with one,
    piped in) is left out: "/memories" after one was sent to the model."""
    try:
        line = input(prompt)
    except UnicodeDecodeError as exc:
        if not sys.stdin.isatty():  # the error holds a block of the stream, not the line
            raise UserError(f"standard input is not {exc.encoding} text ({exc.reason})") from None
        line = exc.object.decode(exc.encoding, "replace").rstrip("\n")
    return _UNDECODED.sub("\ufffd", line.removeprefix("\ufeff"))


def _chat_loop(chat: Chat, stream: bool, markdown: bool, prompts: tuple[str, str]) -> None:
    console = chat.console
    while True:
        try:
            line = _read_message(prompts, console)
        except EOFError:
            if prompts[0]:  # the line the prompt was on
                console.print()
            return
        if not line.strip():
            continue
        if line.strip().lower() in EXIT_WORDS:
            return
        message = take_line(line, chat)
        if chat.leaving:
            return
        if message is None:
            continue
        try:
            result = print_response(
                chat.agent,
                message,
                user_id=chat.user_id,
                session_id=chat.session,
                stream=stream,
                markdown=markdown,
                console=console,
            )
        except NotedError as exc:
            chat.errors.print(Text(printable(f"error: {exc}"), style="red"))
            continue
        if result.stop_reason in _STOPPED:
            chat.errors.print(Text(_STOPPED[result.stop_reason], style="yellow"))


# What the chat says of an answer that did not end as the model meant it to
_STOPPED: Final = {
    "max_tokens": "note: the answer was cut off at the model's token limit",
    "tool_limit": "note: the answer stopped at a limit of tool calls in one turn",
    "refused": "note: the model's provider refused the answer or withheld it (a content filter)",
}
