"""Personal API tokens: create/list/revoke, hashed storage, read-only, expiry, throttle,
bearer auth on the HTTP API and on the WebSocket handshake, revocation closing streams;
the current password to create one, a maximum lifetime, every token revoked when the
password changes or is reset (but not when its hash is only upgraded)."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import re
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.forms import AdminPasswordChangeForm
from django.contrib.auth.hashers import make_password
from django.core import mail
from django.core.cache import cache
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from dashboard import tokens
from dashboard.models import ApiToken, Symbol
from tests.dashboard.conftest import ORIGIN, next_frame
from ticker.asgi import application

PASSWORD = "pw-for-test-1"
NEW_PASSWORD = "a-new-pw-for-test-7"
# Wrong passwords tried before giving up on a lockout: above every limit axes is given here.
GUESS_BOUND = 60
# The API's JSON carries times to the millisecond.
JSON_PRECISION = timedelta(milliseconds=1)


@pytest.fixture
def market(db, redis_client) -> None:
    Symbol.objects.create(symbol="AAA", name="Triple A", initial_price=Decimal("10"))


@pytest.fixture
def alice(market, django_user_model) -> Client:
    client = Client()
    client.user = django_user_model.objects.create_user(username="alice", password=PASSWORD)
    client.force_login(client.user)
    return client


def post_token(client: Client, **body: object):
    return client.post("/api/tokens/", json.dumps({"name": "script", **body}), content_type="application/json")


def create(client: Client, **body: object) -> dict:
    response = post_token(client, password=PASSWORD, **body)
    assert response.status_code == 201, response.content
    return response.json()


def bearer(secret: str) -> Client:
    """A script: no cookies, no CSRF token, only the Authorization header."""
    return Client(enforce_csrf_checks=True, HTTP_AUTHORIZATION=f"Bearer {secret}")


def test_create_returns_the_secret_once_and_lists_never_show_it(alice) -> None:
    created = create(alice, name="backtest", read_only=True, expires_in_days=30)
    secret = created["token"]
    assert secret.startswith("tkr_")
    assert len(secret) >= 40
    assert created["prefix"] == secret[:12]
    assert created["read_only"] is True
    assert created["expires_at"] is not None
    listed = alice.get("/api/tokens/").json()["tokens"]
    assert [(t["id"], t["name"], t["prefix"]) for t in listed] == [(created["id"], "backtest", secret[:12])]
    assert "token" not in listed[0]
    assert secret not in alice.get("/api/tokens/").content.decode()


def test_only_the_hash_is_stored(alice) -> None:
    secret = create(alice)["token"]
    row = ApiToken.objects.get()
    assert row.token_hash == hashlib.sha256(secret.encode()).hexdigest()
    stored = [str(v) for v in ApiToken.objects.values().get().values()]
    assert all(secret not in value for value in stored)


def test_a_token_works_on_the_api_without_csrf(alice) -> None:
    script = bearer(create(alice)["token"])
    assert [s["symbol"] for s in script.get("/api/symbols/").json()["symbols"]] == ["AAA"]
    response = script.post("/api/watchlists/", json.dumps({"name": "Bot"}), content_type="application/json")
    assert response.status_code == 201
    assert ApiToken.objects.get().last_used_at is not None


def test_the_session_still_needs_csrf_on_writes(market, django_user_model) -> None:
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(django_user_model.objects.create_user(username="carol", password="pw-for-test-3"))
    response = browser.post("/api/tokens/", json.dumps({"name": "x"}), content_type="application/json")
    assert response.status_code == 403
    assert response.json()["error"] == "csrf_failed"


def test_read_only_tokens_get_403_on_writes(alice) -> None:
    script = bearer(create(alice, read_only=True)["token"])
    assert script.get("/api/watchlists/").status_code == 200
    response = script.post("/api/watchlists/", json.dumps({"name": "Bot"}), content_type="application/json")
    assert response.status_code == 403
    assert response.json() == {"error": "forbidden", "message": "this API token is read-only"}


def test_expired_tokens_get_401(alice) -> None:
    created = create(alice, expires_in_days=1)
    ApiToken.objects.filter(pk=created["id"]).update(expires_at=timezone.now() - timedelta(seconds=1))
    response = bearer(created["token"]).get("/api/symbols/")
    assert response.status_code == 401
    assert response.json() == {"error": "not_authenticated", "message": "this API token has expired"}


@pytest.mark.parametrize("header", ["Bearer tkr_not-a-real-token", "Bearer nonsense", "Bearer "])
def test_a_bad_token_is_401_even_with_a_session(alice, header) -> None:
    # A script's wrong token must not be rescued by a cookie that happened to come along.
    response = alice.get("/api/symbols/", HTTP_AUTHORIZATION=header)
    assert response.status_code == 401
    assert response.json()["error"] == "not_authenticated"


def test_revoked_tokens_get_401(alice) -> None:
    created = create(alice)
    assert alice.delete(f"/api/tokens/{created['id']}/").status_code == 204
    assert not ApiToken.objects.exists()
    assert bearer(created["token"]).get("/api/symbols/").status_code == 401
    assert alice.delete(f"/api/tokens/{created['id']}/").status_code == 404


def test_a_user_cannot_revoke_another_users_token(alice, django_user_model) -> None:
    created = create(alice)
    bob = Client()
    bob.force_login(django_user_model.objects.create_user(username="bob", password="pw-for-test-2"))
    assert bob.delete(f"/api/tokens/{created['id']}/").status_code == 404
    assert bob.get("/api/tokens/").json()["tokens"] == []
    assert ApiToken.objects.filter(pk=created["id"]).exists()


def test_tokens_cannot_mint_or_revoke_tokens(alice) -> None:
    created = create(alice)
    script = bearer(created["token"])
    # Not even with the password: a token must not outlive its revocation through a child.
    child = {"name": "child", "password": PASSWORD}
    response = script.post("/api/tokens/", json.dumps(child), content_type="application/json")
    assert response.status_code == 403
    assert script.delete(f"/api/tokens/{created['id']}/").status_code == 403
    assert ApiToken.objects.count() == 1


def test_tokens_are_throttled_with_429_in_the_common_shape(alice, redis_client, settings) -> None:
    settings.API_TOKEN_RATE = "3/min"
    script = bearer(create(alice)["token"])
    assert [script.get("/api/symbols/").status_code for _ in range(3)] == [200, 200, 200]
    response = script.get("/api/symbols/")
    assert response.status_code == 429
    body = response.json()
    assert body["error"] == "rate_limited"
    assert "retry in" in body["message"]
    assert 1 <= int(response["Retry-After"]) <= 60
    # The budget is per token: another token (and the browser session) are unaffected.
    assert bearer(create(alice, name="other")["token"]).get("/api/symbols/").status_code == 200
    assert alice.get("/api/symbols/").status_code == 200


@pytest.mark.parametrize(
    ("body", "field"),
    [({"name": "x" * 41}, "name"), ({"name": "n", "expires_in_days": 0}, "expires_in_days")],
)
def test_invalid_token_requests_are_400_naming_the_field(alice, body, field) -> None:
    response = alice.post("/api/tokens/", json.dumps({**body, "password": PASSWORD}), content_type="application/json")
    assert response.status_code == 400
    assert response.json()["field"] == field


# --- Only the password makes a token --------------------------------------------------


def test_creating_a_token_needs_the_current_password(alice) -> None:
    missing = post_token(alice)
    assert (missing.status_code, missing.json()["field"]) == (400, "password")
    wrong = post_token(alice, password="not-the-password")
    assert wrong.status_code == 403
    assert wrong.json() == {"error": "forbidden", "message": "the current password is wrong", "field": "password"}
    assert not ApiToken.objects.exists()
    assert post_token(alice, password=PASSWORD).status_code == 201


def test_the_settings_page_asks_for_the_current_password(alice) -> None:
    page = alice.get("/settings/tokens/").content.decode()
    assert 'type="password" name="password" required autocomplete="current-password"' in page
    refused = alice.post("/settings/tokens/", {"name": "n", "expires_in_days": "30", "password": "wrong"})
    assert refused.status_code == 403
    assert "the current password is wrong" in refused.content.decode()
    assert 'class="secret-value"' not in refused.content.decode()
    assert not ApiToken.objects.exists()


def test_wrong_token_passwords_count_as_failed_logins(alice) -> None:
    # The form is a password oracle for whoever holds the session: it locks as a login does.
    cache.clear()
    answers = []
    while len(answers) < GUESS_BOUND and (not answers or answers[-1].status_code == 403):
        answers.append(post_token(alice, password=f"guess-{len(answers)}"))
    statuses = [answer.status_code for answer in answers]
    assert statuses[0] == 403
    assert statuses[-1] == 429, statuses
    # Every answer in the API's shape, the one that reached the limit too (not axes' HTML page).
    assert {answer["Content-Type"] for answer in answers} == {"application/json; charset=utf-8"}
    assert answers[-1].json() == {"error": "rate_limited", "message": tokens.LOCKED_MESSAGE, "field": "password"}
    locked = post_token(alice, password=PASSWORD)
    assert locked.status_code == 429, "locked out: even the right password makes no token"
    assert locked.json()["field"] == "password"
    page = alice.post("/settings/tokens/", {"name": "n", "expires_in_days": "30", "password": PASSWORD})
    assert page.status_code == 429
    assert tokens.LOCKED_MESSAGE in page.content.decode(), "the page says so on its own form"
    assert not ApiToken.objects.exists()
    assert Client().post("/accounts/login/", {"username": "alice", "password": PASSWORD}).status_code == 429
    cache.clear()


# --- A maximum lifetime ---------------------------------------------------------------


def test_a_token_without_an_expiry_lives_the_maximum(alice, settings) -> None:
    settings.API_TOKEN_MAX_DAYS = 30
    before = timezone.now()
    created = create(alice)
    expires_at = datetime.fromisoformat(created["expires_at"])
    assert before + timedelta(days=30) - JSON_PRECISION <= expires_at <= timezone.now() + timedelta(days=30)
    assert abs(ApiToken.objects.get().expires_at - expires_at) < JSON_PRECISION


def test_a_longer_lifetime_is_refused_naming_the_field(alice, settings) -> None:
    settings.API_TOKEN_MAX_DAYS = 30
    response = post_token(alice, password=PASSWORD, expires_in_days=31)
    assert response.status_code == 400
    body = response.json()
    assert body["field"] == "expires_in_days"
    assert "between 1 and 30" in body["message"]
    assert not ApiToken.objects.exists()
    page = alice.post("/settings/tokens/", {"name": "n", "expires_in_days": "365", "password": PASSWORD})
    assert page.status_code == 400
    assert "between 1 and 30" in page.content.decode()


def test_the_page_offers_no_lifetime_past_the_maximum(alice, settings) -> None:
    settings.API_TOKEN_MAX_DAYS = 45
    page = alice.get("/settings/tokens/").content.decode()
    offered = re.findall(r'<option value="(\d+)"( selected)?>', page)
    assert offered == [("7", ""), ("30", ""), ("45", " selected")]


@pytest.mark.parametrize("stored_expiry", [None, timedelta(days=365)])
def test_the_maximum_bounds_tokens_made_before_it(alice, settings, stored_expiry) -> None:
    # Rows made before the bound existed (no expiry) or before it was lowered.
    created = create(alice)
    born = timezone.now() - timedelta(days=31)
    expires_at = None if stored_expiry is None else born + stored_expiry
    ApiToken.objects.filter(pk=created["id"]).update(created_at=born, expires_at=expires_at)
    settings.API_TOKEN_MAX_DAYS = 31
    response = bearer(created["token"]).get("/api/symbols/")
    assert response.status_code == 401
    assert response.json()["message"] == "this API token has expired"
    [listed] = alice.get("/api/tokens/").json()["tokens"]
    assert abs(datetime.fromisoformat(listed["expires_at"]) - (born + timedelta(days=31))) < JSON_PRECISION
    settings.API_TOKEN_MAX_DAYS = 32
    assert bearer(created["token"]).get("/api/symbols/").status_code == 200


# --- Tokens die with the password -----------------------------------------------------


def _change_by_view(user) -> None:
    client = Client()
    client.force_login(user)
    fields = {"old_password": PASSWORD, "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD}
    assert client.post("/accounts/password_change/", fields).status_code == 302


def _reset_by_mail(user) -> None:
    mail.outbox.clear()
    assert Client().post("/accounts/password_reset/", {"email": user.email}).status_code == 302
    link = re.search(r"https?://[^/\s]+(/accounts/reset/\S+/)", mail.outbox[0].body).group(1)
    client = Client()
    form_page = client.get(link, follow=True)
    path = form_page.redirect_chain[-1][0]
    done = client.post(path, {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    assert done.status_code == 302


def _change_in_admin(user) -> None:
    form = AdminPasswordChangeForm(user, {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD})
    assert form.is_valid(), form.errors
    form.save()


def _change_by_command(user, monkeypatch) -> None:
    monkeypatch.setattr("getpass.getpass", lambda *args, **kwargs: NEW_PASSWORD)
    call_command("changepassword", user.username, stdout=io.StringIO())


@pytest.mark.parametrize("how", ["password change page", "password reset mail", "admin form", "changepassword"])
def test_a_password_change_or_reset_revokes_every_token(alice, django_user_model, monkeypatch, how) -> None:
    cache.clear()
    user = alice.user
    user.email = "alice@example.com"
    user.save(update_fields=["email"])
    secrets = [create(alice, name=name)["token"] for name in ("one", "two")]
    bob = django_user_model.objects.create_user(username="bob", password="pw-for-test-2")
    kept = tokens.create(bob, "bob's")
    changes = {
        "password change page": _change_by_view,
        "password reset mail": _reset_by_mail,
        "admin form": _change_in_admin,
        "changepassword": lambda u: _change_by_command(u, monkeypatch),
    }
    changes[how](user)
    user.refresh_from_db()
    assert user.check_password(NEW_PASSWORD), "the password did change"
    assert list(ApiToken.objects.values_list("pk", flat=True)) == [kept.token.pk], "only another user's remains"
    for secret in secrets:
        assert bearer(secret).get("/api/symbols/").status_code == 401


def test_saving_a_user_without_a_new_password_keeps_the_tokens(alice) -> None:
    secret = create(alice)["token"]
    alice.user.first_name = "Alice"
    alice.user.save()
    assert bearer(secret).get("/api/symbols/").status_code == 200


@pytest.fixture
def legacy_hasher(settings) -> None:
    """PBKDF2 preferred, MD5 still understood: an MD5 hash is upgraded at the next check."""
    settings.PASSWORD_HASHERS = [
        "django.contrib.auth.hashers.PBKDF2PasswordHasher",
        "django.contrib.auth.hashers.MD5PasswordHasher",
    ]


def _store_legacy_hash(user) -> None:
    # update(): no signal, as if the row had been stored under the older hasher.
    type(user).objects.filter(pk=user.pk).update(password=make_password(PASSWORD, hasher="md5"))
    user.refresh_from_db()


def test_a_hash_upgrade_is_no_password_change(alice, legacy_hasher) -> None:
    # Django re-hashes a password when it is checked and the preferred hasher changed: same password.
    secret = create(alice)["token"]
    user = alice.user
    _store_legacy_hash(user)
    assert user.check_password(PASSWORD)
    user.refresh_from_db()
    assert user.password.startswith("pbkdf2_sha256$"), "the hash was upgraded"
    assert bearer(secret).get("/api/symbols/").status_code == 200


def test_a_hash_upgrade_while_making_a_token_keeps_the_session(alice, legacy_hasher) -> None:
    _store_legacy_hash(alice.user)
    alice.force_login(alice.user)
    create(alice)  # checking the password here upgrades the hash
    alice.user.refresh_from_db()
    assert alice.user.password.startswith("pbkdf2_sha256$"), "the hash was upgraded"
    assert alice.get("/api/tokens/").status_code == 200, "the session that upgraded it stays logged in"


def test_the_settings_page_creates_shows_once_and_revokes(alice) -> None:
    page = alice.get("/settings/tokens/")
    assert page.status_code == 200
    assert "No tokens yet" in page.content.decode()
    fields = {"name": "notebook", "expires_in_days": "30", "read_only": "on", "password": PASSWORD}
    created = alice.post("/settings/tokens/", fields)
    html = created.content.decode()
    token = ApiToken.objects.get()
    assert token.read_only
    assert token.name == "notebook"
    assert created["Cache-Control"] == "no-store"
    secret = html.split('class="secret-value" readonly value="')[1].split('"')[0]
    assert tokens.authenticate(secret).pk == token.pk
    # Shown once: the next visit lists it by prefix only.
    again = alice.get("/settings/tokens/").content.decode()
    assert token.prefix in again
    assert secret not in again
    response = alice.post(f"/settings/tokens/{token.pk}/revoke/", follow=True)
    assert "Token revoked: it is refused from now on." in response.content.decode()
    assert not ApiToken.objects.exists()


@pytest.mark.parametrize(
    ("broadcast", "said"),
    [(True, "Its open streams were sent a close"), (False, "The close could not be broadcast")],
)
def test_the_page_says_what_revoking_did(transactional_db, alice, monkeypatch, settings, broadcast, said) -> None:
    # Autocommit, as in production: the close is sent before the page is answered.
    settings.TICKER = {**settings.TICKER, "ACCESS_CHECK_SECONDS": 7}
    if not broadcast:
        monkeypatch.setattr(tokens, "publish_revoked", lambda group, reason: False)
    token_id = create(alice)["id"]
    html = alice.post(f"/settings/tokens/{token_id}/revoke/", follow=True).content.decode()
    assert f"Token revoked: it is refused from now on. {said}" in html
    assert "any stream that misses it is closed within 7 s (the access check)" in html


def test_the_dashboard_header_links_to_the_tokens_page(alice) -> None:
    assert 'href="/settings/tokens/"' in alice.get("/").content.decode()


# --- The WebSocket handshake ----------------------------------------------------------


async def open_stream(
    secret: str | None, *, origin: bytes | None = None, cookie: str | None = None
) -> tuple[WebsocketCommunicator, bool, int | None]:
    headers = [(b"host", b"127.0.0.1")]
    if secret is not None:
        headers.append((b"authorization", f"Bearer {secret}".encode()))
    if origin is not None:
        headers.append((b"origin", origin))
    if cookie is not None:
        headers.append((b"cookie", cookie.encode()))
    communicator = WebsocketCommunicator(application, "/ws/stream/", headers=headers)
    connected, code = await communicator.connect(timeout=5)
    return communicator, connected, code


@pytest.fixture
def token_for(transactional_db, django_user_model):
    user = django_user_model.objects.create_user(username="ws-script", password="not-used-here-1")

    def _create(**options: object) -> tokens.NewToken:
        return tokens.create(user, "ws", **options)

    return _create


async def closed_with(communicator: WebsocketCommunicator, timeout: float = 5.0) -> int:
    """The close code, skipping any frame sent before it."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        output = await communicator.receive_output(timeout=max(deadline - loop.time(), 0.01))
        if output["type"] == "websocket.close":
            return output["code"]


