"""The web server process freezes its startup heap and raises the young GC threshold."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Runs the real entry point (``python -m ticker.server``) up to where Daphne would start
# serving, then reports the collector's state instead.
PROBE = """
import gc, json, sys
from ticker import server
def report(self, argv):
    print(json.dumps({"frozen": gc.get_freeze_count(), "threshold": gc.get_threshold(),
                      "app_loaded": "ticker.asgi" in sys.modules, "argv": argv}))
server.BoundedCommandLineInterface.run = report
server.main(["ticker.asgi:application"])
"""


def _probe(**env: str) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.usefixtures("redis_server")
def test_the_web_process_freezes_the_loaded_application_and_raises_the_young_threshold() -> None:
    state = _probe()
    assert state["app_loaded"], "the ASGI application is imported before freezing"
    # Django, Channels, Twisted and the app: far more than an empty interpreter's few thousand.
    assert state["frozen"] > 50_000
    assert state["threshold"][0] == 7000
    assert state["argv"] == ["ticker.asgi:application"]


@pytest.mark.usefixtures("redis_server")
def test_threshold_zero_keeps_cpythons_own() -> None:
    state = _probe(TICKER_GC_THRESHOLD0="0")
    assert state["threshold"][0] == 700
    assert state["frozen"] > 50_000
