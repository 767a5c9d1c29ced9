"""The access audit: open streams whose user or session is no longer valid are closed
(4401) even when no signal said so."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.contrib.sessions.backends.db import SessionStore
from django.utils import timezone

from dashboard.streams import access
from dashboard.streams.access import AccessAudit, Credentials, still_valid
from tests.waiting import until


class Stream:
    """A stand-in open stream: its credentials and the reasons it was revoked for."""

    def __init__(self, user_id: int, session_key: str | None = None) -> None:
        self.credentials = Credentials(user_id, session_key)
        self.revoked: list[str] = []

    async def revoke(self, reason: str) -> None:
        self.revoked.append(reason)


def _session(user_id: int, *, expired: bool = False) -> str:
    session = SessionStore()
    session["_auth_user_id"] = str(user_id)
    session.set_expiry(timezone.now() + timedelta(days=-1 if expired else 1))
    session.create()
    return session.session_key


@pytest.fixture
def users(transactional_db, django_user_model) -> dict[str, int]:
    made = {name: django_user_model.objects.create_user(username=name, password="x-not-used-9").pk for name in "abc"}
    django_user_model.objects.filter(username="b").update(is_active=False)
    return made


def test_still_valid_finds_active_users_and_live_sessions_in_chunks(users, monkeypatch) -> None:
    monkeypatch.setattr(access, "CHUNK", 2)  # three users, two sessions: several IN (...) queries each
    live, dead = _session(users["a"]), _session(users["a"], expired=True)
    found_users, found_sessions = still_valid({*users.values(), 999_999}, {live, dead, "no-such-session"})
    assert found_users == {users["a"], users["c"]}
    assert found_sessions == {live}


async def test_a_check_closes_exactly_the_streams_that_lost_their_right(users) -> None:
    live = await sync_to_async(_session)(users["a"])
    expired = await sync_to_async(_session)(users["a"], expired=True)
    keep, by_token = Stream(users["a"], live), Stream(users["c"])
    inactive, gone, ended = Stream(users["b"], live), Stream(999_999), Stream(users["a"], expired)
    audit = AccessAudit(interval=60)
    for stream in (keep, by_token, inactive, gone, ended):
        audit.streams.add(stream)
    assert await audit.check() == 3
    assert (keep.revoked, by_token.revoked) == ([], [])
    assert inactive.revoked == gone.revoked == ["user deactivated or deleted"]
    assert ended.revoked == ["session expired or ended"]
    assert set(audit.streams) == {keep, by_token}, "a closed stream is checked no more"
    assert await audit.check() == 0


async def test_registered_streams_are_checked_every_interval(users, django_user_model) -> None:
    audit = AccessAudit(interval=0.05)
    stream = Stream(users["a"])
    audit.register(stream)
    await sync_to_async(django_user_model.objects.filter(pk=users["a"]).update)(is_active=False)
    await until(lambda: stream.revoked, 10, "the periodic check to close the stream")
    assert stream.revoked == ["user deactivated or deleted"]


async def test_a_check_that_cannot_reach_the_database_keeps_streams_open(users, monkeypatch, caplog) -> None:
    def unreachable(*args: object) -> None:
        raise ConnectionError("database away")

    monkeypatch.setattr(access, "still_valid", unreachable)
    audit = AccessAudit(interval=0.02)
    stream = Stream(users["a"])
    with caplog.at_level(logging.WARNING, logger="dashboard.streams.access"):
        audit.register(stream)
        await until(lambda: "not re-checked" in caplog.text, 5, "the failed check to be logged")
    assert stream.revoked == []
    assert audit.checks.running(), "it tries again next interval"


async def test_the_processes_audit_follows_the_settings(settings) -> None:
    settings.TICKER = {**settings.TICKER, "ACCESS_CHECK_SECONDS": 7}
    assert access.audit() is access.audit()
    assert access.audit().interval == 7
    settings.TICKER = {**settings.TICKER, "ACCESS_CHECK_SECONDS": 3}
    assert access.audit().interval == 3