async def test_a_script_with_a_token_and_no_origin_streams(symbols, token_for) -> None:
    created = await database_sync_to_async(token_for)()
    communicator, connected, _ = await open_stream(created.secret)
    assert connected
    assert (await next_frame(communicator, "hello"))["protocol"] == 1
    await communicator.send_to(text_data=json.dumps({"op": "subscribe", "id": 1, "symbols": ["AAA"]}))
    assert (await next_frame(communicator, "ack"))["symbols"] == ["AAA"]
    await communicator.disconnect()


async def test_a_read_only_token_may_stream(symbols, token_for) -> None:
    created = await database_sync_to_async(token_for)(read_only=True)
    communicator, connected, _ = await open_stream(created.secret, origin=ORIGIN)
    assert connected
    assert (await next_frame(communicator, "hello"))["type"] == "hello"
    await communicator.disconnect()


@pytest.mark.parametrize("case", ["invalid", "revoked", "expired"])
async def test_a_bad_token_is_closed_4401_even_with_a_session(symbols, token_for, session_cookie, case) -> None:
    def prepare() -> tokens.NewToken:
        made = token_for()
        if case == "revoked":
            tokens.revoke(made.token.user, made.token.pk)
        elif case == "expired":
            ApiToken.objects.filter(pk=made.token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
        return made

    created = await database_sync_to_async(prepare)()
    secret = "tkr_" + "x" * 43 if case == "invalid" else created.secret
    communicator, connected, _ = await open_stream(secret, origin=ORIGIN, cookie=session_cookie)
    assert connected  # accepted, then closed with a code the script can read
    assert await closed_with(communicator) == 4401
    await communicator.wait(timeout=5)


async def test_revoking_a_token_closes_its_open_streams(symbols, token_for) -> None:
    created = await database_sync_to_async(token_for)()
    other = await database_sync_to_async(token_for)()
    communicator, connected, _ = await open_stream(created.secret)
    survivor, survivor_connected, _ = await open_stream(other.secret)
    assert connected
    assert survivor_connected
    await next_frame(communicator, "hello")
    await next_frame(survivor, "hello")
    assert await database_sync_to_async(tokens.revoke)(created.token.user, created.token.pk)
    assert await closed_with(communicator) == 4401
    # The same user's stream on another token stays open.
    await survivor.send_to(text_data=json.dumps({"op": "ping", "id": 5}))
    assert (await next_frame(survivor, "pong"))["id"] == 5
    await survivor.disconnect()


async def test_no_origin_and_no_token_is_refused(symbols, session_cookie) -> None:
    # A cookie without an Origin is exactly what a cross-site script cannot be trusted with.
    _, connected, _ = await open_stream(None, cookie=session_cookie)
    assert not connected


async def test_a_stream_closes_when_its_token_expires(symbols, token_for) -> None:
    expires_at = timezone.now() + timedelta(seconds=1.5)

    def prepare() -> tokens.NewToken:
        made = token_for(expires_in_days=1)
        ApiToken.objects.filter(pk=made.token.pk).update(expires_at=expires_at)
        return made

    created = await database_sync_to_async(prepare)()
    communicator, connected, _ = await open_stream(created.secret)
    assert connected
    await next_frame(communicator, "hello")
    assert await closed_with(communicator, timeout=10) == 4401
    await communicator.disconnect()
    assert timezone.now() >= expires_at
