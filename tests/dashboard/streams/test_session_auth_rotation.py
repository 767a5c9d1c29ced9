"""The stream handshake's user lookup across a SECRET_KEY rotation (SECRET_KEY_FALLBACKS).

Channels' own lookup knows no fallbacks and flushes a session whose auth hash an old key
made; the stream's lookup accepts it, as Django's pages do, and re-makes the hash under
the current key in the same session (docs/operations.md, "Rotating SECRET_KEY").
"""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth import HASH_SESSION_KEY
from django.contrib.sessions.models import Session
from django.test import Client

from tests.dashboard.streams.test_session_auth import APP

OLD_KEY = "old-stream-test-key-" + "Qw3rTy9UiOp4AsDf" * 3
NEW_KEY = "new-stream-test-key-" + "Zx8CvBn2MlKj6HgF" * 3


async def _who(session_key: str) -> str:
    communicator = WebsocketCommunicator(APP, "/", headers=[(b"cookie", f"sessionid={session_key}".encode())])
    connected, _ = await communicator.connect(timeout=10)
    assert connected
    name = await communicator.receive_from(timeout=10)
    await communicator.disconnect()
    return name


@pytest.fixture
def old_session(transactional_db, django_user_model, settings) -> tuple[Any, str]:
    """A trader's session made while OLD_KEY was the key."""
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = OLD_KEY, []
    user = django_user_model.objects.create_user(username="rotated", password="pw-not-used-1")
    client = Client()
    client.force_login(user)
    return user, client.cookies["sessionid"].value


def _stored_hash(session_key: str) -> str | None:
    return Session.objects.get(session_key=session_key).get_decoded().get(HASH_SESSION_KEY)


@pytest.mark.asyncio
async def test_a_session_of_the_old_key_opens_a_stream_and_moves_to_the_new_key(old_session, settings) -> None:
    user, key = old_session
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = NEW_KEY, [OLD_KEY]
    assert await _who(key) == "rotated"
    # Same session key (the browser's cookie), its hash now the new key's: the pages that
    # follow do not cycle it, and it outlives the fallback's removal.
    assert await sync_to_async(_stored_hash)(key) == user.get_session_auth_hash()
    settings.SECRET_KEY_FALLBACKS = []
    assert await _who(key) == "rotated"


@pytest.mark.asyncio
async def test_without_the_fallback_the_old_session_is_anonymous(old_session, settings) -> None:
    _, key = old_session
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = NEW_KEY, []
    assert await _who(key) == "-"


@pytest.mark.asyncio
async def test_the_fallback_does_not_revive_a_session_from_before_a_password_change(old_session, settings) -> None:
    user, key = old_session
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = NEW_KEY, [OLD_KEY]
    user.set_password("changed-since-1")
    await sync_to_async(user.save)()
    assert await _who(key) == "-"
    assert not await Session.objects.filter(session_key=key).aexists(), "flushed, as Channels does"
