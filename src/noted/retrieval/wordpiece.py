"""BERT's WordPiece tokenizer in plain Python, from a ``vocab.txt`` (one token a line).

Text is cleaned (control characters, U+0000 and U+FFFD dropped; whitespace made a space),
CJK ideographs are set apart, accents are stripped (NFD, combining marks dropped) and the
text lowercased, then it is split on whitespace and punctuation. Each word becomes the
longest vocabulary pieces that spell it from the left, later pieces written ``##piece``; a
word longer than 100 characters, or one that cannot be spelled, becomes ``[UNK]``. The
result matches the uncased BERT tokenizers of sentence-transformers models.

What each step does to a character is worked out when the character is first met and kept
(for up to 65,536 characters), so each step over a text is one ``str.translate``.
"""

from __future__ import annotations

import functools
import os
import unicodedata

from noted.errors import UserError

__all__ = ["WordPieceTokenizer"]

_SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]")
_MAX_WORD_CHARS = 100
_WORD_CACHE_SIZE = 65_536
_CHAR_CACHE_SIZE = 65_536

# (first, last) code points of the CJK ideograph blocks BERT sets apart as words.
_CJK_BLOCKS = (
    (0x4E00, 0x9FFF),
    (0x3400, 0x4DBF),
    (0x20000, 0x2A6DF),
    (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F),
    (0x2B820, 0x2CEAF),
    (0xF900, 0xFAFF),
    (0x2F800, 0x2FA1F),
)


def _is_cjk(code: int) -> bool:
    return any(first <= code <= last for first, last in _CJK_BLOCKS)


def _is_punctuation(char: str) -> bool:
    # Every non-alphanumeric printable ASCII character counts, "$", "^" and "`" included.
    code = ord(char)
    if 33 <= code <= 47 or 58 <= code <= 64 or 91 <= code <= 96 or 123 <= code <= 126:
        return True
    return unicodedata.category(char).startswith("P")


class _CharMap(dict[int, str | None]):
    """A ``str.translate`` table that works out each character's replacement when it is
    first met, and keeps it while the table is not full."""

    def _replace(self, char: str) -> str | None:
        raise NotImplementedError

    def __missing__(self, code: int) -> str | None:
        replacement = self._replace(chr(code))
        if len(self) < _CHAR_CACHE_SIZE:
            self[code] = replacement
        return replacement


class _Clean(_CharMap):
    """Drops control characters, makes whitespace a space and pads CJK ideographs."""

    def _replace(self, char: str) -> str | None:
        if char in "\t\n\r":
            return " "
        code = ord(char)
        if code in (0, 0xFFFD) or unicodedata.category(char).startswith("C"):
            return None
        if char.isspace():
            return " "
        if _is_cjk(code):
            return f" {char} "
        return char


class _DropMarks(_CharMap):
    """Drops combining (nonspacing) marks, what is left of accents after NFD."""

    def _replace(self, char: str) -> str | None:
        return None if unicodedata.category(char) == "Mn" else char


class _LowerSplit(_CharMap):
    """Lowercases character by character and pads punctuation, so a split on whitespace
    leaves the words and the punctuation marks."""

    def _replace(self, char: str) -> str | None:
        if _is_punctuation(char):
            return f" {char} "
        return char.lower()


_CLEAN = _Clean()
_DROP_MARKS = _DropMarks()
_LOWER_SPLIT = _LowerSplit()


def basic_tokenize(text: str) -> list[str]:
    """The words and punctuation marks of ``text``, cleaned, accent-free and lowercase."""
    text = text.translate(_CLEAN)
    if not text.isascii():
        text = unicodedata.normalize("NFD", text).translate(_DROP_MARKS)
    return text.translate(_LOWER_SPLIT).split()


def _read_vocab(path: str | os.PathLike[str]) -> dict[str, int]:
    vocab: dict[str, int] = {}
    try:
        with open(path, encoding="utf-8") as file:
            # A token's id is its line number; a token listed twice keeps the later one.
            for index, line in enumerate(file):
                vocab[line.rstrip()] = index
    except FileNotFoundError:
        raise UserError(f"no vocabulary file at {os.fspath(path)!r}") from None
    except UnicodeDecodeError as error:
        raise UserError(f"{os.fspath(path)!r} is not a UTF-8 vocabulary file: {error}") from None
    return vocab


class WordPieceTokenizer:
    """``WordPieceTokenizer("vocab.txt").encode(text)`` gives the token ids of ``[CLS]
    text [SEP]``, cut to ``max_tokens`` (``[SEP]`` stays last)."""

    def __init__(self, vocab_path: str | os.PathLike[str], *, max_tokens: int = 256) -> None:
        if type(max_tokens) is not int or max_tokens < 2:
            raise UserError(f"max_tokens must be an integer >= 2, got {max_tokens!r}")
        vocab = _read_vocab(vocab_path)
        missing = [token for token in _SPECIAL_TOKENS if token not in vocab]
        if missing:
            raise UserError(
                f"{os.fspath(vocab_path)!r} is not a BERT vocabulary: it has no "
                + ", ".join(missing)
            )
        self._vocab = vocab
        self.max_tokens = max_tokens
        self.pad_id = vocab["[PAD]"]
        self.unk_id = vocab["[UNK]"]
        self.cls_id = vocab["[CLS]"]
        self.sep_id = vocab["[SEP]"]
        # No piece is longer than the longest token, so no longer substring is looked up.
        self._longest = max(map(len, vocab))
        self._word_ids = functools.lru_cache(maxsize=_WORD_CACHE_SIZE)(self._pieces)

    def __len__(self) -> int:
        return len(self._vocab)

    def _pieces(self, word: str) -> tuple[int, ...]:
        if len(word) > _MAX_WORD_CHARS:
            return (self.unk_id,)
        vocab = self._vocab
        ids: list[int] = []
        start = 0
        while start < len(word):
            end = min(len(word), start + self._longest)
            prefix = "##" if start else ""
            while end > start:
                found = vocab.get(prefix + word[start:end])
                if found is not None:
                    ids.append(found)
                    break
                end -= 1
            else:
                return (self.unk_id,)
            start = end
        return tuple(ids)

    def tokenize(self, text: str) -> list[int]:
        """The ids of ``text``'s pieces, without ``[CLS]``, ``[SEP]`` or a length limit."""
        ids: list[int] = []
        for word in basic_tokenize(text):
            ids.extend(self._word_ids(word))
        return ids

    def encode(self, text: str) -> list[int]:
        """``[CLS]``, the ids of ``text``'s pieces, ``[SEP]``: at most ``max_tokens``."""
        ids = [self.cls_id]
        limit = self.max_tokens - 2
        for word in basic_tokenize(text):
            ids.extend(self._word_ids(word))
            if len(ids) > limit:
                del ids[limit + 1 :]
                break
        ids.append(self.sep_id)
        return ids
