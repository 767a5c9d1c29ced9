"""Daphne's access log in the web process: probes that answer 200 are not in it, the rest are."""

from __future__ import annotations

import io
import logging
import sys

import pytest

from ticker.health import QuietProbesAccessLog, quiet_probes_in_access_log


def complete(path: str, status: int) -> dict[str, object]:
    return {"path": path, "status": status, "method": "GET", "client": "10.0.0.2:4242", "time_taken": 0.001, "size": 17}


def test_successful_probes_go_to_debug_everything_else_to_the_access_log(caplog: pytest.LogCaptureFixture) -> None:
    stream = io.StringIO()
    log = QuietProbesAccessLog(stream)
    with caplog.at_level(logging.DEBUG, logger="ticker.health"):
        log("http", "complete", complete("/healthz", 200))
        log("http", "complete", complete("/readyz?verbose=1", 200))
        log("http", "complete", complete("/readyz", 503))
        log("http", "complete", complete("/", 200))
        log("websocket", "connected", {"path": "/ws/stream/", "client": "10.0.0.2:4243"})
    lines = stream.getvalue().splitlines()
    assert [line.split('"')[1] for line in lines] == ["GET /readyz", "GET /", "WSCONNECT /ws/stream/"]
    assert '" 503 ' in lines[0]
    probes = [r.getMessage() for r in caplog.records if r.name == "ticker.health"]
    assert probes == ["probe /healthz 200 from 10.0.0.2:4242", "probe /readyz 200 from 10.0.0.2:4242"]


def test_daphnes_command_line_is_given_the_quiet_access_log_when_the_process_runs_one() -> None:
    import daphne.cli

    assert "daphne.cli" in sys.modules
    original = daphne.cli.AccessLogGenerator
    try:
        quiet_probes_in_access_log()
        assert daphne.cli.AccessLogGenerator is QuietProbesAccessLog
    finally:
        daphne.cli.AccessLogGenerator = original
