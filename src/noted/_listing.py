"""How the ``noted`` command lays out records (memories, history events, sessions, jobs,
a memory's fields) for the width it has, cutting nothing.

A listing is a table when every value a person copies (an id, a time) fits whole beside a
text column of a readable width; on a narrower terminal it is one block per record: the
record's ids and times on its first line, its text wrapped under them, its other values as
``name: value`` after. Either way a value is never cut short with "…": the text wraps,
a short value wraps only between its words, and a single word wider than the whole
terminal is folded onto the next line.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

from rich import box
from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, RenderableType, RenderResult
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from noted._console import printable

__all__ = ["Field", "Listing", "Record"]

Role = Literal["head", "text", "detail"]
Justify = Literal["left", "right"]

TEXT_MIN = 30
"""The fewest columns a table gives its text column (fewer, and it is a block per record)."""
TEXT_EASY = 60
"""The text column's width before the short values get more than their longest word."""
INDENT = 2
"""How far a block's text and values are indented under its first line."""
_GAP = "   "  # between two values on one line of a block


@dataclass(frozen=True)
class Field:
    """A column of a listing. ``head``: a value a person copies whole (an id, a time):
    never wrapped, and on a block's first line. ``text``: the record's main text, wrapped
    to any width and given most of the room. ``detail``: a short value (topics, a user, a
    count), wrapped only between its words, and ``name: value`` in a block. ``named``:
    a text shown after its name in a block too (an error, where a memory's text needs
    none)."""

    name: str
    role: Role = "detail"
    justify: Justify = "left"
    style: str = ""
    named: bool = False


def _words(value: str) -> list[str]:
    return value.split() or [""]


def _longest_word(values: Sequence[str]) -> int:
    return max((cell_len(word) for value in values for word in _words(value)), default=0)


def _longest_line(values: Sequence[str]) -> int:
    return max((cell_len(line) for value in values for line in value.splitlines()), default=0)


@dataclass(frozen=True)
class _Span:
    """The fewest and the most columns a column of a table may take."""

    least: int
    most: int


def _span(field: Field, cells: Sequence[str]) -> _Span:
    """The columns a field takes in a table: its header whole, and at the least its
    heads whole on one line, each word of its text and details whole, and for a text
    ``TEXT_MIN`` (or the longest text's width, when less)."""
    most = max(cell_len(field.name), _longest_line(cells))
    if field.role == "head":
        return _Span(most, most)
    least = max(cell_len(field.name), _longest_word(cells))
    if field.role == "text":
        least = max(least, min(TEXT_MIN, most))
    return _Span(least, most)


def _grow(
    widths: list[int], spans: Sequence[_Span], which: Sequence[int], spare: int, cap: int
) -> int:
    """Widen the columns ``which``, in order, toward their most (``cap`` at the most) out
    of ``spare`` columns; what is left of ``spare``."""
    for i in which:
        more = min(spare, max(0, min(cap, spans[i].most) - widths[i]))
        widths[i] += more
        spare -= more
    return spare


def _table_widths(fields: Sequence[Field], spans: Sequence[_Span], room: int) -> list[int] | None:
    """The width of each column of a table in ``room`` columns (its borders and padding
    already taken off), or None when its ids and times cannot be whole beside the least
    width of its other columns: the text first gets up to ``TEXT_EASY``, then the short
    values their longest line, then the text the rest."""
    widths = [span.least for span in spans]
    spare = room - sum(widths)
    if spare < 0:
        return None
    texts = [i for i, f in enumerate(fields) if f.role == "text"]
    details = [i for i, f in enumerate(fields) if f.role == "detail"]
    spare = _grow(widths, spans, texts, spare, TEXT_EASY)
    spare = _grow(widths, spans, details, spare, room)
    _grow(widths, spans, texts, spare, room)
    return widths


def _packed(chunks: Sequence[Text], width: int) -> Iterator[Text]:
    """``chunks`` on as few lines of ``width`` as they fit, a chunk split over lines only
    when it is wider than a line by itself."""
    line = Text()
    for chunk in chunks:
        if line and cell_len(line.plain) + len(_GAP) + cell_len(chunk.plain) > width:
            yield line
            line = Text()
        if line:
            line.append(_GAP)
        line.append_text(chunk)
    if line:
        yield line


