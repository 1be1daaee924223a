"""Porter's suffix-stripping algorithm (M. F. Porter, "An algorithm for suffix stripping",
Program 14(3), 1980), the stemmer of SQLite's ``porter`` tokenizer: stores that rank
keywords in the process stem as SQLite's index does, so "hike", "hiked" and "hiking"
meet, and so do "city" and "cities".

Terms used below, as in the paper: a *consonant* is a letter other than a, e, i, o, u,
and other than a y that follows a consonant; a stem's *measure* m is the number of
vowel-consonant runs in it; ``*v*`` is "holds a vowel", ``*d`` "ends in a double
consonant", ``*o`` "ends consonant-vowel-consonant, the last not w, x or y".
"""

from __future__ import annotations

import functools

__all__ = ["porter_stem"]

_VOWELS = frozenset("aeiou")


def _consonant(word: str, i: int) -> bool:
    c = word[i]
    if c in _VOWELS:
        return False
    if c == "y":
        return i == 0 or not _consonant(word, i - 1)
    return True


def _measure(stem: str) -> int:
    """m: how many vowel runs are followed by a consonant."""
    m, in_vowels = 0, False
    for i in range(len(stem)):
        if _consonant(stem, i):
            if in_vowels:
                m += 1
            in_vowels = False
        else:
            in_vowels = True
    return m


def _has_vowel(stem: str) -> bool:
    return any(not _consonant(stem, i) for i in range(len(stem)))


def _double_consonant(stem: str) -> bool:
    return len(stem) >= 2 and stem[-1] == stem[-2] and _consonant(stem, len(stem) - 1)


def _cvc(stem: str) -> bool:
    n = len(stem)
    return (
        n >= 3
        and _consonant(stem, n - 3)
        and not _consonant(stem, n - 2)
        and _consonant(stem, n - 1)
        and stem[-1] not in "wxy"
    )


def _step1a(word: str) -> str:
    if word.endswith("sses") or word.endswith("ies"):
        return word[:-2]
    if word.endswith("ss"):
        return word
    if word.endswith("s"):
        return word[:-1]
    return word


def _step1b(word: str) -> str:
    if word.endswith("eed"):
        return word[:-1] if _measure(word[:-3]) > 0 else word
    for suffix in ("ed", "ing"):
        if word.endswith(suffix):
            stem = word[: -len(suffix)]
            if not _has_vowel(stem):
                return word
            return _step1b_tidy(stem)
    return word


def _step1b_tidy(stem: str) -> str:
    """After -ed or -ing: put back an e where the stem needs one, undo a doubled letter."""
    if stem.endswith(("at", "bl", "iz")):
        return stem + "e"
    if _double_consonant(stem) and stem[-1] not in "lsz":
        return stem[:-1]
    if _measure(stem) == 1 and _cvc(stem):
        return stem + "e"
    return stem


def _step1c(word: str) -> str:
    if word.endswith("y") and _has_vowel(word[:-1]):
        return word[:-1] + "i"
    return word


# Steps 2 and 3: the longest suffix that matches decides; its stem must have m > 0.
_STEP2 = (
    ("ational", "ate"),
    ("tional", "tion"),
    ("enci", "ence"),
    ("anci", "ance"),
    ("izer", "ize"),
    ("bli", "ble"),  # the paper's abli -> able, as its author's own code has it
    ("alli", "al"),
    ("entli", "ent"),
    ("eli", "e"),
    ("ousli", "ous"),
    ("ization", "ize"),
    ("ation", "ate"),
    ("ator", "ate"),
    ("alism", "al"),
    ("iveness", "ive"),
    ("fulness", "ful"),
    ("ousness", "ous"),
    ("aliti", "al"),
    ("iviti", "ive"),
    ("biliti", "ble"),
    ("logi", "log"),  # likewise, from the author's code
)
_STEP3 = (
    ("icate", "ic"),
    ("ative", ""),
    ("alize", "al"),
    ("iciti", "ic"),
    ("ical", "ic"),
    ("ful", ""),
    ("ness", ""),
)
# Step 4: taken off when the stem left has m > 1 (-ion only after s or t).
_STEP4 = (
    "al",
    "ance",
    "ence",
    "er",
    "ic",
    "able",
    "ible",
    "ant",
    "ement",
    "ment",
    "ent",
    "ion",
    "ou",
    "ism",
    "ate",
    "iti",
    "ous",
    "ive",
    "ize",
)


def _longest(word: str, suffixes: tuple[str, ...]) -> str | None:
    found = [s for s in suffixes if word.endswith(s)]
    return max(found, key=len) if found else None


def _replace(word: str, rules: tuple[tuple[str, str], ...]) -> str:
    table = dict(rules)
    suffix = _longest(word, tuple(table))
    if suffix is None:
        return word
    stem = word[: -len(suffix)]
    return stem + table[suffix] if _measure(stem) > 0 else word


def _step4(word: str) -> str:
    suffix = _longest(word, _STEP4)
    if suffix is None:
        return word
    stem = word[: -len(suffix)]
    if _measure(stem) <= 1:
        return word
    if suffix == "ion" and not stem.endswith(("s", "t")):
        return word
    return stem


def _step5(word: str) -> str:
    if word.endswith("e"):
        stem = word[:-1]
        m = _measure(stem)
        if m > 1 or (m == 1 and not _cvc(stem)):
            word = stem
    if word.endswith("ll") and _measure(word) > 1:
        word = word[:-1]
    return word


@functools.lru_cache(maxsize=65_536)
def porter_stem(word: str) -> str:
    """The stem of a lowercase word. Words of fewer than three letters, and words with
    anything but the letters a-z (digits, other scripts), are left as they are."""
    if len(word) < 3 or not (word.isascii() and word.isalpha() and word.islower()):
        return word
    for step in (_step1a, _step1b, _step1c):
        word = step(word)
    word = _replace(word, _STEP2)
    word = _replace(word, _STEP3)
    return _step5(_step4(word))
