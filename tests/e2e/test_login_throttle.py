"""Password guessing against the real stack: a parallel burst at the admin login is held
to the limit, and a forged X-Forwarded-For from an untrusted peer changes nothing."""

from __future__ import annotations

import re
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from tests.e2e.stack import ADMIN, ROOT, HttpSession, Stack

LIMIT = 10  # AXES_FAILURE_LIMIT's default (TICKER_LOGIN_FAILURE_LIMIT)
BURST = 40


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


def test_a_parallel_burst_at_the_admin_login_is_held_to_the_limit(stack_logs: Stack) -> None:
    session = HttpSession(stack_logs.base_url)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', session.get("/admin/login/")).group(1)
    wrong = {"username": ADMIN[0], "password": "not-the-password", "next": "/admin/"}
    try:
        with ThreadPoolExecutor(BURST) as pool:
            statuses = list(
                pool.map(lambda i: _post(session, "/admin/login/", wrong, token, f"203.0.113.{i}"), range(BURST))
            )
        checked = statuses.count(200)  # the form answered: a password was really tried
        assert checked <= LIMIT - 1, statuses
        assert statuses.count(429) >= BURST - LIMIT + 1
        right = {**wrong, "password": ADMIN[1]}
        assert _post(session, "/admin/login/", right, token, "198.51.100.7") == 429, "locked, whatever the address"
    finally:
        for command in (["axes_reset_username", ADMIN[0]], ["axes_reset_ip", "127.0.0.1"]):
            subprocess.run(
                [sys.executable, str(ROOT / "manage.py"), *command], env=stack_logs.env(), cwd=ROOT, check=True
            )
    assert HttpSession.logged_in(stack_logs.base_url, *ADMIN).cookies()["sessionid"], "unlocked again"
