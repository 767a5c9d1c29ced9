"""Watchlists API: per-user, persisted, validated, CSRF-protected."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from django.test import Client

from dashboard.models import Symbol, Watchlist


@pytest.fixture
def market(db) -> None:
    for code in ("AAA", "BBB", "CCC"):
        Symbol.objects.create(symbol=code, name=code, initial_price=Decimal("10"))
    Symbol.objects.create(symbol="OFF", name="Off", initial_price=Decimal("1"), enabled=False)


@pytest.fixture
def alice(market, django_user_model) -> Client:
    client = Client()
    client.force_login(django_user_model.objects.create_user(username="alice", password="pw-for-test-1"))
    return client


def send(client: Client, method: str, url: str, body: object) -> tuple[int, dict]:
    response = getattr(client, method)(url, json.dumps(body), content_type="application/json")
    is_json = response.get("Content-Type", "").startswith("application/json")
    return response.status_code, (response.json() if is_json else {})


def test_first_visit_gets_a_default_list_of_the_market(alice) -> None:
    lists = alice.get("/api/watchlists/").json()["watchlists"]
    assert [(w["name"], w["symbols"]) for w in lists] == [("Market", ["AAA", "BBB", "CCC"])]


def test_create_rename_reorder_remove_persist(alice) -> None:
    status, created = send(alice, "post", "/api/watchlists/", {"name": "Tech", "symbols": ["BBB", "AAA"]})
    assert status == 201
    assert created["symbols"] == ["BBB", "AAA"]
    url = f"/api/watchlists/{created['id']}/"
    status, renamed = send(alice, "patch", url, {"name": "Tech stocks", "symbols": ["AAA", "CCC", "BBB"]})
    assert status == 200
    assert (renamed["name"], renamed["symbols"]) == ("Tech stocks", ["AAA", "CCC", "BBB"])
    send(alice, "patch", url, {"symbols": ["CCC"]})
    assert alice.get(url).json()["symbols"] == ["CCC"]
    assert alice.delete(url).status_code == 204
    assert not Watchlist.objects.filter(pk=created["id"]).exists()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"name": ""}, "needs a name"),
        ({"name": "x" * 41}, "at most 40"),
        ({"name": "L", "symbols": ["NOPE"]}, "unknown or disabled symbols: NOPE"),
        ({"name": "L", "symbols": ["OFF"]}, "unknown or disabled"),
        ({"name": "L", "symbols": ["AAA", "AAA"]}, "only once"),
        ({"name": "L", "symbols": "AAA"}, "list of symbol codes"),
    ],
)
def test_invalid_watchlists_are_refused_with_a_message(alice, body, message) -> None:
    status, error = send(alice, "post", "/api/watchlists/", body)
    assert status == 400
    assert message in error["message"]


def test_names_are_unique_per_user(alice) -> None:
    send(alice, "post", "/api/watchlists/", {"name": "Mine"})
    status, error = send(alice, "post", "/api/watchlists/", {"name": "Mine"})
    assert status == 400
    assert "already have a watchlist named 'Mine'" in error["message"]


def test_a_user_sees_and_edits_only_their_own(alice, django_user_model) -> None:
    _, created = send(alice, "post", "/api/watchlists/", {"name": "Private", "symbols": ["AAA"]})
    bob = Client()
    bob.force_login(django_user_model.objects.create_user(username="bob", password="pw-for-test-2"))
    assert "Private" not in [w["name"] for w in bob.get("/api/watchlists/").json()["watchlists"]]
    assert bob.get(f"/api/watchlists/{created['id']}/").status_code == 404
    status, _ = send(bob, "patch", f"/api/watchlists/{created['id']}/", {"name": "Mine now"})
    assert status == 404


def test_writes_need_the_csrf_token(market, django_user_model) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(django_user_model.objects.create_user(username="carol", password="pw-for-test-3"))
    status, _ = send(client, "post", "/api/watchlists/", {"name": "No token"})
    assert status == 403
    # The page sets the CSRF cookie; the page's script sends it back in X-CSRFToken.
    token = client.get("/").cookies.get("csrftoken")
    assert token is not None
    response = client.post(
        "/api/watchlists/",
        json.dumps({"name": "With token"}),
        content_type="application/json",
        HTTP_X_CSRFTOKEN=token.value,
    )
    assert response.status_code == 201


def test_anonymous_gets_401(market) -> None:
    assert Client().get("/api/watchlists/").status_code == 401


@pytest.mark.parametrize("position", [10**20, -1, 10_001])
def test_a_position_out_of_range_is_a_400_not_a_500(alice, position) -> None:
    _, created = send(alice, "post", "/api/watchlists/", {"name": "Far"})
    status, error = send(alice, "patch", f"/api/watchlists/{created['id']}/", {"position": position})
    assert status == 400
    assert "position" in error["message"]
    assert Watchlist.objects.get(pk=created["id"]).position != position
