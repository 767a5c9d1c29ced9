"""Every login path is throttled (django-axes on the shared cache) by three counters, each
with its own limit: the (username, address) pair, the address, the username. Admin,
accounts, password change and reset; look-alike usernames share a counter; IPv6 counts
by /64; a success resets only its own pair; axes' reset commands work on the cache."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.core.management import call_command
from django.test import Client

from tests.test_settings import manage
from ticker.auth import address_group

PAIR, ADDRESS, USERNAME = 2, 4, 6  # small limits, same order as the defaults (5, 20, 50)
RIGHT = "right-password-1"
HERE, ELSEWHERE = "127.0.0.1", "127.0.0.2"  # both loopback: two sources on one host


@pytest.fixture
def dana(db, redis_client, django_user_model, settings):
    cache.clear()
    settings.AXES_FAILURE_LIMIT = PAIR
    settings.LOGIN_FAILURE_LIMITS = {"username+ip_address": PAIR, "ip_address": ADDRESS, "username": USERNAME}
    # A fast hasher: these tests make dozens of attempts; the throttle is what they test.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    return django_user_model.objects.create_user(username="dana", password=RIGHT, is_staff=True)


def attempt(path: str, username: str, password: str, address: str = HERE) -> int:
    return Client().post(path, {"username": username, "password": password}, REMOTE_ADDR=address).status_code


def login(username: str, password: str, address: str = HERE) -> int:
    return attempt("/accounts/login/", username, password, address)


@pytest.mark.parametrize("path", ["/accounts/login/", "/admin/login/"])
def test_a_pair_is_locked_at_its_limit_and_the_owner_still_logs_in_from_elsewhere(dana, path) -> None:
    for _ in range(PAIR - 1):
        assert attempt(path, "dana", "wrong") == 200
    assert attempt(path, "dana", "wrong") == 429, "the failure that reaches the limit locks"
    locked = Client().post(path, {"username": "dana", "password": RIGHT}, REMOTE_ADDR=HERE)
    assert locked.status_code == 429, "even the right password, from the guessing address"
    assert "Too many failed attempts" in locked.content.decode()
    assert attempt(path, "dana", RIGHT, address=ELSEWHERE) == 302, "the owner, from another address"


def test_hammering_a_locked_pair_never_locks_the_name_elsewhere(dana) -> None:
    # Refused attempts are not counted, so one address adds at most PAIR to the name's counter.
    for _ in range(USERNAME * 2):
        login("dana", "wrong")
    assert login("dana", RIGHT) == 429
    assert login("dana", RIGHT, address=ELSEWHERE) == 302


def test_an_address_spraying_many_names_is_locked_for_all(dana) -> None:
    for i in range(ADDRESS - 1):
        assert login(f"nobody{i}", "wrong") == 200, "each name stays under the pair limit"
    assert login("nobody-last", "wrong") == 429, "the address reached its limit"
    assert login("dana", RIGHT) == 429, "every name from that address"
    assert login("dana", RIGHT, address=ELSEWHERE) == 302


def test_a_name_guessed_from_many_addresses_is_locked_everywhere(dana) -> None:
    for i in range(USERNAME):
        login("dana", "wrong", address=f"10.0.0.{i}")
    assert login("dana", RIGHT, address="10.0.1.1") == 429, "distributed guessing"
    assert login("erin", "wrong", address="10.0.1.1") == 200, "other names are untouched"


def test_a_success_resets_only_its_own_pair(dana) -> None:
    assert login("nobody", "wrong") == 200
    assert login("dana", "wrong") == 200
    assert login("dana", RIGHT) == 302
    assert login("dana", "wrong") == 200, "the pair started again"
    # Address count is now ADDRESS - 1: the success did not clear the address's failures.
    assert login("nobody-else", "wrong") == 429
    assert login("dana", RIGHT) == 429
    assert login("dana", RIGHT, address=ELSEWHERE) == 302


def test_look_alike_usernames_count_against_the_same_account(dana) -> None:
    # Fullwidth letters: Django's form normalises them (NFKC) to "dana" before checking.
    for _ in range(PAIR):
        attempt("/admin/login/", "\uff44\uff41\uff4e\uff41", "wrong")
    assert attempt("/admin/login/", "dana", RIGHT) == 429


def test_a_username_spelled_like_an_address_does_not_count_against_that_address(dana) -> None:
    for i in range(ADDRESS):
        login("10.9.9.9", "wrong", address=f"10.0.0.{i}")
    assert login("dana", RIGHT, address="10.9.9.9") == 302


def test_ipv6_addresses_count_by_their_64(dana) -> None:
    for i in range(PAIR):
        login("dana", "wrong", address=f"2001:db8:1:2::{i + 1:x}")
    assert login("dana", RIGHT, address="2001:db8:1:2:ffff::9") == 429, "the same /64"
    assert login("dana", RIGHT, address="2001:db8:1:3::1") == 302, "the next /64"


@pytest.mark.parametrize(
    ("address", "group"),
    [
        ("192.0.2.7", "192.0.2.7"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("2001:db8:1:2::/64", "2001:db8:1:2::/64"),
        ("::ffff:192.0.2.7", "192.0.2.7"),
        ("fe80::1%eth0", "fe80::/64"),
        ("not-an-address", "not-an-address"),
    ],
)
def test_address_groups(address: str, group: str) -> None:
    assert address_group(address) == group


def test_a_wrong_old_password_on_password_change_counts(dana) -> None:
    client = Client()
    client.force_login(dana)
    change = {"new_password1": "another-password-9", "new_password2": "another-password-9"}
    for _ in range(PAIR - 1):
        assert client.post("/accounts/password_change/", {"old_password": "wrong", **change}).status_code == 200
    assert client.post("/accounts/password_change/", {"old_password": "wrong", **change}).status_code == 429
    locked = client.post("/accounts/password_change/", {"old_password": RIGHT, **change})
    assert locked.status_code == 429
    dana.refresh_from_db()
    assert dana.check_password(RIGHT), "the password did not change"


def test_password_reset_requests_are_throttled_per_address(dana) -> None:
    def reset(address: str) -> int:
        return Client().post("/accounts/password_reset/", {"email": "x@example.com"}, REMOTE_ADDR=address).status_code

    for _ in range(ADDRESS - 1):
        assert reset("10.5.5.5") == 302
    assert reset("10.5.5.5") == 429
    assert reset("10.5.5.6") == 302


def test_axes_reset_commands_work_on_the_cache(dana, django_user_model) -> None:
    django_user_model.objects.create_user(username="erin", password=RIGHT)
    for _ in range(PAIR):
        login("dana", "wrong")
        login("erin", "wrong", address=ELSEWHERE)
    call_command("axes_reset_username", "dana")
    assert login("dana", RIGHT) == 302, "dana's pair is gone"
    assert login("erin", RIGHT, address=ELSEWHERE) == 429, "erin's is not"
    call_command("axes_reset_ip_username", ELSEWHERE, "erin")
    assert login("erin", RIGHT, address=ELSEWHERE) == 302

    for i in range(USERNAME):
        login("dana", "wrong", address=f"10.0.0.{i}")
    for i in range(ADDRESS):
        login(f"nobody{i}", "wrong", address="10.8.8.8")
    assert login("dana", RIGHT, address=ELSEWHERE) == 429
    assert login("erin", RIGHT, address="10.8.8.8") == 429
    call_command("axes_reset_ip", "10.8.8.8")
    assert login("erin", RIGHT, address="10.8.8.8") == 302
    call_command("axes_reset")  # everything; axes' own cache handler raises NotImplementedError
    assert login("dana", RIGHT, address=ELSEWHERE) == 302
    assert not list(cache._cache.get_client().scan_iter(match=cache.make_key("axes:*"))), "no counter is left"


def test_limits_in_the_wrong_order_fail_loudly() -> None:
    result = manage("check", DEBUG="1", TICKER_LOGIN_FAILURE_LIMIT="60")
    assert result.returncode != 0
    assert "TICKER_LOGIN_FAILURE_LIMIT must be at most TICKER_LOGIN_ADDRESS_LIMIT" in result.stderr
