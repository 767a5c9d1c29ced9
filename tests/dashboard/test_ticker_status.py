"""manage.py ticker_status against a real Redis: leases, positions, web processes, masking."""

from __future__ import annotations

import json
from decimal import Decimal
from io import StringIO

import orjson
import pytest
from django.core.management import CommandError, call_command

from dashboard.management.commands.ticker_status import collect, mask_url
from dashboard.market import store
from dashboard.market.client import use_redis
from dashboard.models import Symbol


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("redis://:s3cret@redis.internal:6380/2", "redis://:***@redis.internal:6380/2"),
        ("rediss://ticker:s3cret@[::1]:6380/0", "rediss://ticker:***@[::1]:6380/0"),
        ("redis://127.0.0.1:6399/0", "redis://127.0.0.1:6399/0"),
        ("redis://127.0.0.1:6399/0?password=s3cret", "redis://127.0.0.1:6399/0?password=***"),
        (
            "rediss://cache.internal:6380/1?ssl_cert_reqs=none&Password=s3cret&username=ticker",
            "rediss://cache.internal:6380/1?ssl_cert_reqs=none&Password=***&username=ticker",
        ),
        ("redis://:p%40ss:w@Redis.Internal:6380/2", "redis://:***@Redis.Internal:6380/2"),
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


def test_no_password_form_is_ever_printed(db, redis_client, settings) -> None:
    # The broker is only shown: its URL may carry the password in its query.
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:6399/1?password=br0ker-s3cret"
    for flags in ([], ["--json"]):
        out = StringIO()
        call_command("ticker_status", *flags, stdout=out)
        assert "br0ker-s3cret" not in out.getvalue()
        assert "password=***" in out.getvalue()
    # A Redis that cannot be reached: the error names the URL, masked.
    settings.MARKET_REDIS_URL = "redis://127.0.0.1:1/0?password=m4rket-s3cret"
    with use_redis(settings.MARKET_REDIS_URL, socket_connect_timeout=0.2), pytest.raises(CommandError) as refused:
        call_command("ticker_status", stdout=StringIO())
    assert "m4rket-s3cret" not in str(refused.value)
    assert "password=***" in str(refused.value)


def test_each_channel_layer_shard_is_shown_and_probed(db, redis_client, redis_server, settings) -> None:
    unreachable = "redis://:sh4rd-s3cret@127.0.0.1:1/3"
    layers = {**settings.CHANNEL_LAYERS["default"]}
    layers["CONFIG"] = {**layers["CONFIG"], "hosts": [{"address": redis_server.url}, {"address": unreachable}]}
    settings.CHANNEL_LAYERS = {"default": layers}

    out = StringIO()
    call_command("ticker_status", "--json", stdout=out)
    shards = json.loads(out.getvalue())["channel_layer"]
    assert shards == [
        {"url": redis_server.url, "database": 0, "reachable": True},
        {"url": "redis://:***@127.0.0.1:1/3", "database": 3, "reachable": False, "error": "ConnectionError"},
    ]
    out = StringIO()
    call_command("ticker_status", stdout=out)
    text = out.getvalue()
    assert "Channel layer (2 shards):" in text
    assert f"  {redis_server.url} (database 0)  reachable\n" in text
    assert "  redis://:***@127.0.0.1:1/3 (database 3)  UNREACHABLE (ConnectionError)\n" in text
    assert "sh4rd-s3cret" not in text + json.dumps(shards)
