"""Every login path is throttled (django-axes on the shared cache): admin, accounts,
password change and reset; look-alike usernames share a counter; unlock by command."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.core.management import call_command
from django.test import Client

LIMIT = 3


@pytest.fixture
def dana(db, redis_client, django_user_model, settings):
    cache.clear()
    settings.AXES_FAILURE_LIMIT = LIMIT
    return django_user_model.objects.create_user(username="dana", password="right-password-1", is_staff=True)


def attempt(path: str, username: str, password: str, address: str = "10.1.1.1"):
    return Client().post(path, {"username": username, "password": password}, REMOTE_ADDR=address)


@pytest.mark.parametrize("path", ["/accounts/login/", "/admin/login/"])
def test_a_username_is_locked_after_the_limit_even_for_the_right_password(dana, path) -> None:
    for _ in range(LIMIT - 1):
        assert attempt(path, "dana", "wrong").status_code == 200
    assert attempt(path, "dana", "wrong").status_code == 429, "the failure that reaches the limit locks"
    locked = attempt(path, "dana", "right-password-1")
    assert locked.status_code == 429
    assert "Too many failed attempts" in locked.content.decode()
    assert attempt(path, "dana", "right-password-1", address="10.9.9.9").status_code == 429, "per username too"


def test_an_address_is_locked_across_usernames(dana) -> None:
    for i in range(LIMIT):
        attempt("/accounts/login/", f"nobody{i}", "wrong")
    assert attempt("/accounts/login/", "dana", "right-password-1").status_code == 429
    assert attempt("/accounts/login/", "dana", "right-password-1", address="10.2.2.2").status_code == 302


def test_look_alike_usernames_count_against_the_same_account(dana) -> None:
    # Fullwidth letters: Django's form normalises them (NFKC) to "dana" before checking.
    for _ in range(LIMIT):
        attempt("/admin/login/", "\uff44\uff41\uff4e\uff41", "wrong", address="10.3.3.3")
    assert attempt("/admin/login/", "dana", "right-password-1", address="10.4.4.4").status_code == 429


def test_success_under_the_limit_resets_the_count(dana) -> None:
    attempt("/accounts/login/", "dana", "wrong")
    assert attempt("/accounts/login/", "dana", "right-password-1").status_code == 302
    for _ in range(LIMIT - 1):
        attempt("/accounts/login/", "dana", "wrong")
    assert attempt("/accounts/login/", "dana", "right-password-1").status_code == 302


def test_a_wrong_old_password_on_password_change_counts(dana) -> None:
    client = Client()
    client.force_login(dana)
    change = {"new_password1": "another-password-9", "new_password2": "another-password-9"}
    for _ in range(LIMIT - 1):
        response = client.post("/accounts/password_change/", {"old_password": "wrong", **change})
        assert response.status_code == 200
    assert client.post("/accounts/password_change/", {"old_password": "wrong", **change}).status_code == 429
    locked = client.post("/accounts/password_change/", {"old_password": "right-password-1", **change})
    assert locked.status_code == 429
    dana.refresh_from_db()
    assert dana.check_password("right-password-1"), "the password did not change"


def test_password_reset_requests_are_throttled_per_address(dana) -> None:
    for _ in range(LIMIT - 1):
        response = Client().post("/accounts/password_reset/", {"email": "x@example.com"}, REMOTE_ADDR="10.5.5.5")
        assert response.status_code == 302
    refused = Client().post("/accounts/password_reset/", {"email": "x@example.com"}, REMOTE_ADDR="10.5.5.5")
    assert refused.status_code == 429


def test_an_operator_unlocks_a_user(dana) -> None:
    for _ in range(LIMIT):
        attempt("/accounts/login/", "dana", "wrong", address="10.6.6.6")
    assert attempt("/accounts/login/", "dana", "right-password-1", address="10.7.7.7").status_code == 429
    call_command("axes_reset_username", "dana")
    assert attempt("/accounts/login/", "dana", "right-password-1", address="10.7.7.7").status_code == 302
