"""The REST server under load: noted's `GET /memories` against Agno's AgentOS, same run.

    scripts/uv.sh run --group bench python benchmarks/server.py [--quick] [--duration 30]

100,000 memories across 1,000 users (about 100 each: short facts with a topic, every one
with its own timestamp) are written to a SQLite file for each side: noted's SqliteDb
(through ``upsert_memories``) and Agno's SqliteDb (its own ``upsert_memories``, keeping the
timestamps). Each server runs as a process on 127.0.0.1 with a free port: ``noted serve``,
and Agno 3.1.10's AgentOS app over its SqliteDb, served by uvicorn as ``noted serve`` does
(no access log, log level warning). Both are checked once first: 20 memories of the
requested user, newest first. Then wrk loads each one with ``GET /memories?user_id=...
&limit=20`` for a random user per request (64 connections, one wrk thread, 30 s, after a
warm-up). Each server runs with 1 worker process, then with 2.

Prints requests/s, latency percentiles (50/75/90/99) and errors (socket errors and non-2xx
answers) per server and worker count, the ratios noted/AgentOS, and noted's target: p50 <=
15 ms, p99 <= 100 ms and zero errors. Writes benchmarks/results/server.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"
HERE = Path(__file__).resolve().parent
AGENTOS_DB = "NOTED_BENCH_AGENTOS_DB"  # the AgentOS worker's SQLite file (see agentos_app)
TARGET_P50_MS = 15.0
TARGET_P99_MS = 100.0
BASE_TS = 1_700_000_000  # the first memory's timestamp (seconds); each next one is 1 s later
PAGE = 20
FULL = {"memories": 100_000, "users": 1_000, "duration": 30, "warmup": 5}
QUICK = {"memories": 10_000, "users": 100, "duration": 5, "warmup": 2}

# Short facts as an agent's memory manager writes them, each with its topic.
FACTS: list[tuple[str, list[str], list[str]]] = [
    ("Prefers {} in the morning", ["black coffee", "green tea", "oat milk lattes"], ["food"]),
    ("Is training for {}", ["a half marathon", "the Berlin marathon", "a triathlon"], ["sport"]),
    ("Works as {}", ["a nurse in Lyon", "a data engineer", "a primary school teacher"], ["work"]),
    ("Has a {}", ["cat called Miso", "dog called Pepper", "parrot called Kiwi"], ["family"]),
    ("Is learning {}", ["Portuguese", "the piano", "to sail", "Japanese"], ["learning"]),
    ("Is allergic to {}", ["peanuts", "shellfish", "cat hair", "penicillin"], ["health"]),
    ("Is planning a trip to {}", ["Lisbon in May", "Kyoto in autumn", "Patagonia"], ["travel"]),
    ("Enjoys {} at the weekend", ["pottery", "bouldering", "jazz concerts"], ["hobbies"]),
    ("Does not eat {}", ["meat", "gluten", "dairy", "spicy food"], ["food", "health"]),
    ("Has a meeting with {}", ["the design team on Mondays", "her manager on Fridays"], ["work"]),
]


def user_id(u: int) -> str:
    return f"user-{u:04d}"


def fact(rng: random.Random) -> tuple[str, list[str]]:
    template, fills, topics = rng.choice(FACTS)
    return template.format(rng.choice(fills)), topics


@dataclass
class Row:
    """One memory, written the same way to both stores."""

    memory_id: str
    user_id: str
    text: str
    topics: list[str]
    ts: int  # seconds since the epoch


def generate(memories: int, users: int, seed: int = 7) -> list[Row]:
    rng = random.Random(seed)
    return [
        Row(
            str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            user_id(i % users),
            *fact(rng),
            BASE_TS + i,
        )
        for i in range(memories)
    ]


def newest(rows: list[Row], user: str) -> list[str]:
    """The ids of the user's newest page of memories, newest first."""
    mine = sorted((r for r in rows if r.user_id == user), key=lambda r: r.ts, reverse=True)
    return [r.memory_id for r in mine[:PAGE]]


# -- the two stores, filled with the same memories ---------------------------------------------


def load_noted(path: Path, rows: list[Row], batch: int = 10_000) -> float:
    from noted import SqliteDb, UserMemory

    db = SqliteDb(path)
    start = time.perf_counter()
    for first in range(0, len(rows), batch):
        memories = []
        for r in rows[first : first + batch]:
            when = datetime.fromtimestamp(r.ts, UTC)
            memories.append(
                UserMemory(
                    r.text,
                    topics=r.topics,
                    memory_id=r.memory_id,
                    user_id=r.user_id,
                    created_at=when,
                    updated_at=when,
                )
            )
        db.upsert_memories(memories)
    elapsed = time.perf_counter() - start
    db.close()
    return elapsed


