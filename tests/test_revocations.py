"""Token revocations kept by every backend: per user, for everyone, only ever moving
forward, and seen by another store object on the same database (another worker)."""

from __future__ import annotations

import math
import threading
from pathlib import Path

import pytest

from conftest import open_store, server_url
from noted import MemoryStore
from noted.db.postgres import PostgresDb
from noted.db.revocations import TokenRevocations
from noted.errors import StoreError, UserError
from servers import Server


def revocations(store: MemoryStore) -> TokenRevocations:
    assert isinstance(store, TokenRevocations)
    return store


def test_per_user_and_everyone(store: MemoryStore) -> None:
    db = revocations(store)
    assert db.tokens_revoked_before("alice") is None  # nothing revoked yet: nothing made
    assert db.revoke_tokens("alice", 1000.5) == 1000.5
    assert db.tokens_revoked_before("alice") == 1000.5
    assert db.tokens_revoked_before("bob") is None
    assert db.revoke_tokens("alice", 900.0) == 1000.5  # an earlier cutoff changes nothing
    assert db.tokens_revoked_before("alice") == 1000.5
    assert db.revoke_tokens(None, 1200.25) == 1200.25
    assert db.tokens_revoked_before("bob") == 1200.25
    assert db.tokens_revoked_before("alice") == 1200.25  # everyone's is later than hers
    assert db.revoke_tokens("alice", 1_700_000_000.123) == 1_700_000_000.123
    assert db.tokens_revoked_before("alice") == 1_700_000_000.123
    assert db.tokens_revoked_before("bob") == 1200.25
    assert db.tokens_revoked_before("") == 1200.25  # never a user id; no crash either


@pytest.mark.parametrize(
    ("user", "before"),
    [("", 1.0), ("   ", 1.0), (5, 1.0), ("x" * 256, 1.0), ("a", math.nan), ("a", True), ("a", "1")],
)
def test_bad_revocations_are_refused(store: MemoryStore, user: object, before: object) -> None:
    db = revocations(store)
    with pytest.raises(UserError):
        db.revoke_tokens(user, before)  # type: ignore[arg-type]
    assert db.tokens_revoked_before("a") is None


@pytest.mark.parametrize("kind", ["sqlite", "postgres", "mongo", "redis"])
def test_another_store_object_sees_a_revocation(
    kind: str, servers: dict[str, Server | str], tmp_path: Path
) -> None:
    names = {"memory_table": f"rv_{kind}_memories", "session_table": f"rv_{kind}_sessions"}
    first = open_store(kind, servers, tmp_path, **names)
    second = open_store(kind, servers, tmp_path, **names)
    if kind == "sqlite":
        second.close()
        second = type(first)(first.db_file, **names)  # type: ignore[attr-defined]
    try:
        revocations(second).tokens_revoked_before("alice")  # opened before the revocation
        revocations(first).revoke_tokens("alice", 42.0)
        assert revocations(second).tokens_revoked_before("alice") == 42.0
    finally:
        first.close()
        second.close()


def test_a_token_issued_just_after_a_revocation_works(store: MemoryStore) -> None:
    # In the same millisecond as the revocation, too; those issued before it do not.
    from noted.server.auth import Auth, Unauthorized

    auth = Auth("an-api-key-of-at-least-32-characters-0123", revocations=revocations(store))
    for _ in range(50):
        before = auth.issue("ava")
        auth.revoke("ava")
        after = auth.issue("ava")
        assert auth.authenticate(f"Bearer {after}") is not None
        with pytest.raises(Unauthorized):
            auth.authenticate(f"Bearer {before}")


def revoke_at_once(stores: list[PostgresDb]) -> list[StoreError]:
    """Store ``n`` revokes ``user<n>``'s tokens, every store at the same moment (a thread
    each); the failures."""
    start = threading.Barrier(len(stores))
    failures: list[StoreError] = []

    def revoke(store: PostgresDb, n: int) -> None:
        start.wait()
        try:
            store.revoke_tokens(f"user{n}", 100.0 + n)
        except StoreError as error:
            failures.append(error)

    threads = [threading.Thread(target=revoke, args=(s, n)) for n, s in enumerate(stores)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return failures


def test_first_revocations_sent_to_several_servers_at_once(
    servers: dict[str, Server | str],
) -> None:
    # The first revocation makes the table. Sent to four servers of one database at once
    # (a store object each, as each process has its own), every one is kept: none fails
    # on the others making the table at the same time.
    url = server_url(servers, "postgres")
    for attempt in range(5):
        table = f"rv_at_once{attempt}"
        stores = [PostgresDb(url, memory_table=table, session_table=f"{table}_s") for _ in range(4)]
        try:
            for store in stores:
                assert store.tokens_revoked_before("ava") is None  # set up, nothing revoked
            assert revoke_at_once(stores) == []
            assert [stores[0].tokens_revoked_before(f"user{n}") for n in range(4)] == [
                100.0,
                101.0,
                102.0,
                103.0,
            ]
        finally:
            for store in stores:
                store.close()
