"""manage.py ticker_status against a real Redis: leases, positions, web processes, masking."""

from __future__ import annotations

import json
from decimal import Decimal
from io import StringIO

import orjson
import pytest
from django.core.management import call_command

from dashboard.management.commands.ticker_status import collect, mask_url
from dashboard.market import store
from dashboard.models import Symbol


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("redis://:s3cret@redis.internal:6380/2", "redis://:***@redis.internal:6380/2"),
        ("rediss://ticker:s3cret@[::1]:6380/0", "rediss://ticker:***@[::1]:6380/0"),
        ("redis://127.0.0.1:6399/0", "redis://127.0.0.1:6399/0"),
    ],
)
def test_passwords_are_masked(url, masked) -> None:
    assert mask_url(url) == masked


def test_status_groups_symbols_by_producer_and_lists_web_processes(db, redis_client) -> None:
    for code in ("AAA", "BBB", "CCC"):
        Symbol.objects.create(symbol=code, name=code, initial_price=Decimal("10"))
    redis_client.set(store.lease_key("AAA"), "host-a:11:x")
    redis_client.set(store.lease_key("BBB"), "host-a:11:x")
    redis_client.hset(store.state_key("AAA"), mapping={"epoch": "e1", "seq": 42})
    redis_client.set(store.PRODUCER_HEARTBEAT_KEY, 99_000)
    entry = {"host": "web-1", "pid": 7, "streams": 3, "by_kind": {"stream": 2, "symbol": 1}, "ts": 99_500}
    redis_client.set(store.web_streams_key("web-1:7"), orjson.dumps(entry), px=15_000)

    status = collect(redis_client, ["AAA", "BBB", "CCC"], now_ms=100_000)

    assert status["producers"] == [{"owner": "host-a:11:x", "symbols": ["AAA", "BBB"]}]
    assert status["unheld_symbols"] == ["CCC"]
    assert status["last_window_age_ms"] == 1000
    assert status["symbols"][0] == {"symbol": "AAA", "owner": "host-a:11:x", "epoch": "e1", "seq": 42}
    assert status["open_streams"] == 3
    assert status["web_processes"][0]["reported_ms_ago"] == 500
    assert status["redis"]["database"] == 0

    out = StringIO()
    call_command("ticker_status", "--json", stdout=out)
    assert json.loads(out.getvalue())["producers"][0]["symbols"] == ["AAA", "BBB"]
    out = StringIO()
    call_command("ticker_status", stdout=out)
    text = out.getvalue()
    assert "host-a:11:x  2 symbols: AAA BBB" in text
    assert "not held by any producer: CCC" in text
    assert "web-1:7  3 open (stream 2, symbol 1)" in text