def load_agno(path: Path, rows: list[Row], batch: int = 10_000) -> float:
    from agno.db.schemas.memory import UserMemory as AgnoMemory
    from agno.db.sqlite import SqliteDb as AgnoSqliteDb

    db = AgnoSqliteDb(db_file=str(path))
    start = time.perf_counter()
    for first in range(0, len(rows), batch):
        memories = [
            AgnoMemory(
                memory=r.text,
                memory_id=r.memory_id,
                topics=r.topics,
                user_id=r.user_id,
                created_at=r.ts,
                updated_at=r.ts,
            )
            for r in rows[first : first + batch]
        ]
        db.upsert_memories(memories, preserve_updated_at=True)
    return time.perf_counter() - start


def agentos_app() -> Any:
    """uvicorn's factory for the AgentOS side (each worker process calls it): Agno's AgentOS
    with no agents, over Agno's SqliteDb in the file named by $NOTED_BENCH_AGENTOS_DB."""
    from agno.db.sqlite import SqliteDb as AgnoSqliteDb
    from agno.os import AgentOS

    db = AgnoSqliteDb(db_file=os.environ[AGENTOS_DB])
    return AgentOS(db=db, telemetry=False).get_app()


# -- the servers --------------------------------------------------------------------------------


@dataclass
class Server:
    name: str
    workers: int
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM to the server's pid (uvicorn stops its workers), then SIGKILL to its
        process group (the server and its workers only) if it is still running."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def noted_command(db: Path, port: int, workers: int) -> list[str]:
    beside = Path(sys.executable).with_name("noted")
    program = str(beside) if beside.exists() else shutil.which("noted") or "noted"
    return [
        program,
        "serve",
        "--db",
        str(db),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-access-log",
        "--log-level",
        "warning",
        "--workers",
        str(workers),
    ]


def agentos_command(port: int, workers: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "server:agentos_app",
        "--factory",
        "--app-dir",
        str(HERE),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--no-access-log",
        "--log-level",
        "warning",
    ]


def start(name: str, workers: int, db: Path, workdir: Path) -> Server:
    port = free_port()
    env = dict(os.environ)
    env.pop("NOTED_API_KEY", None)  # every request is the admin: no credentials to check
    env["AGNO_TELEMETRY"] = "false"
    if name == "noted":
        command = noted_command(db, port, workers)
    else:
        command = agentos_command(port, workers)
        env[AGENTOS_DB] = str(db)
    log = workdir / f"{name}-{workers}.log"
    with log.open("ab") as out:
        process = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,  # its own process group: a Ctrl-C here is not theirs
        )
    server = Server(name, workers, port, process, log)
    try:
        wait_ready(server)
    except BaseException:
        server.stop()
        raise
    return server


def tail(log: Path, lines: int = 20) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def get(url: str, timeout: float = 5.0) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def wait_ready(server: Server, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    probe = f"{server.url}/memories?user_id={user_id(0)}&limit=1"
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"{server.name} exited with {server.process.returncode}:\n{tail(server.log)}"
            )
        with contextlib.suppress(OSError):
            if get(probe, timeout=2.0)[0] == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{server.name} did not answer within {seconds:g} s:\n{tail(server.log)}")


