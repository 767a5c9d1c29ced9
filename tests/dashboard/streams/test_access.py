"""The access audit: open streams whose user, session (expired, ended, or outdated by a
password change) or API token (revoked, expired) is no longer valid are closed (4401)
even when no signal said so, or when its message was lost."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.contrib.sessions.backends.db import SessionStore
from django.test import Client
from django.utils import timezone

from dashboard import signals, tokens
from dashboard.models import ApiToken
from dashboard.streams import access
from dashboard.streams.access import AccessAudit, Credentials, still_valid
from tests.dashboard.conftest import ORIGIN, next_frame
from tests.dashboard.streams.test_token_auth import closed_with, open_stream
from tests.waiting import until

logger = logging.getLogger(__name__)


class Stream:
    """A stand-in open stream: its credentials and the reasons it was revoked for."""

    def __init__(self, user_id: int, session_key: str | None = None, token_id: int | None = None) -> None:
        self.credentials = Credentials(user_id, session_key, token_id)
        self.revoked: list[str] = []

    async def revoke(self, reason: str) -> None:
        self.revoked.append(reason)


def _session(user_id: int, *, expired: bool = False, auth_hash: str | None = None) -> str:
    """A stored login session of ``user_id``, carrying its current auth hash unless told another."""
    session = SessionStore()
    session[SESSION_KEY] = str(user_id)
    if auth_hash is None:
        user = get_user_model().objects.filter(pk=user_id).first()
        auth_hash = user.get_session_auth_hash() if user is not None else "no-such-user"
    session[HASH_SESSION_KEY] = auth_hash
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
    found = still_valid({*users.values(), 999_999}, {live, dead, "no-such-session"})
    assert found.users == {users["a"], users["c"]}
    assert found.sessions == {live: users["a"]}


def test_a_session_is_valid_only_with_its_users_current_auth_hash(users, django_user_model, settings) -> None:
    current = _session(users["a"])
    forged = _session(users["a"], auth_hash="0" * 64)
    empty = _session(users["a"], auth_hash="")
    inactive_users = _session(users["b"])
    before_change = _session(users["c"])
    user_c = django_user_model.objects.get(pk=users["c"])
    user_c.set_password("a-new-one-9")
    user_c.save()
    found = still_valid(set(users.values()), {current, forged, empty, inactive_users, before_change})
    assert found.sessions == {current: users["a"]}
    # Rotating SECRET_KEY with the old one in SECRET_KEY_FALLBACKS keeps sessions, as Django does.
    settings.SECRET_KEY_FALLBACKS = [settings.SECRET_KEY]
    settings.SECRET_KEY = "a-rotated-secret-key-for-the-test-" + "x" * 20
    assert still_valid({users["a"]}, {current}).sessions == {current: users["a"]}
    settings.SECRET_KEY_FALLBACKS = []
    assert still_valid({users["a"]}, {current}).sessions == {}


def test_a_sessions_data_is_verified_once_across_checks_until_it_changes(users, monkeypatch) -> None:
    decoded: list[str] = []
    decode = SessionStore.decode

    def counting(self, session_data: str) -> dict:
        decoded.append(session_data)
        return decode(self, session_data)

    monkeypatch.setattr(SessionStore, "decode", counting)
    sessions = {_session(users["a"]), _session(users["c"])}
    for _ in range(3):
        assert set(still_valid(set(users.values()), sessions).sessions) == sessions
    assert len(decoded) == 2, "each session's data verified once, not at every check"
    changed = SessionStore(session_key=next(iter(sessions)))
    changed["theme"] = "dark"  # the same login, new data
    changed.save()
    decoded.clear()
    assert set(still_valid(set(users.values()), sessions).sessions) == sessions
    assert len(decoded) == 1, "the changed one verified again"


def test_still_valid_finds_live_tokens_with_their_owner(users, django_user_model, monkeypatch, settings) -> None:
    monkeypatch.setattr(access, "CHUNK", 2)
    user_a = django_user_model.objects.get(pk=users["a"])
    made = {name: tokens.create(user_a, name).token.pk for name in ("live", "expired", "too old", "revoked")}
    ApiToken.objects.filter(pk=made["expired"]).update(expires_at=timezone.now() - timedelta(seconds=1))
    too_old = timezone.now() - timedelta(days=settings.API_TOKEN_MAX_DAYS, seconds=1)
    ApiToken.objects.filter(pk=made["too old"]).update(created_at=too_old, expires_at=None)
    assert tokens.revoke(user_a, made["revoked"]) is not None
    found = still_valid({users["a"]}, set(), {*made.values(), 999_999})
    assert found.tokens == {(made["live"], users["a"])}


async def test_a_check_closes_exactly_the_streams_that_lost_their_right(users, django_user_model) -> None:
    live = await sync_to_async(_session)(users["a"])
    expired = await sync_to_async(_session)(users["a"], expired=True)
    user_c = await django_user_model.objects.aget(pk=users["c"])
    token_c = (await sync_to_async(tokens.create)(user_c, "c")).token.pk
    dead_token = (await sync_to_async(tokens.create)(user_c, "dead")).token.pk
    await sync_to_async(tokens.revoke)(user_c, dead_token)
    keep, by_token = Stream(users["a"], live), Stream(users["c"], token_id=token_c)
    inactive, gone, ended = Stream(users["b"], live), Stream(999_999), Stream(users["a"], expired)
    revoked, someone_elses = Stream(users["c"], token_id=dead_token), Stream(users["a"], token_id=token_c)
    not_theirs = Stream(users["c"], live)  # a session key of another user
    audit = AccessAudit(interval=60)
    for stream in (keep, by_token, inactive, gone, ended, revoked, someone_elses, not_theirs):
        audit.streams.add(stream)
    assert await audit.check() == 6
    assert (keep.revoked, by_token.revoked) == ([], [])
    assert inactive.revoked == gone.revoked == ["user deactivated or deleted"]
    assert ended.revoked == not_theirs.revoked == ["session expired, ended or its password changed"]
    assert revoked.revoked == someone_elses.revoked == ["API token revoked or expired"]
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


# --- A lost close message: the audit closes the stream within its interval ---------------

CHECK_SECONDS = 1
# The audit sleeps one interval between checks; a check takes well under a second more.
CLOSE_WITHIN = CHECK_SECONDS * 2 + 1


def _lost(group: str, reason: str) -> bool:
    """``publish_revoked`` whose message never arrives (a channel-layer shard restarting)."""
    return False


def _logged_in(user: object) -> tuple[Client, str]:
    client = Client()
    client.force_login(user)
    return client, f"sessionid={client.cookies['sessionid'].value}"


async def _closed_after_change(communicator: object, changed_at: float) -> float:
    assert await closed_with(communicator, timeout=CLOSE_WITHIN + 5) == 4401
    return asyncio.get_running_loop().time() - changed_at


async def _still_open(communicator: object) -> None:
    await communicator.send_to(text_data=json.dumps({"op": "ping", "id": 3}))
    assert (await next_frame(communicator, "pong"))["id"] == 3
    await communicator.disconnect()


async def test_a_revoked_tokens_stream_closes_at_the_next_check_when_the_close_is_lost(
    symbols, django_user_model, settings, monkeypatch
) -> None:
    settings.TICKER = {**settings.TICKER, "ACCESS_CHECK_SECONDS": CHECK_SECONDS}
    monkeypatch.setattr(tokens, "publish_revoked", _lost)
    user = await sync_to_async(django_user_model.objects.create_user)(username="bot", password="x-not-used-9")
    doomed, kept = [await sync_to_async(tokens.create)(user, name) for name in ("doomed", "kept")]
    stream, connected = await open_stream(authorization=f"Bearer {doomed.secret}")
    survivor, survivor_connected = await open_stream(authorization=f"Bearer {kept.secret}")
    assert connected
    assert survivor_connected
    await next_frame(stream, "hello")
    await next_frame(survivor, "hello")
    revocation = await sync_to_async(tokens.revoke)(user, doomed.token.pk)
    revoked_at = asyncio.get_running_loop().time()
    assert revocation.told is False, "no close was sent: only the audit can end the stream"
    elapsed = await _closed_after_change(stream, revoked_at)
    logger.info("revoked token's stream closed by the audit %.2f s after the revocation", elapsed)
    assert elapsed <= CLOSE_WITHIN
    await _still_open(survivor)


async def test_a_password_change_whose_close_is_lost_ends_every_stream_opened_with_the_old_one(
    symbols, django_user_model, settings, monkeypatch
) -> None:
    settings.TICKER = {**settings.TICKER, "ACCESS_CHECK_SECONDS": CHECK_SECONDS}
    monkeypatch.setattr(signals, "publish_revoked", _lost)
    password = "x-old-password-9"
    user = await sync_to_async(django_user_model.objects.create_user)(username="erin", password=password)
    (changer, changer_cookie), (_, other_cookie) = [await sync_to_async(_logged_in)(user) for _ in range(2)]
    token = await sync_to_async(tokens.create)(user, "script")
    here, ok_here = await open_stream(cookie=changer_cookie, origin=ORIGIN)
    elsewhere, ok_elsewhere = await open_stream(cookie=other_cookie, origin=ORIGIN)
    script, ok_script = await open_stream(authorization=f"Bearer {token.secret}")
    assert [ok_here, ok_elsewhere, ok_script] == [True, True, True]
    for communicator in (here, elsewhere, script):
        await next_frame(communicator, "hello")
    new = "x-new-password-9"
    fields = {"old_password": password, "new_password1": new, "new_password2": new}
    response = await sync_to_async(changer.post)("/accounts/password_change/", fields)
    assert response.status_code == 302
    changed_at = asyncio.get_running_loop().time()
    # The other session's hash is outdated, the token is gone, and the changer's session was
    # replaced by a new one (Django cycles its key): all three streams end.
    elapsed = [await _closed_after_change(c, changed_at) for c in (elsewhere, script, here)]
    logger.info("streams closed by the audit %.2f / %.2f / %.2f s after the change", *elapsed)
    assert max(elapsed) <= CLOSE_WITHIN
    # The browser that changed it reconnects with its new session, and stays.
    renewed, connected = await open_stream(cookie=f"sessionid={changer.cookies['sessionid'].value}", origin=ORIGIN)
    assert connected
    await next_frame(renewed, "hello")
    stale, connected = await open_stream(cookie=other_cookie, origin=ORIGIN)
    assert connected
    assert await closed_with(stale) == 4401, "the other session is logged out"
    await _still_open(renewed)
