"""JSON API: the catalog with quotes, and candle history from database, cache and forming candle."""

from __future__ import annotations

import json
import re
from decimal import Decimal

import orjson
import pytest
from django.db import connection
from django.test import Client

from dashboard.market import store as market_store
from dashboard.market.candles import Candle as LiveCandle
from dashboard.models import Candle, Symbol
from dashboard.services import flush_pending_candles


@pytest.fixture
def aaa(db, redis_client) -> Symbol:
    Symbol.objects.create(symbol="OFF", name="Off", initial_price=Decimal("1"), enabled=False)
    return Symbol.objects.create(symbol="AAA", name="Triple A", initial_price=Decimal("100"))


@pytest.fixture
def trader(client, django_user_model):
    client.force_login(django_user_model.objects.create_user(username="t", password="pw-for-test-1"))
    return client


def queue_closed(redis_client, symbol: str, interval: str, starts: list[int]) -> None:
    for start in starts:
        candle = LiveCandle(interval, start, 10, 12, 9, 11, 5, closed=True)
        encoded = market_store.encode_candle(symbol, candle)
        redis_client.rpush(market_store.PENDING_CANDLES_KEY, encoded)
        redis_client.lpush(market_store.recent_candles_key(symbol, interval), encoded)


@pytest.mark.parametrize("url", ["/api/symbols/", "/api/symbols/AAA/candles/"])
def test_api_needs_a_session(client, aaa, url) -> None:
    response = client.get(url)
    assert response.status_code == 401
    assert response.json()["error"] == "not_authenticated"


def test_symbols_lists_the_enabled_catalog_with_quotes(trader, aaa, redis_client) -> None:
    quote = {
        "price": 101.0,
        "bid": 100.9,
        "ask": 101.1,
        "volume": 12.0,
        "ts": 1_700_000_000_000,
        "open": 100.0,
        "high": 101.5,
        "low": 99.5,
        "change": 1.0,
        "change_pct": 1.0,
    }
    redis_client.hset(market_store.state_key("AAA"), mapping={"epoch": "e", "seq": 7, "quote": orjson.dumps(quote)})
    symbols = trader.get("/api/symbols/").json()["symbols"]
    assert [s["symbol"] for s in symbols] == ["AAA"]
    assert symbols[0]["quote"] == quote
    assert symbols[0]["seq"] == 7


def test_flush_moves_pending_candles_to_the_database_in_batches(aaa, redis_client, django_assert_max_num_queries):
    queue_closed(redis_client, "AAA", "1m", [i * 60_000 for i in range(25)])
    with django_assert_max_num_queries(5):
        assert flush_pending_candles(redis_client, batch=10) == 25
    assert Candle.objects.filter(symbol=aaa, interval="1m").count() == 25
    assert redis_client.llen(market_store.PENDING_CANDLES_KEY) == 0
    # Flushing again (a crash between insert and trim) writes no duplicates.
    queue_closed(redis_client, "AAA", "1m", [0])
    flush_pending_candles(redis_client)
    assert Candle.objects.filter(symbol=aaa, interval="1m").count() == 25


def test_history_merges_database_cache_and_forming(trader, aaa, redis_client) -> None:
    queue_closed(redis_client, "AAA", "1m", [0, 60_000])
    flush_pending_candles(redis_client)
    queue_closed(redis_client, "AAA", "1m", [120_000])  # closed, not flushed yet
    forming = LiveCandle("1m", 180_000, 11, 11, 11, 11, 1)
    redis_client.hset(market_store.forming_key("AAA"), "1m", market_store.encode_candle("AAA", forming))
    body = trader.get("/api/symbols/AAA/candles/", {"interval": "1m", "limit": 3}).json()
    assert body["symbol"] == "AAA"
    assert [(c["ts"], c["closed"]) for c in body["candles"]] == [(60_000, True), (120_000, True), (180_000, False)]


@pytest.mark.parametrize(
    ("query", "status"),
    [({"interval": "7m"}, 400), ({"limit": "x"}, 400), ({"limit": "0"}, 400), ({"limit": "5000"}, 400)],
)
def test_history_refuses_bad_parameters(trader, aaa, query, status) -> None:
    assert trader.get("/api/symbols/AAA/candles/", query).status_code == status


@pytest.mark.parametrize("symbol", ["OFF", "NOPE"])
def test_history_of_unknown_or_disabled_symbol_is_404(trader, aaa, symbol) -> None:
    assert trader.get(f"/api/symbols/{symbol}/candles/").status_code == 404