def check(server: Server, rows: list[Row], users: int) -> None:
    """The listing is right before it is timed: the user's 20 newest, newest first."""
    for u in sorted({0, users // 2, users - 1}):
        user = user_id(u)
        status, body = get(f"{server.url}/memories?user_id={user}&limit={PAGE}")
        if status != 200:
            raise RuntimeError(f"{server.name}: GET /memories answered {status}: {body}")
        data = body["data"]
        got = [m["memory_id"] for m in data]
        if {m["user_id"] for m in data} != {user} or got != newest(rows, user):
            raise RuntimeError(
                f"{server.name}: GET /memories for {user} did not answer the user's "
                f"{PAGE} newest memories, newest first: {got}"
            )


# -- wrk ------------------------------------------------------------------------------------------

LUA = """
local paths = {
%s
}
math.randomseed(%d)

request = function()
  return wrk.format("GET", paths[math.random(#paths)])
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT {\\"requests\\": %%d, \\"duration_us\\": %%d, \\"bytes\\": %%d, " ..
    "\\"connect\\": %%d, \\"read\\": %%d, \\"write\\": %%d, \\"timeout\\": %%d, " ..
    "\\"status\\": %%d, \\"p50\\": %%d, \\"p75\\": %%d, \\"p90\\": %%d, \\"p99\\": %%d, " ..
    "\\"max\\": %%d, \\"mean\\": %%f}\\n",
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.timeout, e.status,
    latency:percentile(50), latency:percentile(75), latency:percentile(90),
    latency:percentile(99), latency.max, latency.mean))
end
"""


def lua_script(path: Path, users: int, seed: int = 1) -> Path:
    lines = ",\n".join(f'  "/memories?user_id={user_id(u)}&limit={PAGE}"' for u in range(users))
    path.write_text(LUA % (lines, seed))
    return path


def quiet(command: list[str]) -> bool:
    """Run a command without its output; True when it succeeded."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    return subprocess.run(command, check=False, capture_output=True, env=env).returncode == 0


def find_wrk() -> str:
    """wrk's path; installs Debian's package with apt-get when it can, else exits."""
    found = shutil.which("wrk")
    if found:
        return found
    prefix = [] if os.geteuid() == 0 else ["sudo", "-n"]
    if shutil.which("apt-get") and (
        not prefix or (shutil.which("sudo") and quiet(["sudo", "-n", "true"]))
    ):
        print("installing wrk (one time) ...", file=sys.stderr, flush=True)
        install = [*prefix, "apt-get", "install", "-y", "-q", "--no-install-recommends", "wrk"]
        if not quiet(install):
            quiet([*prefix, "apt-get", "update", "-q"])
            quiet(install)
        found = shutil.which("wrk")
    if not found:
        sys.exit("this benchmark needs the load tool wrk: sudo apt-get install wrk")
    return found


def wrk_version(wrk: str) -> str:
    done = subprocess.run([wrk, "-v"], check=False, capture_output=True, text=True)
    lines = (done.stdout or done.stderr).splitlines()
    return lines[0] if lines else "?"


def run_wrk(
    wrk: str, url: str, script: Path, connections: int, threads: int, seconds: int
) -> dict[str, Any]:
    command = [
        wrk,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds}s",
        "--latency",
        "-s",
        str(script),
        url,
    ]
    done = subprocess.run(
        command, check=False, capture_output=True, text=True, timeout=seconds + 60
    )
    line = next((s for s in done.stdout.splitlines() if s.startswith("RESULT ")), None)
    if done.returncode or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    raw = json.loads(line.removeprefix("RESULT "))
    errors = {k: raw[k] for k in ("connect", "read", "write", "timeout", "status")}
    seconds_run = raw["duration_us"] / 1e6
    return {
        "requests": raw["requests"],
        "seconds": seconds_run,
        "requests_per_s": raw["requests"] / seconds_run,
        "p50_ms": raw["p50"] / 1e3,
        "p75_ms": raw["p75"] / 1e3,
        "p90_ms": raw["p90"] / 1e3,
        "p99_ms": raw["p99"] / 1e3,
        "max_ms": raw["max"] / 1e3,
        "mean_ms": raw["mean"] / 1e3,
        "errors": errors,
        "error_total": sum(errors.values()),
        "wrk_output": done.stdout.split("RESULT ")[0].rstrip(),
    }


# -- the run ---------------------------------------------------------------------------------------


@dataclass
class Plan:
    wrk: str
    script: Path
    workdir: Path
    args: argparse.Namespace
    rows: list[Row]


def measure(plan: Plan, name: str, workers: int, db: Path) -> dict[str, Any]:
    args = plan.args
    load = os.getloadavg()
    server = start(name, workers, db, plan.workdir)
    try:
        check(server, plan.rows, args.users)
        if args.warmup > 0:
            run_wrk(plan.wrk, server.url, plan.script, args.connections, args.threads, args.warmup)
        result = run_wrk(
            plan.wrk, server.url, plan.script, args.connections, args.threads, args.duration
        )
    finally:
        server.stop()
    result.update(server=name, workers=workers, load_average_before=list(load))
    if name == "noted":
        result["target_met"] = (
            result["p50_ms"] <= TARGET_P50_MS
            and result["p99_ms"] <= TARGET_P99_MS
            and result["error_total"] == 0
        )
    return result


def label(name: str) -> str:
    return "AgentOS" if name == "agentos" else name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small data, 5 s runs")
    parser.add_argument("--memories", type=int, help="memories in each store (100,000)")
    parser.add_argument("--users", type=int, help="users they belong to (1,000)")
    parser.add_argument("--duration", type=int, help="seconds of load per run (30)")
    parser.add_argument("--warmup", type=int, help="seconds of load before each run (5)")
    parser.add_argument("--connections", type=int, default=64, help="open connections (64)")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (1)")
    parser.add_argument("--workers", default="1,2", help="server worker counts (1,2)")
    parser.add_argument("--no-agno", action="store_true", help="measure noted only")
    parser.add_argument("--output", type=Path, default=RESULTS / "server.json", help="JSON report")
    args = parser.parse_args()
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    workers = [int(w) for w in args.workers.split(",")]
    logging.disable(logging.WARNING)
    wrk = find_wrk()
    sides = ["noted"] if args.no_agno else ["noted", "agentos"]

    print(
        f"{args.memories:,} memories across {args.users:,} users; wrk -t{args.threads} "
        f"-c{args.connections} -d{args.duration}s after {args.warmup} s of warm-up; "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    rows = generate(args.memories, args.users)
    report: dict[str, Any] = {
        "memories": args.memories,
        "users": args.users,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "connections": args.connections,
        "threads": args.threads,
        "cpus": os.cpu_count(),
        "wrk": wrk_version(wrk),
        "target": {"p50_ms": TARGET_P50_MS, "p99_ms": TARGET_P99_MS, "errors": 0},
        "load_s": {},
        "runs": [],
        "ratios": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        dbs = {side: workdir / f"{side}.db" for side in sides}
        report["load_s"]["noted"] = load_noted(dbs["noted"], rows)
        if "agentos" in dbs:
            report["load_s"]["agentos"] = load_agno(dbs["agentos"], rows)
        print(
            "loaded: " + ", ".join(f"{label(s)} {t:.1f} s" for s, t in report["load_s"].items()),
            flush=True,
        )
        plan = Plan(wrk, lua_script(workdir / "users.lua", args.users), workdir, args, rows)
        for count in workers:
            for side in sides:
                result = measure(plan, side, count, dbs[side])
                report["runs"].append(result)
                print(
                    f"  {label(side)}, {count} worker(s): {result['requests_per_s']:,.0f} req/s, "
                    f"p50 {result['p50_ms']:.2f} ms, p99 {result['p99_ms']:.2f} ms, "
                    f"{result['error_total']} errors",
                    flush=True,
                )

    runs = {(r["server"], r["workers"]): r for r in report["runs"]}
    header = (
        f"\n{'server':8} {'workers':>7} {'req/s':>9} {'p50 ms':>8} {'p75 ms':>8} "
        f"{'p90 ms':>8} {'p99 ms':>8} {'errors':>7}  target"
    )
    print(header)
    print("-" * (len(header) + 10))
    for r in report["runs"]:
        target = ""
        if "target_met" in r:
            target = "MET" if r["target_met"] else "MISSED"
        print(
            f"{label(r['server']):8} {r['workers']:>7} {r['requests_per_s']:>9,.0f} "
            f"{r['p50_ms']:>8.2f} {r['p75_ms']:>8.2f} {r['p90_ms']:>8.2f} {r['p99_ms']:>8.2f} "
            f"{r['error_total']:>7}  {target}"
        )
    for count in workers:
        ours, theirs = runs.get(("noted", count)), runs.get(("agentos", count))
        if ours is None or theirs is None:
            continue
        ratios = {
            "p50_agentos_over_noted": theirs["p50_ms"] / ours["p50_ms"],
            "p99_agentos_over_noted": theirs["p99_ms"] / ours["p99_ms"],
            "throughput_noted_over_agentos": ours["requests_per_s"] / theirs["requests_per_s"],
        }
        report["ratios"][str(count)] = ratios
        print(
            f"\n{count} worker(s), AgentOS/noted: p50 {ratios['p50_agentos_over_noted']:.1f}x, "
            f"p99 {ratios['p99_agentos_over_noted']:.1f}x; noted/AgentOS throughput "
            f"{ratios['throughput_noted_over_agentos']:.1f}x"
        )
    print(f"\ntarget for noted: p50 <= {TARGET_P50_MS:g} ms, p99 <= {TARGET_P99_MS:g} ms, 0 errors")
    for r in report["runs"]:
        if r["server"] == "noted":
            verdict = "MET" if r["target_met"] else "MISSED"
            print(f"  {r['workers']} worker(s): {verdict}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
