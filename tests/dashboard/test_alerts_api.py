"""Price alerts over HTTP (``dashboard/api/alerts.py`` mounted at ``/api/alerts/``, rules in
``dashboard/alert_services.py``): session login, JSON."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.test import Client

from dashboard import alert_services
from dashboard.api import api
from dashboard.market import alert_deletions
from dashboard.market import store as market_store
from dashboard.models import Alert, Symbol

URL = "/api/alerts/"


@pytest.fixture
def aaa(db, redis_client) -> Symbol:
    Symbol.objects.create(symbol="OFF", name="Off", initial_price=Decimal("1"), enabled=False)
    return Symbol.objects.create(symbol="AAA", name="Triple A", initial_price=Decimal("100"))


@pytest.fixture
def trader(client, django_user_model):
    client.user = django_user_model.objects.create_user(username="t", password="pw-for-test-1")
    client.force_login(client.user)
    return client


@pytest.fixture
def other(django_user_model) -> Client:
    client = Client()
    client.user = django_user_model.objects.create_user(username="o", password="pw-for-test-2")
    client.force_login(client.user)
    return client


def post(client: Client, body: object, url: str = URL):
    return client.post(url, data=json.dumps(body), content_type="application/json")


def test_alerts_need_a_session(client, aaa) -> None:
    assert client.get(URL).status_code == 401
    response = post(client, {"symbol": "AAA", "condition": "above", "price": "101"})
    assert response.status_code == 401
    assert response.json()["error"] == "not_authenticated"


def test_create_returns_201_with_the_alert_and_tells_the_producers(
    trader, aaa, redis_client, django_capture_on_commit_callbacks
) -> None:
    version = redis_client.get(market_store.ALERTS_VERSION_KEY)
    with django_capture_on_commit_callbacks(execute=True):
        response = post(trader, {"symbol": "AAA", "condition": "above", "price": "190.50"})
    assert response.status_code == 201
    body = response.json()
    assert body["id"] == Alert.objects.get().pk
    assert body | {"id": 0, "created_at": 0} == {
        "id": 0,
        "symbol": "AAA",
        "condition": "above",
        "price": 190.5,
        "percent": None,
        "minutes": None,
        "created_at": 0,
        "triggered_price": None,
        "triggered_at": None,
        "seen": False,
    }
    assert redis_client.get(market_store.ALERTS_VERSION_KEY) != version
    move = post(trader, {"symbol": "AAA", "condition": "fall", "percent": 2.5, "minutes": 15})
    assert move.status_code == 201
    assert (move.json()["percent"], move.json()["minutes"], move.json()["price"]) == (2.5, 15, None)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"condition": "above", "price": "1"}, "symbol"),
        ({"symbol": "nope!", "condition": "above", "price": "1"}, "symbol"),
        ({"symbol": "ZZZ", "condition": "above", "price": "1"}, "symbol"),
        ({"symbol": "OFF", "condition": "above", "price": "1"}, "symbol"),
        ({"symbol": "AAA", "condition": "sideways", "price": "1"}, "condition"),
        ({"symbol": "AAA", "condition": "above"}, "price"),
        ({"symbol": "AAA", "condition": "above", "price": "abc"}, "price"),
        ({"symbol": "AAA", "condition": "below", "price": "-3"}, "price"),
        ({"symbol": "AAA", "condition": "below", "price": "NaN"}, "price"),
        ({"symbol": "AAA", "condition": "below", "price": "1.123456789"}, "price"),
        ({"symbol": "AAA", "condition": "rise", "minutes": 5}, "percent"),
        ({"symbol": "AAA", "condition": "rise", "percent": 2}, "minutes"),
        ({"symbol": "AAA", "condition": "rise", "percent": 2, "minutes": 61}, "minutes"),
        ({"symbol": "AAA", "condition": "fall", "percent": 100, "minutes": 5}, "percent"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(trader, aaa, body, field) -> None:
    response = post(trader, body)
    assert response.status_code == 400, response.content
    error = response.json()
    assert error["error"] == "bad_request"
    assert error["field"] == field
    assert error["message"]
    assert not Alert.objects.exists()


def test_a_body_that_is_not_json_is_a_400(trader, aaa) -> None:
    response = trader.post(URL, data="{nope", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"] == "bad_request"


def test_active_alerts_per_user_are_capped(trader, other, aaa, settings) -> None:
    settings.TICKER = {**settings.TICKER, "MAX_ALERTS_PER_USER": 2}
    for price in ("101", "102"):
        assert post(trader, {"symbol": "AAA", "condition": "above", "price": price}).status_code == 201
    refused = post(trader, {"symbol": "AAA", "condition": "above", "price": "103"})
    assert refused.status_code == 400
    assert refused.json()["error"] == "too_many_alerts"
    # Another trader has a cap of their own; a fired alert no longer counts.
    assert post(other, {"symbol": "AAA", "condition": "above", "price": "103"}).status_code == 201
    Alert.objects.filter(user=trader.user).update(triggered_at=datetime.now(tz=UTC), triggered_price=101.0)
    assert post(trader, {"symbol": "AAA", "condition": "above", "price": "103"}).status_code == 201


def test_the_cap_is_the_services_and_a_refused_alert_is_rolled_back(trader, aaa, settings) -> None:
    settings.TICKER = {**settings.TICKER, "MAX_ALERTS_PER_USER": 1}
    alert_services.create(trader.user, "AAA", "above", price=Decimal("101"))
    with pytest.raises(alert_services.AlertError) as refused:
        alert_services.create(trader.user, "AAA", "below", price=Decimal("99"))
    assert (refused.value.code, refused.value.field) == ("too_many_alerts", None)
    assert Alert.objects.filter(user=trader.user).count() == 1


def test_creating_alerts_is_rate_limited_per_user_with_429_and_retry_after(trader, other, aaa, settings) -> None:
    settings.ALERT_CREATE_RATE = "3/min"
    body = {"symbol": "AAA", "condition": "above", "price": "101"}
    assert [post(trader, body).status_code for _ in range(3)] == [201, 201, 201]
    refused = post(trader, body)
    assert refused.status_code == 429
    error = refused.json()
    assert error["error"] == "rate_limited"
    assert error["message"].startswith("too many alerts created; retry in")
    assert 1 <= int(refused["Retry-After"]) <= 60
    assert Alert.objects.filter(user=trader.user).count() == 3
    # Per user, and only creations: reads and deletes go on, another trader creates.
    assert trader.get(URL).status_code == 200
    assert trader.delete(f"{URL}{Alert.objects.filter(user=trader.user).first().pk}/").status_code == 204
    assert post(other, body).status_code == 201


def fire(alert_ids: list[int], *, seen: bool) -> None:
    now = datetime.now(tz=UTC)
    Alert.objects.filter(pk__in=alert_ids).update(triggered_at=now, triggered_price=1.0, seen_at=now if seen else None)


def test_alerts_that_fire_at_once_cannot_add_rows_without_end(trader, aaa, settings) -> None:
    """The loop of the issue: each alert fires (and is seen) at once, freeing its active slot."""
    settings.TICKER = {**settings.TICKER, "MAX_ALERTS_PER_USER": 2, "MAX_KEPT_ALERTS_PER_USER": 3}
    created = []
    for i in range(10):
        created.append(post(trader, {"symbol": "AAA", "condition": "above", "price": str(100 + i)}).json()["id"])
        fire(created[-1:], seen=True)
    # The newest three kept: each create past the bound replaced the oldest seen one.
    assert sorted(Alert.objects.filter(user=trader.user).values_list("id", flat=True)) == created[-3:]
    # Fired but not yet seen is still owed to the trader: never deleted to make room.
    fire(created[-3:], seen=False)
    refused = post(trader, {"symbol": "AAA", "condition": "above", "price": "200"})
    assert refused.status_code == 400
    assert refused.json()["error"] == "too_many_alerts"
    assert "seen" in refused.json()["message"]
    assert sorted(Alert.objects.filter(user=trader.user).values_list("id", flat=True)) == created[-3:]


def test_delete_removes_the_alert_and_tells_the_producers(
    trader, aaa, redis_client, django_capture_on_commit_callbacks
) -> None:
    alert_id = post(trader, {"symbol": "AAA", "condition": "below", "price": "90"}).json()["id"]
    version = redis_client.get(market_store.ALERTS_VERSION_KEY)
    with django_capture_on_commit_callbacks(execute=True):
        assert trader.delete(f"{URL}{alert_id}/").status_code == 204
    assert not Alert.objects.exists()
    assert redis_client.get(market_store.ALERTS_VERSION_KEY) != version
    # With its id, so producers drop the rule on this bump (tests/workers/test_alerts.py).
    assert alert_deletions.deleted_since(redis_client, 0) == [alert_id]
    assert trader.delete(f"{URL}{alert_id}/").status_code == 404


def test_another_users_alert_is_a_404(trader, other, aaa) -> None:
    alert_id = post(trader, {"symbol": "AAA", "condition": "below", "price": "90"}).json()["id"]
    response = other.delete(f"{URL}{alert_id}/")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"
    assert other.get(URL).json() == {"alerts": []}
    assert Alert.objects.filter(pk=alert_id).exists()


def test_list_filters_by_status_and_seen_marks_fired_alerts_shown(trader, other, aaa) -> None:
    waiting = post(trader, {"symbol": "AAA", "condition": "above", "price": "200"}).json()["id"]
    fired = post(trader, {"symbol": "AAA", "condition": "below", "price": "99"}).json()["id"]
    when = datetime(2026, 11, 30, 6, 0, tzinfo=UTC)
    Alert.objects.filter(pk=fired).update(triggered_at=when, triggered_price=98.75)

    def ids(status: str) -> list[int]:
        return [a["id"] for a in trader.get(URL, {"status": status}).json()["alerts"]]

    assert ids("all") == [fired, waiting]
    assert ids("active") == [waiting]
    assert ids("triggered") == [fired]
    [unseen] = trader.get(URL, {"status": "unseen"}).json()["alerts"]
    assert (unseen["id"], unseen["triggered_price"], unseen["triggered_at"]) == (fired, 98.75, 1_796_018_400_000)
    assert trader.get(URL, {"status": "nope"}).json()["field"] == "status"
    # Another user cannot mark them; the owner can, once.
    assert post(other, {"ids": [fired]}, f"{URL}seen/").json() == {"seen": 0}
    assert post(trader, {"ids": [fired, waiting]}, f"{URL}seen/").json() == {"seen": 1}
    assert ids("unseen") == []
    assert post(trader, {"ids": [fired]}, f"{URL}seen/").json() == {"seen": 0}


def test_deleting_a_symbol_deletes_its_alerts(trader, aaa) -> None:
    post(trader, {"symbol": "AAA", "condition": "below", "price": "90"})
    aaa.delete()
    assert not Alert.objects.exists()


def test_alerts_are_in_the_openapi_schema() -> None:
    paths = api.get_openapi_schema(path_prefix="/api/")["paths"]
    assert {"/api/alerts/", "/api/alerts/{alert_id}/", "/api/alerts/seen/"} <= set(paths)


def test_admins_see_alerts_read_only_and_filtered(trader, aaa, admin_client) -> None:
    waiting = post(trader, {"symbol": "AAA", "condition": "rise", "percent": "2.5", "minutes": 15}).json()["id"]
    fired = post(trader, {"symbol": "AAA", "condition": "below", "price": "99.5"}).json()["id"]
    Alert.objects.filter(pk=fired).update(triggered_at=datetime.now(tz=UTC), triggered_price=99.4)
    page = admin_client.get("/admin/dashboard/alert/")
    assert page.status_code == 200
    assert b"2.5 % in 15 min" in page.content
    assert b"99.5" in page.content
    active = admin_client.get("/admin/dashboard/alert/", {"triggered_at__isempty": "1"})
    assert list(active.context["cl"].result_list.values_list("id", flat=True)) == [waiting]
    assert admin_client.get(f"/admin/dashboard/alert/{fired}/change/").status_code == 200  # a view, no save
    assert admin_client.get("/admin/dashboard/alert/add/").status_code == 403
