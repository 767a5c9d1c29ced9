"""Password guessing against the real stack: a parallel burst at the admin login from one
address is held to the (username, address) limit, a forged X-Forwarded-For from an
untrusted peer changes nothing, and the owner still logs in from another address
(127.0.0.2: loopback too, a second source on this host)."""

from __future__ import annotations

import http.client
import logging
import re
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from tests.e2e.stack import ADMIN, ROOT, HttpSession, Stack

logger = logging.getLogger(__name__)

PAIR_LIMIT = 5  # AXES_FAILURE_LIMIT's default (TICKER_LOGIN_FAILURE_LIMIT), per (username, address)
BURST = 40
ELSEWHERE = "127.0.0.2"


class _FromHandler(urllib.request.HTTPHandler):
    """Plain HTTP from a chosen local address (urllib's documented handler hook)."""

    def __init__(self, source: str) -> None:
        super().__init__()
        self.source = source

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(http.client.HTTPConnection, req, source_address=(self.source, 0))


class SessionFromElsewhere(HttpSession):
    """A browser-like session whose connections come from ``ELSEWHERE``."""

    def __init__(self, base_url: str, context: None = None) -> None:
        super().__init__(base_url, context)
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar), _FromHandler(ELSEWHERE))


def _post(session: HttpSession, path: str, fields: dict[str, str], token: str, forged: str) -> int:
    request = urllib.request.Request(
        f"{session.base_url}{path}",
        data=urllib.parse.urlencode({"csrfmiddlewaretoken": token, **fields}).encode(),
        headers={"Referer": f"{session.base_url}{path}", "X-Forwarded-For": forged},
    )
    try:
        with session.opener.open(request, timeout=20) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code


def test_a_burst_from_one_address_locks_that_pair_and_the_owner_logs_in_from_another(stack_logs: Stack) -> None:
    session = HttpSession(stack_logs.base_url)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', session.get("/admin/login/")).group(1)
    wrong = {"username": ADMIN[0], "password": "not-the-password", "next": "/admin/"}
    try:
        with ThreadPoolExecutor(BURST) as pool:
            statuses = list(
                pool.map(lambda i: _post(session, "/admin/login/", wrong, token, f"203.0.113.{i}"), range(BURST))
            )
        checked = statuses.count(200)  # the form answered: a password was really tried
        assert checked <= PAIR_LIMIT - 1, statuses
        assert statuses.count(429) >= BURST - PAIR_LIMIT + 1
        right = {**wrong, "password": ADMIN[1]}
        here = _post(session, "/admin/login/", right, token, "198.51.100.7")
        assert here == 429, "locked from 127.0.0.1, whatever X-Forwarded-For says"
        elsewhere = SessionFromElsewhere.logged_in(stack_logs.base_url, *ADMIN)
        assert elsewhere.cookies()["sessionid"], "the owner logs in from 127.0.0.2"
        logger.info(
            "%d wrong passwords for %s from 127.0.0.1 at once: %d checked, %d answered 429; "
            "the right one from 127.0.0.1: %d; from 127.0.0.2: logged in",
            BURST,
            ADMIN[0],
            checked,
            statuses.count(429),
            here,
        )
    finally:
        # Every counter (axes' own cache handler cannot do this: NotImplementedError).
        subprocess.run(
            [sys.executable, str(ROOT / "manage.py"), "axes_reset"], env=stack_logs.env(), cwd=ROOT, check=True
        )
    assert HttpSession.logged_in(stack_logs.base_url, *ADMIN).cookies()["sessionid"], "unlocked again"
