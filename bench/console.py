"""The built-in console's first paint and weight, in Debian's headless Chromium, from a warm server.

    python bench/console.py [--loads 10] [--port 8767]

Starts `agentkeep serve` (loopback, no keys) on the mock model, warms it with a few plain GETs of
every console file, then opens the console `--loads` times, each in a fresh browser context (an empty
browser cache: the worst case for a visitor, the server warm). For each load it reads the Performance
API: first paint and first contentful paint, the time until the playground is usable (agents listed),
and the bytes transferred (`transferSize` of the document and every resource, headers included).
It also reloads once in the same context, where the browser revalidates (304s). Goals: first paint
≤ 300 ms and ≤ 300 KB transferred; the exit status is 1 when either is missed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx
from _common import start_server

from agentkeep.testing.mock_llm import MockLLMProcess

HERE = Path(__file__).resolve().parent
CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
FILES = ["/", "/console/app.css", "/console/app.js", "/console/api.js", "/console/dom.js", "/console/icon.svg"]
GOAL_PAINT_MS = 300
GOAL_BYTES = 300_000

# Runs in the page once the playground has listed the agents.
MEASURE = """() => {
  const paint = Object.fromEntries(performance.getEntriesByType("paint").map((e) => [e.name, e.startTime]));
  const entries = [...performance.getEntriesByType("navigation"), ...performance.getEntriesByType("resource")];
  return {
    firstPaint: paint["first-paint"],
    firstContentfulPaint: paint["first-contentful-paint"],
    ready: performance.now(),
    transferred: entries.reduce((sum, e) => sum + (e.transferSize || 0), 0),
    decoded: entries.reduce((sum, e) => sum + (e.decodedBodySize || 0), 0),
    requests: entries.length,
  };
}"""


def measure(url: str, loads: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """`loads` cold-cache loads, then one revalidating reload in the last context."""
    from playwright.sync_api import sync_playwright

    cold: list[dict[str, Any]] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        try:
            for _ in range(loads):
                context = browser.new_context()
                page = context.new_page()
                page.goto(f"{url}/")
                page.wait_for_selector("#agent option", state="attached")
                cold.append(page.evaluate(MEASURE))
                context.close()
            context = browser.new_context()
            page = context.new_page()
            page.goto(f"{url}/")
            page.wait_for_selector("#agent option", state="attached")
            page.reload()
            page.wait_for_selector("#agent option", state="attached")
            warm: dict[str, Any] = page.evaluate(MEASURE)
            context.close()
        finally:
            browser.close()
    return cold, warm


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--loads", type=int, default=10)
    parser.add_argument("--port", type=int, default=8767)
    args = parser.parse_args()
    if not Path(CHROMIUM).exists():
        raise SystemExit(f"needs Debian's chromium at {CHROMIUM}: apt-get install chromium")

    with MockLLMProcess() as mock, tempfile.TemporaryDirectory() as workdir:
        env = {
            **os.environ,
            "OPENAI_BASE_URL": mock.base_url,
            "OPENAI_API_KEY": "bench",
            "AGENTKEEP_DATABASE_URL": f"sqlite:///{workdir}/bench.db",
            "AGENTKEEP_RATE_LIMIT": "1000000/minute",
            "AGENTKEEP_READ_RATE_LIMIT": "1000000/minute",
        }
        url = f"http://127.0.0.1:{args.port}"
        server = start_server(env, workdir, args.port)
        try:
            with httpx.Client(base_url=url) as client:
                for _ in range(5):
                    for path in FILES:
                        client.get(path).raise_for_status()
            cold, warm = measure(url, args.loads)
        finally:
            server.terminate()
            server.wait(timeout=60)

    def summary(key: str) -> str:
        values = [load[key] for load in cold]
        return f"median {statistics.median(values):6.1f} ms, max {max(values):6.1f} ms"

    paint = max(load["firstPaint"] for load in cold)
    transferred = max(load["transferred"] for load in cold)
    print(f"{args.loads} loads, each in a fresh browser context, from a warm server on {url}")
    print(f"first paint             {summary('firstPaint')}   (goal ≤ {GOAL_PAINT_MS} ms)")
    print(f"first contentful paint  {summary('firstContentfulPaint')}")
    print(f"usable (agents listed)  {summary('ready')}")
    print(
        f"transferred             {transferred / 1024:6.1f} KB in {cold[0]['requests']} requests "
        f"({cold[0]['decoded'] / 1024:.1f} KB decoded)   (goal ≤ {GOAL_BYTES // 1000} KB)"
    )
    reload_kb = warm["transferred"] / 1024
    print(f"reload, cache kept      {reload_kb:6.1f} KB transferred, first paint {warm['firstPaint']:.1f} ms")
    return 0 if paint <= GOAL_PAINT_MS and transferred <= GOAL_BYTES else 1


if __name__ == "__main__":
    sys.exit(main())
