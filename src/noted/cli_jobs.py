"""``noted worker`` (run only the background jobs) and ``noted jobs`` (see, retry and drop
them): the memory and summary work of the runs, kept in the store with them."""

from __future__ import annotations

import argparse
import signal
import threading

from noted import _portal
from noted._console import emit_json, out
from noted._listing import Field, Listing
from noted._time import now_micros
from noted.agent.jobs import JobWorker, job_worker
from noted.cli_db import positive_int, with_config_db
from noted.db.jobs import JOB_STATUSES, JobStore, job_ages
from noted.errors import NotFoundError, SchemaVersionError, StoreError, UserError
from noted.memory import Memory

__all__ = ["add_job_commands"]


def _jobs(memory: Memory) -> JobStore:
    if not isinstance(memory.db, JobStore):
        raise UserError(f"{memory.db!r} keeps no background jobs (the in-process store)")
    return memory.db


def cmd_jobs_list(memory: Memory, args: argparse.Namespace) -> int:
    jobs = _jobs(memory).list_jobs(status=args.status, limit=args.limit)
    now = now_micros()
    rows = [job_ages(job, now) for job in jobs]
    if args.json:
        emit_json(rows)
        return 0
    fields = [Field("job", "head")]
    fields += [Field(name) for name in ("kind", "status", "user")]
    fields += [Field(name, justify="right") for name in ("attempts", "age (s)", "due in (s)")]
    fields.append(Field("error", "text", named=True))
    cells = [
        [
            row["job_id"],
            row["kind"],
            row["status"],
            row["user_id"],
            str(row["attempts"]),
            str(row["age_s"]),
            str(row["due_in_s"]),
            row["error"] or "",
        ]
        for row in rows
    ]
    out.print(Listing("Background jobs", fields, cells))
    return 0


def cmd_jobs_retry(memory: Memory, args: argparse.Namespace) -> int:
    store = _jobs(memory)
    wanted = list(dict.fromkeys(args.job_ids))
    missing = [job_id for job_id in wanted if not store.retry_job(job_id)]
    retried = len(wanted) - len(missing)
    if args.json:  # as noted sessions delete reports
        emit_json({"retried": retried, "not_found": missing})
    else:
        out.print(f"{retried} job(s) due again")
    if missing:
        raise NotFoundError(f"no job that is waiting or failed with id {_ids(missing)}")
    return 0


def cmd_jobs_drop(memory: Memory, args: argparse.Namespace) -> int:
    store = _jobs(memory)
    wanted = list(dict.fromkeys(args.job_ids))
    missing = [job_id for job_id in wanted if not store.drop_job(job_id)]
    dropped = len(wanted) - len(missing)
    if args.json:
        emit_json({"dropped": dropped, "not_found": missing})
    else:
        out.print(f"{dropped} job(s) dropped")
    if missing:
        raise NotFoundError(f"no job with id {_ids(missing)}")
    return 0


def _ids(job_ids: list[str]) -> str:
    return ", ".join(map(repr, job_ids))


def _seconds(text: str) -> float:
    """A positive number of seconds, for ``--lease`` and ``--poll``."""
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text!r}")
    return value


def serving_worker(memory: Memory, args: argparse.Namespace) -> JobWorker:
    """The worker of the ``--config`` file's agent, on the file's store unless ``--db`` or
    ``$NOTED_DB`` names one (it then becomes ``memory``'s, as the server's)."""
    from noted.server.config import build_agent, load_config

    loaded = load_config(args.config)
    with_config_db(memory, args, loaded.db)
    config = loaded.agent
    if config is None:
        raise UserError(f"{args.config} has no [agent]: a worker runs that agent's jobs")
    worker = job_worker(build_agent(config, _jobs(memory)))  # type: ignore[arg-type]
    if worker is None:
        raise UserError(
            "the [agent] has no background work: set memory = 'auto' or summaries = true"
        )
    worker.lease = args.lease
    return worker


def _refuse_newer_tables(store: JobStore) -> None:
    """Raise SchemaVersionError when the store's tables were made by a newer noted: no
    job could ever be claimed there, so the worker stops with that error rather than
    retrying forever. A store that cannot answer yet (a database still starting) is
    left to the worker's loop, which tries again."""
    try:
        store.list_jobs(limit=1)
    except SchemaVersionError:
        raise
    except StoreError:
        pass  # the loop's first claim says why, and it tries again


def cmd_worker(memory: Memory, args: argparse.Namespace) -> int:
    worker = serving_worker(memory, args)
    _refuse_newer_tables(worker.store)
    stop = threading.Event()
    previous = {
        signum: signal.signal(signum, lambda *_: stop.set())
        for signum in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        out.print(f"noted worker {worker.owner} taking jobs from {memory.db!r}")
        _portal.run(worker.serve(stop, poll=args.poll))
    finally:  # run in a process of its own or not, it leaves the signals as it found them
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 0


def add_job_commands(
    groups: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
    db_option: argparse.ArgumentParser,
) -> None:
    """``noted worker`` (``db_option``'s options: it runs every user's jobs and prints no
    result) and ``noted jobs`` (``common``'s: ``--db``, the tables and ``--json``; the jobs
    of every user, so no ``--user``)."""
    worker = groups.add_parser(
        "worker",
        parents=[db_option],
        help="run the background memory and summary jobs only",
        description="Take the background jobs of the config's agent from the store and run "
        "them until stopped (SIGTERM or Ctrl-C). Any number of workers may share a store.",
    )
    worker.add_argument("--config", required=True, help="the TOML file with the [agent]")
    worker.add_argument(
        "--lease", type=_seconds, default=60.0, help="seconds a job is held (default 60)"
    )
    worker.add_argument(
        "--poll", type=_seconds, default=0.5, help="seconds between looks when idle (default 0.5)"
    )
    worker.set_defaults(func=cmd_worker)

    jobs = groups.add_parser("jobs", help="list, retry and drop background jobs")
    commands = jobs.add_subparsers(dest="command", metavar="COMMAND")
    listing = commands.add_parser(
        "list", parents=[common], help="pending, running and failed jobs, oldest first"
    )
    listing.add_argument("--status", choices=JOB_STATUSES)
    listing.add_argument("--limit", type=positive_int, default=100)
    listing.set_defaults(func=cmd_jobs_list)
    retry = commands.add_parser(
        "retry", parents=[common], help="make failed or waiting jobs due now"
    )
    retry.add_argument("job_ids", nargs="+", metavar="job_id")
    retry.set_defaults(func=cmd_jobs_retry)
    drop = commands.add_parser("drop", parents=[common], help="delete jobs")
    drop.add_argument("job_ids", nargs="+", metavar="job_id")
    drop.set_defaults(func=cmd_jobs_drop)
