"""MongoDb's background jobs: ``<session_table>_jobs``, one document per job.

A standalone server has no multi-document transactions, so a run's jobs are written in
the run's own document (``jobs``, with ``jobs_pending: true``), which is atomic; right
after, they are copied to the jobs collection (keyed by job id, so copying twice is
harmless) and the run's flag is dropped. A process that dies between the two leaves the
flag, and the next claim (of any process) copies that run's jobs after a grace period.

A claim reads the first unfinished jobs in order (``seq``: numbers the server gives out,
one ``$inc`` of a counter document in the jobs collection per recorded run, so jobs of
one user recorded on two hosts are ordered whatever their clocks say), picks the first due
one whose group (its key, and its agent for a memory job: see
:func:`~noted.db.jobs.order_group`) has no earlier unfinished job, and takes it with a
compare-and-set on the state it read: two workers never take one job. Completing deletes
the job after its writes; a worker dying in between leaves it, and its retry re-applies
the stored plan without what is already done (``JobWorker``: a clear deletes only the
memories listed with the plan before its first attempt, an add or update the user's
history shows this job's run made is skipped), so nothing is changed twice.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from noted._time import now_micros
from noted.db.jobs import (
    ANY_AGENT,
    JOB_STATUSES,
    Job,
    JobStatus,
    after_failure,
    check_status,
    clip_error,
    order_group,
)
from noted.db.mongodb import sessions
from noted.db.mongodb.server import ensure_indexes
from noted.db.sessions_core import check_run
from noted.sessions import RunResult

if TYPE_CHECKING:
    from pymongo.collection import Collection

__all__ = ["MongoJobs"]

T = TypeVar("T")
Doc = dict[str, Any]
_SCAN = 1000  # unfinished jobs a claim looks at
_GRACE_US = 30_000_000  # a run's jobs not copied after this long were left by a dead process
_JOB_INDEXES: list[tuple[str, list[tuple[str, int]], dict[str, Any]]] = [
    ("status_seq", [("status", 1), ("seq", 1)], {}),
]
_RUN_INDEXES: list[tuple[str, list[tuple[str, int]], dict[str, Any]]] = [
    ("jobs_pending", [("jobs_pending", 1)], {}),
]


_SEQ = "~seq"  # the counter of the jobs' order: a document of the jobs collection, no status
_LISTED: Doc = {"$in": list(JOB_STATUSES)}  # every job, not the counter


def _numbered(jobs: Collection[Doc], docs: Sequence[Doc]) -> None:
    """Number ``docs`` in the jobs' order, from the server's counter (one round trip)."""
    from pymongo import ReturnDocument

    counter = jobs.find_one_and_update(
        {"_id": _SEQ}, {"$inc": {"n": len(docs)}}, upsert=True, return_document=ReturnDocument.AFTER
    )
    assert counter is not None  # upserted
    first = int(counter["n"]) - len(docs) + 1
    for i, doc in enumerate(docs):
        doc["seq"] = first + i


def _doc(job: Job) -> Doc:
    return {
        "_id": job.job_id,
        "seq": job.created_at,
        "key": job.key,
        "agent": job.agent_id,
        "status": "pending",
        "attempts": 0,
        "due_at": job.due_at or job.created_at,
        "lease_until": None,
        "owner": None,
        "error": None,
        "plan": None,
        "payload": job.payload(),
    }


def _job(doc: Doc) -> Job:
    return Job.from_payload(
        doc["_id"],
        doc["payload"],
        status=doc["status"],
        attempts=int(doc["attempts"]),
        due_at=int(doc["due_at"]),
        lease_until=doc.get("lease_until"),
        owner=doc.get("owner"),
        error=doc.get("error"),
        plan=doc.get("plan"),
    )


def _unfinished(now: int) -> Doc:
    """The query of unfinished jobs (see ``JobStore.unfinished_jobs``)."""
    return {
        "$or": [
            {"status": "running"},
            {"status": "pending", "attempts": 0},
            {"status": "pending", "due_at": {"$lte": now}},
        ]
    }


def _copy(jobs: Collection[Doc], docs: Sequence[Doc]) -> None:
    for doc in docs:
        jobs.update_one({"_id": doc["_id"]}, {"$setOnInsert": doc}, upsert=True)


_completing = threading.local()  # .depth: jobs this thread is completing


class MongoJobs:
    """The :class:`~noted.db.jobs.JobStore` methods of MongoDb."""

    session_table: str
    _where: str
    _db: Callable[..., Any]

    def _jobs(self, runs: Collection[Doc]) -> Collection[Doc]:
        jobs = runs.database[self.session_table + "_jobs"]
        if not self.__dict__.get("_jobs_indexed"):
            ensure_indexes(jobs, _JOB_INDEXES)
            ensure_indexes(runs, _RUN_INDEXES)
            # the counter starts above the times that numbered jobs recorded before it
            jobs.update_one({"_id": _SEQ}, {"$max": {"n": now_micros()}}, upsert=True)
            self.__dict__["_jobs_indexed"] = True
        return jobs

    def append_run_with_jobs(
        self, run: RunResult, jobs: Sequence[Job], *, existing: bool | str = False
    ) -> bool:
        check_run(run, existing)
        docs = [_doc(job) for job in jobs]
        extra = {"jobs": docs, "jobs_pending": True} if docs else None
        with self._db() as db:
            if docs:
                _numbered(self._jobs(db.runs), docs)
            if not sessions.append_run(
                db.sessions, db.runs, run, self._where, extra=extra, existing=existing
            ):
                return False  # nor its jobs: their numbers are left unused
            if docs:
                _copy(self._jobs(db.runs), docs)
                db.runs.update_one(
                    {"run_id": run.run_id}, {"$unset": {"jobs": "", "jobs_pending": ""}}
                )
        return True

    def _recover(self, runs: Collection[Doc], jobs: Collection[Doc]) -> None:
        """Copy the jobs of runs whose process died before copying them."""
        old = now_micros() - _GRACE_US
        for run in runs.find({"jobs_pending": True, "created_at": {"$lt": old}}).limit(100):
            _copy(jobs, run.get("jobs") or [])
            runs.update_one({"_id": run["_id"]}, {"$unset": {"jobs": "", "jobs_pending": ""}})

    def claim_job(
        self,
        owner: str,
        lease: float,
        agent_id: Any = ANY_AGENT,
        keys: Iterable[str] | None = None,
    ) -> Job | None:
        from pymongo import ReturnDocument

        query: Doc = {"status": {"$in": ["pending", "running"]}}
        if keys is not None:
            query["key"] = {"$in": sorted(keys)}
            if not query["key"]["$in"]:
                return None
        now = now_micros()
        with self._db() as db:
            jobs = self._jobs(db.runs)
            self._recover(db.runs, jobs)
            unfinished = list(
                jobs.find(
                    query,
                    {
                        "key": 1,
                        "agent": 1,
                        "status": 1,
                        "due_at": 1,
                        "lease_until": 1,
                        "attempts": 1,
                    },
                )
                .sort([("seq", 1), ("_id", 1)])
                .limit(_SCAN)
            )
            # A group with a job running is busy, whatever the order: a run's jobs are
            # numbered before they are written, so an earlier job may arrive after a later
            # one was taken, and must wait for it (one job of a group at a time).
            seen = {
                order_group(doc["key"], doc["agent"])
                for doc in unfinished
                if doc["status"] == "running" and (doc["lease_until"] or 0) > now
            }
            for doc in unfinished:
                group = order_group(doc["key"], doc["agent"])
                if group in seen:
                    continue
                seen.add(group)
                due = (doc["status"] == "pending" and doc["due_at"] <= now) or (
                    doc["status"] == "running" and (doc["lease_until"] or 0) <= now
                )
                if not due or (agent_id is not ANY_AGENT and doc["agent"] != agent_id):
                    continue
                taken = jobs.find_one_and_update(
                    {"_id": doc["_id"], "status": doc["status"], "attempts": doc["attempts"]},
                    {
                        "$set": {
                            "status": "running",
                            "owner": owner,
                            "lease_until": now + int(lease * 1e6),
                        },
                        "$inc": {"attempts": 1},
                    },
                    return_document=ReturnDocument.AFTER,
                )
                if taken is not None:
                    return _job(taken)
        return None

    def renew_lease(self, job: Job, lease: float) -> bool:
        until = now_micros() + int(lease * 1e6)
        with self._db() as db:
            done = self._jobs(db.runs).update_one(
                {"_id": job.job_id, "owner": job.owner, "status": "running"},
                {"$set": {"lease_until": until}},
            )
        if done.matched_count:
            job.lease_until = until
        return bool(done.matched_count)

    def store_plan(self, job: Job, plan: dict[str, Any]) -> bool:
        text = json.dumps(plan, ensure_ascii=False, separators=(",", ":"))
        with self._db() as db:
            done = self._jobs(db.runs).update_one(
                {"_id": job.job_id, "owner": job.owner}, {"$set": {"plan": text}}
            )
        if done.modified_count:
            job.plan = plan
        return bool(done.modified_count)

    def complete_job(self, job: Job, write: Callable[[], T]) -> tuple[bool, T | None]:
        """The owner is checked, ``write`` made, the job deleted: three steps, so a worker
        paused between the first two (its lease run out, the job taken over) may still
        write. A session summary it writes then is refused when the session's summary
        already covers more runs (see :meth:`completing_a_job`)."""
        with self._db() as db:
            jobs = self._jobs(db.runs)
            if jobs.find_one({"_id": job.job_id, "owner": job.owner}, {"_id": 1}) is None:
                return False, None
            _completing.depth = getattr(_completing, "depth", 0) + 1
            try:
                value = write()
            finally:
                _completing.depth -= 1
            jobs.delete_one({"_id": job.job_id, "owner": job.owner})
        return True, value

    @staticmethod
    def completing_a_job() -> bool:
        """Whether this thread is writing what a job completes."""
        return bool(getattr(_completing, "depth", 0))

    def completes_with(self, memories: object) -> bool:
        return False  # no multi-document transactions: the worker's retry skips what is done

    def fail_job(self, job: Job, error: str, retry_in: float | None) -> None:
        status, due = after_failure(retry_in)
        with self._db() as db:
            self._jobs(db.runs).update_one(
                {"_id": job.job_id, "owner": job.owner},
                {
                    "$set": {
                        "status": status,
                        "error": clip_error(error),
                        "due_at": due,
                        "owner": None,
                        "lease_until": None,
                    }
                },
            )

    def list_jobs(self, status: JobStatus | None = None, limit: int | None = 100) -> list[Job]:
        query: Doc = {"status": _LISTED if check_status(status) is None else status}
        with self._db() as db:
            cursor = self._jobs(db.runs).find(query).sort([("seq", 1), ("_id", 1)])
            if limit is not None:
                cursor = cursor.limit(limit)
            return [_job(doc) for doc in cursor]

    def unfinished_jobs(self, agent_id: Any = ANY_AGENT, keys: Iterable[str] | None = None) -> int:
        query = _unfinished(now_micros())
        if agent_id is not ANY_AGENT:
            query["agent"] = agent_id
        if keys is not None:
            query["key"] = {"$in": sorted(keys)}
        with self._db() as db:
            jobs = self._jobs(db.runs)
            self._recover(db.runs, jobs)
            return int(jobs.count_documents(query))

    def queued_among(self, job_ids: Iterable[str]) -> dict[str, bool]:
        wanted = sorted(job_ids)
        if not wanted:
            return {}
        now = now_micros()
        query = {"_id": {"$in": wanted}, "status": {"$in": ["pending", "running"]}}
        with self._db() as db:
            jobs = self._jobs(db.runs)
            self._recover(db.runs, jobs)
            found = jobs.find(query, {"status": 1, "attempts": 1, "due_at": 1})
            return {
                str(doc["_id"]): doc["status"] == "running"
                or doc["attempts"] == 0
                or doc["due_at"] <= now
                for doc in found
            }

    def retry_job(self, job_id: str) -> bool:
        with self._db() as db:
            done = self._jobs(db.runs).update_one(
                {"_id": job_id, "status": {"$in": ["pending", "failed"]}},
                {"$set": {"status": "pending", "attempts": 0, "due_at": now_micros()}},
            )
        return bool(done.matched_count)

    def drop_job(self, job_id: str) -> bool:
        with self._db() as db:
            jobs = self._jobs(db.runs)
            return bool(jobs.delete_one({"_id": job_id, "status": _LISTED}).deleted_count)
