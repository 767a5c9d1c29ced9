"""Schemathesis against the live API of the real stack, from its own /api/openapi.json.

Property-based requests (valid and invalid) to every operation, as a logged-in browser
session (with its CSRF token on writes) and as a script with a read-only token; every
answer must be documented for its operation and match its schema, and none may be a 5xx.
Bounded: a fixed number of examples per operation and a fixed seed. The fuzzer's token
creations carry made-up passwords, which count as failed logins: its user and the
address are unlocked after the run, so later logins from 127.0.0.1 are not refused.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.api_tokens import create_token
from tests.e2e.stack import BIN, ROOT, HttpSession, Stack

pytestmark = pytest.mark.e2e
logger = logging.getLogger(__name__)

FUZZER = ("schema-fuzzer", "schema-fuzzer-pass-1")
# The token run's own user: it logs in after the session run, whose guesses lock the fuzzer.
TOKEN_FUZZER = ("schema-fuzzer-token", "schema-fuzzer-pass-2")
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"
CREATE_USER = """
from django.contrib.auth import get_user_model
User = get_user_model()
if not User.objects.filter(username={name!r}).exists():
    User.objects.create_user({name!r}, password={password!r})
"""


def manage(stack: Stack, *argv: str) -> None:
    subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *argv], env=stack.env(), cwd=ROOT, check=True, capture_output=True
    )


def fuzzer_session(stack: Stack, user: tuple[str, str] = FUZZER) -> HttpSession:
    """Its own user: the fuzzer creates and deletes watchlists and tokens, never the trader's."""
    manage(stack, "shell", "-c", CREATE_USER.format(name=user[0], password=user[1]))
    return stack.session(*user)


def schemathesis(stack: Stack, workdir: Path, name: str, headers: dict[str, str], *extra: str) -> dict:
    """One bounded schemathesis run; returns its JSON report, fails the test on any finding."""
    report = workdir / f"{name}.json"
    argv = [
        str(BIN / "st"),
        "run",
        f"{stack.base_url}/api/openapi.json",
        "--checks",
        CHECKS,
        "--max-examples",
        "15",
        "--seed",
        "20261130",
        "--workers",
        "2",
        "--request-timeout",
        "10",
        "--phases",
        "examples,coverage,fuzzing",
        "--report",
        "json",
        "--report-json-path",
        str(report),
        *extra,
    ]
    for header, value in headers.items():
        argv += ["-H", f"{header}: {value}"]
    result = subprocess.run(argv, cwd=workdir, capture_output=True, text=True, timeout=120)
    summary = result.stdout[result.stdout.rfind("SUMMARY") :] if "SUMMARY" in result.stdout else result.stdout[-3000:]
    logger.info("schemathesis (%s):\n%s", name, summary)
    assert result.returncode == 0, f"schemathesis found problems ({name}):\n{result.stdout[-8000:]}\n{result.stderr}"
    return json.loads(report.read_text())


def test_the_live_api_matches_its_schema_as_a_browser_session(stack_logs: Stack, tmp_path: Path) -> None:
    session = fuzzer_session(stack_logs)
    session.get("/")  # the page sets the CSRF cookie, as in the browser
    cookies = session.cookies()
    headers = {"Cookie": session.cookie_header(), "X-CSRFToken": cookies["csrftoken"]}
    try:
        report = schemathesis(stack_logs, tmp_path, "session", headers)
    finally:
        manage(stack_logs, "axes_reset_username", FUZZER[0])
        manage(stack_logs, "axes_reset_ip", "127.0.0.1")
    logger.info("session run: %s", json.dumps(report.get("summary", report), default=str)[:2000])


def test_the_live_api_matches_its_schema_with_a_read_only_token(stack_logs: Stack, tmp_path: Path) -> None:
    session = fuzzer_session(stack_logs, TOKEN_FUZZER)
    _, token = create_token(session, "schema fuzzer", read_only=True, password=TOKEN_FUZZER[1])
    # No cookie at all: a script. Its writes are all refused (403), which the schema documents.
    report = schemathesis(stack_logs, tmp_path, "token", {"Authorization": f"Bearer {token}"})
    logger.info("token run: %s", json.dumps(report.get("summary", report), default=str)[:2000])
