"""Screenshot Phoenix's trace view of the memory lesson, for docs/tracing.md.

    scripts/uv.sh run python scripts/phoenix_screenshot.py [--url http://127.0.0.1:6006]

Starts Phoenix on free ports in a temporary directory (or uses the one at ``--url``), runs
the lesson's two sessions offline (tests/phoenix_flow.py), opens the trace of the second
session's turn in headless Chromium (Debian's /usr/bin/chromium, driven by Playwright) with
the agent's model call selected (its system prompt holds the memories; the memory
extraction is in the span tree), and saves docs/images/phoenix-trace.png. Run by hand,
not in CI.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from servers import Server, start_phoenix  # noqa: E402
from test_page import CHROMIUM, CHROMIUM_ARGS  # noqa: E402

PROJECT = "11-memory"
OUT = ROOT / "docs" / "images" / "phoenix-trace.png"


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as answer:
        return json.loads(answer.read())


def run_lesson(base: str, workdir: Path) -> list[dict[str, Any]]:
    done = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "phoenix_flow.py"), str(workdir / "lesson.db")],
        capture_output=True,
        text=True,
        env={**os.environ, "PHOENIX_COLLECTOR_ENDPOINT": base},
        timeout=300,
        check=True,
    )
    return [json.loads(line) for line in done.stdout.splitlines()]


def find_spans(base: str, run_id: str) -> tuple[str, dict[str, Any]]:
    """The project's id and the agent's model call span of the run."""
    project = next(p for p in get(f"{base}/v1/projects")["data"] if p["name"] == PROJECT)
    for _ in range(50):
        spans = get(f"{base}/v1/projects/{PROJECT}/spans?limit=500")["data"]
        roots = [s for s in spans if s["attributes"].get("noted.run.id") == run_id]
        if roots:
            trace_id = roots[0]["context"]["trace_id"]
            members = [s for s in spans if s["context"]["trace_id"] == trace_id]
            if any(s["name"] == "memory extraction" for s in members):
                call = next(s for s in members if s["name"] == "model call")
                return project["id"], call
        time.sleep(0.2)
    raise SystemExit(f"the spans of run {run_id} did not reach Phoenix")


def screenshot(url: str, out: Path) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1150})
        page.goto(url)
        page.get_by_text("memory extraction").first.wait_for(timeout=60_000)
        page.get_by_text("memories_from_previous_interactions").first.wait_for(
            state="attached", timeout=60_000
        )
        # The system message starts folded: open it to show the memories in the prompt.
        page.get_by_text("system", exact=True).first.click()
        page.get_by_text("memories_from_previous_interactions").first.wait_for(timeout=30_000)
        page.wait_for_timeout(1500)
        out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(out))
        browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a running Phoenix (default: start one)")
    parser.add_argument("--output", type=Path, default=OUT)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server: Server | None = None
        base = args.url
        if base is None:
            print("starting Phoenix (20 s or more) ...", flush=True)
            server = start_phoenix(Path(tmp) / "phoenix")
            base = server.url
        try:
            turns = run_lesson(base, Path(tmp))
            project_id, call = find_spans(base, turns[-1]["run_id"])
            trace_id = call["context"]["trace_id"]
            query = urllib.parse.urlencode({"selectedSpanNodeId": call["id"]})
            url = f"{base}/projects/{project_id}/traces/{trace_id}?{query}"
            screenshot(url, args.output)
            print(f"wrote {args.output} from {url}")
        finally:
            if server is not None:
                server.stop()


if __name__ == "__main__":
    main()
