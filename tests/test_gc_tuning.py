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
from ticker import gc_tuning, server
default = gc.get_threshold()[0]
seen = {}
tune = gc_tuning.tune
def watched_tune(threshold0):
    seen["app_loaded_before_freezing"] = "ticker.asgi" in sys.modules
    tune(threshold0)
gc_tuning.tune = watched_tune
def report(self, argv):
    sys.stdout.write(json.dumps({"frozen": gc.get_freeze_count(), "threshold": gc.get_threshold(),
                                 "default": default, "argv": argv, **seen}) + chr(10))
server.BoundedCommandLineInterface.run = report
server.main(["ticker.asgi:application"])
"""


def _probe(**env: str) -> dict:
    inherited = {k: v for k, v in os.environ.items() if k != "TICKER_GC_THRESHOLD0"}
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env={**inherited, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.usefixtures("redis_server")
def test_the_web_process_freezes_the_loaded_application_and_raises_the_young_threshold() -> None:
    state = _probe()
    assert state["app_loaded_before_freezing"], "the ASGI application is imported before freezing"
    # Django, Channels, Twisted and the app: far more than an empty interpreter's few thousand.
    assert state["frozen"] > 50_000
    assert state["threshold"][0] == 7000
    assert state["argv"] == ["ticker.asgi:application"]


@pytest.mark.usefixtures("redis_server")
def test_threshold_zero_keeps_cpythons_own() -> None:
    state = _probe(TICKER_GC_THRESHOLD0="0")
    assert state["threshold"][0] == state["default"]
    assert state["frozen"] > 50_000