def test_session_calls_are_throttled_per_user_and_a_candle_loop_spares_the_others(
    trader, aaa, django_user_model, settings
) -> None:
    """The dearest valid call (2,000 candles) in a loop from one session gets 429s; another
    trader calling beside it does not."""
    settings.API_SESSION_RATE = "10/min"
    Candle.objects.bulk_create(
        Candle(symbol=aaa, interval="1m", start_ms=i * 60_000, open=1, high=1, low=1, close=1, volume=1)
        for i in range(2000)
    )
    neighbour = Client()
    neighbour.force_login(django_user_model.objects.create_user(username="n", password="pw-for-test-2"))
    looped, beside = [], []
    for i in range(15):
        response = trader.get("/api/symbols/AAA/candles/", {"interval": "1m", "limit": 2000})
        looped.append(response.status_code)
        if response.status_code == 200:
            assert len(response.json()["candles"]) == 2000
        if i % 3 == 0:
            beside.append(neighbour.get("/api/symbols/").status_code)
    assert looped == [200] * 10 + [429] * 5
    assert beside == [200] * 5
    refused = trader.get("/api/symbols/")
    assert refused.status_code == 429
    assert refused.json()["error"] == "rate_limited"
    assert refused.json()["message"].startswith("too many requests from this session; retry in")
    assert 1 <= int(refused["Retry-After"]) <= 60


# --- The schema, the docs and one error shape -----------------------------------------


def test_openapi_schema_lists_every_endpoint(client, db) -> None:
    schema = client.get("/api/openapi.json").json()
    assert schema["openapi"].startswith("3.")
    paths = schema["paths"]
    for path in ("/api/symbols/", "/api/symbols/{symbol}/candles/", "/api/watchlists/", "/api/tokens/"):
        assert path in paths
    assert {"/api/watchlists/{pk}/", "/api/tokens/{token_id}/"} <= set(paths)
    schemes = schema["components"]["securitySchemes"]
    assert {s["type"] for s in schemes.values()} == {"http", "apiKey"}
    # Every error is documented in the common shape.
    candles = paths["/api/symbols/{symbol}/candles/"]["get"]["responses"]
    assert {"200", "400", "401", "403", "404", "429"} <= set(candles)
    assert candles["404"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorOut")


def test_docs_are_served_from_our_own_static_files(client, db) -> None:
    html = client.get("/api/docs").content.decode()
    assert "/static/ninja/swagger-ui-bundle.js" in html
    # No CDN, no outside validator: every URL the page loads is ours.
    assert "cdn" not in html.lower()
    assert re.findall(r'(?:src|href)="(https?:)?//', html) == []
    assert '"validatorUrl": null' in html
    assert client.get("/static/ninja/swagger-ui-bundle.js").status_code == 200


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["error"] == code
    assert isinstance(body["message"], str)
    assert body["message"]
    return body


def test_errors_share_one_shape(trader, aaa) -> None:
    assert_error(trader.get("/api/symbols/NOPE/candles/"), 404, "not_found")
    assert_error(trader.get("/api/nothing-here/"), 404, "not_found")
    # Even a write without a CSRF token: a JSON 404, not Django's HTML CSRF page.
    assert_error(Client(enforce_csrf_checks=True).delete("/api/tokens/not-a-number/"), 404, "not_found")
    response = trader.put("/api/symbols/")
    assert_error(response, 405, "method_not_allowed")
    assert "GET" in response["Allow"]
    body = assert_error(trader.get("/api/symbols/AAA/candles/", {"limit": "x"}), 400, "bad_request")
    assert body["field"] == "limit"
    body = assert_error(
        trader.post("/api/watchlists/", b"{not json", content_type="application/json"), 400, "bad_request"
    )
    assert_error(Client().get("/api/symbols/"), 401, "not_authenticated")


def test_an_unexpected_failure_is_a_logged_500_in_the_same_shape(trader, aaa, redis_client, caplog) -> None:
    # A quote that breaks the response schema: the server's fault, never shown as data.
    redis_client.hset(market_store.state_key("AAA"), mapping={"epoch": "e", "seq": 1, "quote": orjson.dumps({})})
    with caplog.at_level("ERROR", logger="dashboard.api"):
        assert_error(trader.get("/api/symbols/"), 500, "server_error")
    assert "API GET /api/symbols/ failed" in caplog.text


def test_a_number_past_the_database_range_is_a_400_not_a_500(trader, aaa) -> None:
    # Unbounded integers in a body reach the database; what it cannot store is the caller's error.
    response = trader.post("/api/alerts/seen/", json.dumps({"ids": [2**63]}), content_type="application/json")
    if connection.vendor == "sqlite":  # cannot even bind it: the caller's error
        assert_error(response, 400, "bad_request")
    else:  # PostgreSQL compares it as a numeric: simply no such alert
        assert response.status_code == 200
