"""What a SQL store (SQLite, PostgreSQL) has in common when one of its tables is gone:
which of its tables are missing, by the row of ``noted_schema_versions`` that covers
them, and the error of a table gone whose row says it is there."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from noted.errors import StoreError

__all__ = ["VERSION_TABLE", "gone_though_recorded", "missing_tables"]

VERSION_TABLE = "noted_schema_versions"
"""The table of each store's schema versions, one row for each family of tables."""


def missing_tables(
    families: Mapping[str, Sequence[str]], there: Callable[[str], bool]
) -> dict[str, list[str]]:
    """The tables of ``families`` (each row of :data:`VERSION_TABLE` with the tables it
    covers) for which ``there`` says no, by the row that covers them."""
    found: dict[str, list[str]] = {}
    for family, tables in families.items():
        for table in tables:
            if not there(table):
                found.setdefault(family, []).append(table)
    return found


def gone_though_recorded(
    start: str, family: str, version: int, others: Sequence[str], restore: str, creates: str
) -> StoreError:
    """The error of tables of ``family`` gone (``start`` says which) while its row records
    it at ``version``: the set-up cannot tell what else went with them, so it makes
    nothing. The ways back: restore ``restore`` from a backup, or drop ``others`` (the
    family's tables still there) and delete the row, after which ``creates`` says when
    the store makes them again."""
    return StoreError(
        f"{start}, though {VERSION_TABLE} records {family!r} at version {version} (dropped "
        f"by hand?). Restore {restore} from a backup; or, to start them again empty, drop "
        f"{', '.join(others) or 'nothing else'} and delete the row of {family!r} from "
        f"{VERSION_TABLE}: {creates}"
    )