def _detail_lines(details: Sequence[tuple[str, str]], width: int) -> Iterator[Text]:
    """``name: value`` for each detail, as many on a line of ``width`` as fit; one too wide
    for a line is a line of its own, wrapped between its words."""
    chunks: list[Text] = []
    for name, value in details:
        chunk = Text.assemble((f"{name}:", "bold"), " ", value)
        if cell_len(chunk.plain) <= width:
            chunks.append(chunk)
            continue
        yield from _packed(chunks, width)
        chunks = []
        yield chunk
    yield from _packed(chunks, width)


def _folding(text: Text) -> Text:
    text.overflow = "fold"
    return text


def _indented(text: Text) -> Padding:
    return Padding(_folding(text), (0, 0, 0, INDENT), expand=False)


@dataclass
class Listing:
    """Records under a title, as a table or as blocks, whichever the width allows
    (decided when it is printed, for the console's width). Cells are plain text, never
    rich markup."""

    title: str
    fields: Sequence[Field]
    rows: Sequence[Sequence[str]]
    caption: str = ""

    def __post_init__(self) -> None:
        # a memory's text, a session's: never an escape sequence for the terminal
        self.title = printable(self.title)
        self.rows = [[printable(cell) for cell in row] for row in self.rows]

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        columns = [[row[i] for row in self.rows] for i in range(len(self.fields))]
        spans = [_span(f, cells) for f, cells in zip(self.fields, columns, strict=True)]
        # box.SIMPLE_HEAD: one column of padding each side of a cell, an edge each side of
        # the table and a space between two columns
        frame = 3 * len(self.fields) + 1
        widths = _table_widths(self.fields, spans, options.max_width - frame)
        if widths is None:
            yield from self._blocks(options.max_width)
        else:
            yield self._table(widths)

    def _table(self, widths: Sequence[int]) -> Table:
        table = Table(
            title=Text(self.title, style="table.title"),
            title_justify="left",
            caption=Text(self.caption, style="table.caption") if self.caption else None,
            caption_justify="left",
            box=box.SIMPLE_HEAD,
        )
        for field, width in zip(self.fields, widths, strict=True):
            table.add_column(
                field.name,
                justify=field.justify,
                style=field.style,
                width=width,
                no_wrap=field.role == "head",
                overflow="fold",
            )
        for row in self.rows:
            table.add_row(*(Text(cell) for cell in row))
        return table

    def _blocks(self, width: int) -> Iterator[RenderableType]:
        yield _folding(Text(self.title, style="table.title"))
        for row in self.rows:
            yield Text()
            yield from self._block(row, width)
        if self.caption:
            yield Text()
            yield _folding(Text(self.caption, style="table.caption"))

    def _block(self, row: Sequence[str], width: int) -> Iterator[RenderableType]:
        """One record: its heads on its first lines, then its text and its details, in
        the order of the fields, indented."""
        cells = list(zip(self.fields, row, strict=True))
        heads = [Text(cell, style=f.style) for f, cell in cells if f.role == "head" and cell]
        yield from map(_folding, _packed(heads, width))
        inner = max(1, width - INDENT)
        details: list[tuple[str, str]] = []
        for field, cell in cells:
            if (field.role == "detail" or field.named) and cell:
                details.append((field.name, cell))
            elif field.role == "text":
                yield from map(_indented, _detail_lines(details, inner))
                details = []
                yield _indented(Text(cell))
        yield from map(_indented, _detail_lines(details, inner))


@dataclass
class Record:
    """One record's fields, a name and a value a line: beside each other when the longest
    word of the values fits beside the names, else each value under its name."""

    pairs: Sequence[tuple[str, str]]

    def __post_init__(self) -> None:
        self.pairs = [(name, printable(value)) for name, value in self.pairs]

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        names = max((cell_len(name) for name, _ in self.pairs), default=0)
        values = _longest_word([value for _, value in self.pairs])
        if names + values + 4 <= options.max_width:  # two columns, padded each side
            table = Table(show_header=False, box=None)
            table.add_column(style="bold", no_wrap=True)
            table.add_column(overflow="fold")
            for name, value in self.pairs:
                table.add_row(Text(name), Text(value))
            yield table
            return
        for name, value in self.pairs:
            yield Text(name, style="bold")
            yield _indented(Text(value))
