"""Daphne's access log in the web process: probes that answer 200 are not in it, the rest are."""

from __future__ import annotations

import io
import logging

import pytest
from daphne.access import AccessLogGenerator

from ticker.health import QuietProbesAccessLog


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


def test_the_web_servers_access_log_is_the_quiet_one() -> None:
    from ticker.server import BoundedServer

    stream = io.StringIO()
    server = BoundedServer(
        endpoints=["tcp:port=0:interface=127.0.0.1"], application=None, action_logger=AccessLogGenerator(stream)
    )
    assert type(server.action_logger) is QuietProbesAccessLog
    assert server.action_logger.stream is stream
