"""Password guessing is braked: past the limit the login form answers 429, even to the right password."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.test import Client


@pytest.fixture
def user(db, redis_client, django_user_model, settings):
    cache.clear()
    settings.TICKER = {**settings.TICKER, "LOGIN_FAILURES_PER_USER": 3, "LOGIN_FAILURES_PER_ADDRESS": 6}
    return django_user_model.objects.create_user(username="dana", password="right-password-1")


def attempt(client: Client, username: str, password: str, address: str = "10.1.1.1"):
    return client.post("/accounts/login/", {"username": username, "password": password}, REMOTE_ADDR=address)


def test_username_is_locked_after_the_limit_even_for_the_right_password(user) -> None:
    client = Client()
    for _ in range(3):
        assert attempt(client, "dana", "wrong").status_code == 200
    locked = attempt(client, "dana", "right-password-1")
    assert locked.status_code == 429
    assert "Too many failed attempts" in locked.content.decode()
    # Another address does not unlock the username...
    assert attempt(client, "dana", "right-password-1", address="10.9.9.9").status_code == 429


def test_address_is_locked_across_usernames(user) -> None:
    client = Client()
    for i in range(6):
        attempt(client, f"nobody{i}", "wrong")
    assert attempt(client, "dana", "right-password-1").status_code == 429
    assert attempt(client, "dana", "right-password-1", address="10.2.2.2").status_code == 302


def test_successful_login_under_the_limit(user) -> None:
    client = Client()
    attempt(client, "dana", "wrong")
    response = attempt(client, "dana", "right-password-1")
    assert response.status_code == 302
    assert response["Location"] == "/"
