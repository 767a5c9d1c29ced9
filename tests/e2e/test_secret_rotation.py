"""Rotating SECRET_KEY as docs/operations.md says: a session made before keeps working after.

A small stack of its own (Redis, a SQLite database, one Daphne: no producer is needed for a
page and a stream's hello), because the web process restarts with other keys. Three starts
of the same Daphne on the same port and database, the trader's cookie kept from the first:

* ``SECRET_KEY=A``: the trader logs in through the real form.
* ``SECRET_KEY=B`` alone: the cookie is logged out (the login page, a 4401 close), which
  is what the fallback prevents, and proves the checks below could fail.
* ``SECRET_KEY=B``, ``SECRET_KEY_FALLBACKS=A``: the same cookie opens a stream (hello, first,
  as a page's client reconnects after a restart) and the dashboard, keeps its session key,
  and the stream outlives the periodic credential audit.
"""

from __future__ import annotations

import asyncio
import http.cookiejar
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.e2e.lifecycle import started
from tests.e2e.stack import ROOT, TRADER, HttpSession, Process, answers, process_env, procfile_commands, tail_logs
from tests.waiting import wait_until
from ticker.embedded_redis import EmbeddedRedis, free_port

pytestmark = pytest.mark.e2e

# Fixed keys long and varied enough for Django (real ones: docs/operations.md, token_urlsafe(50)).
KEY_A = "rotation-test-key-a-" + "Qw3rTy9UiOp4AsDf" * 3
KEY_B = "rotation-test-key-b-" + "Zx8CvBn2MlKj6HgF" * 3
HEARTBEAT_MS = 500
ACCESS_CHECK_SECONDS = 1

CREATE_TRADER = """
from django.contrib.auth import get_user_model
get_user_model().objects.create_user({username!r}, password={password!r})
"""


@dataclass
class WebOnly:
    """Redis, a migrated SQLite database and one Daphne that restarts with other keys."""

    workdir: Path
    port: int = field(default_factory=free_port)
    redis: EmbeddedRedis | None = None
    web: Process | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self, **keys: str) -> dict[str, str]:
        assert self.redis is not None
        return process_env(
            self.workdir,
            REDIS_URL=self.redis.url,
            DATABASE_URL=f"sqlite:///{self.workdir / 'db.sqlite3'}",
            PORT=str(self.port),
            # Heartbeats mark time on the stream; the audit re-checks its session each second.
            TICKER_HEARTBEAT_MS=str(HEARTBEAT_MS),
            TICKER_ACCESS_CHECK_SECONDS=str(ACCESS_CHECK_SECONDS),
            **keys,
        )

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.redis = EmbeddedRedis(free_port(), self.workdir / "redis", persist=False)
        self.redis.start()
        manage = [sys.executable, str(ROOT / "manage.py")]
        script = CREATE_TRADER.format(username=TRADER[0], password=TRADER[1])
        for command in (["migrate", "--noinput"], ["load_demo", "--symbols-only"], ["shell", "-c", script]):
            subprocess.run([*manage, *command], env=self.env(), cwd=ROOT, check=True, capture_output=True)
        self.web = Process("web", ["/bin/sh", "-c", f"exec {procfile_commands()['web']}"], self.workdir / "web.log")

    def restart(self, **keys: str) -> None:
        """Stop Daphne (if running) and start it with these keys; wait until it serves."""
        assert self.web is not None
        self.web.stop()
        self.web.start(self.env(**keys))
        wait_until(lambda: answers(f"{self.base_url}/accounts/login/"), 30, "Daphne to serve the login page")

    def stop(self) -> None:
        if self.web is not None:
            self.web.stop()
        if self.redis is not None:
            self.redis.stop()

    def logs(self) -> str:
        return tail_logs([self.web] if self.web else [])


@pytest.fixture(scope="module")
def web_only(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebOnly]:
    with started(WebOnly(tmp_path_factory.mktemp("rotation"))) as running:
        yield running


def with_cookies(base_url: str, cookies: dict[str, str]) -> HttpSession:
    """A new client holding only these cookies (what the browser kept across the restart)."""
    session = HttpSession(base_url)
    for name, value in cookies.items():
        session.jar.set_cookie(
            http.cookiejar.Cookie(
                0, name, value, None, False, "127.0.0.1", False, False, "/", True, False, None, False, None, None, {}
            )
        )
    return session


async def hello(ws: ClientConnection) -> dict:
    frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
    assert frame["type"] == "hello", frame
    return frame


async def outlives_audits(ws: ClientConnection) -> None:
    """Heartbeats spanning two credential audits: the audit kept the stream open."""
    heartbeats = 0
    while heartbeats < 2 * ACCESS_CHECK_SECONDS * 1000 // HEARTBEAT_MS + 1:
        # A frame comes at least every heartbeat; a stream the audit closed raises here instead.
        frame = json.loads(await asyncio.wait_for(ws.recv(), 5 * HEARTBEAT_MS / 1000))
        heartbeats += frame["type"] == "heartbeat"


async def stream_refused(url: str, headers: dict[str, str]) -> int | None:
    """The close code of a stream whose session names nobody (no hello may come first)."""
    try:
        async with connect(url, additional_headers=headers, open_timeout=10) as ws:
            frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
            raise AssertionError(f"a stream opened: {frame}")
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd else None


async def test_a_session_made_before_a_rotation_still_works_after_it(web_only: WebOnly) -> None:
    web_only.restart(SECRET_KEY=KEY_A)
    before = HttpSession.logged_in(web_only.base_url, *TRADER)
    cookies = before.cookies()
    headers = {"Cookie": before.cookie_header(), "Origin": web_only.base_url}
    stream = f"ws://127.0.0.1:{web_only.port}/ws/stream/"

    # The new key alone: the cookie logs nobody in (neither checked session is deleted by it).
    web_only.restart(SECRET_KEY=KEY_B)
    without = with_cookies(web_only.base_url, cookies)
    without.get("/")
    assert without.last_url.startswith(f"{web_only.base_url}/accounts/login/"), without.last_url
    assert await stream_refused(stream, headers) == 4401

    # The rotation: the old key as the fallback. First the stream, as an open page's client
    # reconnects after the restart (no page load in between), then a page load beside it.
    web_only.restart(SECRET_KEY=KEY_B, SECRET_KEY_FALLBACKS=KEY_A)
    async with connect(stream, additional_headers=headers, open_timeout=10) as ws:
        assert (await hello(ws))["symbols"], "hello lists the catalog"
        after = with_cookies(web_only.base_url, cookies)
        page = after.get("/")
        assert after.last_url == f"{web_only.base_url}/", "the dashboard, not the login page"
        assert f'<span class="username">{TRADER[0]}</span>' in page
        assert after.cookies()["sessionid"] == cookies["sessionid"], "the same session, not a new key"
        await outlives_audits(ws)
    async with connect(stream, additional_headers=headers, open_timeout=10) as again:
        await hello(again)
