from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta

from noted._time import FLOAT_EXACT_US, from_micros, now_micros, to_micros
from noted.db._rows import rows_to_memories


def test_microseconds_round_trip_exactly_across_the_calendar() -> None:
    rng = random.Random(7)
    lo, hi = to_micros(datetime(1, 1, 1, tzinfo=UTC)), to_micros(datetime(9999, 12, 31, tzinfo=UTC))
    samples = [rng.randrange(-FLOAT_EXACT_US, FLOAT_EXACT_US) for _ in range(20_000)]
    samples += [rng.randrange(lo, hi) for _ in range(2_000)]
    samples += [0, -1, 1, FLOAT_EXACT_US - 1, FLOAT_EXACT_US, -FLOAT_EXACT_US, lo, hi]
    for us in samples:
        assert to_micros(from_micros(us)) == us, us
    rows = [("id", "u", "m", "[]", None, None, None, None, us, us) for us in samples]
    for us, memory in zip(samples, rows_to_memories(rows), strict=True):
        assert memory.created_at is not None
        assert to_micros(memory.created_at) == us, us


def test_the_clock_never_repeats_or_goes_back() -> None:
    stamps = [now_micros() for _ in range(10_000)]
    assert all(b > a for a, b in itertools.pairwise(stamps))


def test_iso_writes_what_isoformat_writes() -> None:
    from datetime import timezone

    from noted._time import iso

    rng = random.Random(7)
    for _ in range(20_000):
        value = from_micros(rng.randrange(-(10**16), 10**17))
        assert iso(value) == value.isoformat(timespec="microseconds")
    assert iso(from_micros(0)) == "1970-01-01T00:00:00.000000+00:00"
    other = datetime(2024, 5, 6, 7, 8, 9, tzinfo=timezone(timedelta(hours=2)))
    assert iso(other) == "2024-05-06T07:08:09.000000+02:00"
