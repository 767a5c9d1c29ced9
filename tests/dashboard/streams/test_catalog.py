"""Streams read the catalog once per catalog version, not once per connection."""

from __future__ import annotations

from decimal import Decimal

from asgiref.sync import sync_to_async

from dashboard.models import Symbol
from dashboard.streams import catalog as catalogs
from tests.dashboard.conftest import next_frame


async def test_a_crowd_of_connections_reads_the_catalog_once_and_a_change_reads_it_again(
    connect, symbols, monkeypatch
) -> None:
    reads = []
    real = catalogs.catalog_entries
    monkeypatch.setattr(catalogs, "catalog_entries", lambda: reads.append(1) or real())
    for path in ("/ws/stream/", "/ws/stream/", "/ws/symbols/AAA/"):
        communicator, _, _ = await connect(path)
        await next_frame(communicator, "hello")
    assert len(reads) == 1
    await sync_to_async(Symbol.objects.create)(symbol="NEW", name="New", initial_price=Decimal("1"))
    communicator, _, _ = await connect("/ws/stream/")
    hello = await next_frame(communicator, "hello")
    assert "NEW" in [s["symbol"] for s in hello["symbols"]], "the change bumped the version: read again"
    assert len(reads) == 2


async def test_streams_of_one_version_share_its_catalog_entries(symbols) -> None:
    catalogs.forget()
    first, second = await catalogs.acurrent(), await catalogs.acurrent()
    assert first is second, "one list per version, not a copy per connection"
