"""The WebSocket application's input queue (``ticker.inbox``) and where the server uses it."""

from __future__ import annotations

import asyncio
from typing import Any

from ticker.inbox import Inbox


async def test_events_come_out_in_order_and_a_waiting_reader_is_woken() -> None:
    inbox = Inbox()
    inbox.put_nowait({"type": "websocket.connect"})
    assert await inbox.get() == {"type": "websocket.connect"}
    reader = asyncio.ensure_future(inbox.get())
    await asyncio.sleep(0)  # the reader waits on an empty inbox
    assert not reader.done()
    inbox.put_nowait({"type": "websocket.receive", "text": "1"})
    inbox.put_nowait({"type": "websocket.receive", "text": "2"})
    assert (await asyncio.wait_for(reader, 1))["text"] == "1"
    assert (await inbox.get())["text"] == "2"
    assert inbox.empty()


async def test_a_cancelled_reader_leaves_the_events_for_the_next() -> None:
    inbox = Inbox()
    reader = asyncio.ensure_future(inbox.get())
    await asyncio.sleep(0)
    reader.cancel()
    await asyncio.gather(reader, return_exceptions=True)
    inbox.put_nowait("disconnect")
    assert inbox.qsize() == 1
    assert await asyncio.wait_for(inbox.get(), 1) == "disconnect"


def test_the_server_gives_a_websocket_an_inbox_and_http_an_asyncio_queue() -> None:
    from ticker.server import BoundedServer

    server = BoundedServer.__new__(BoundedServer)
    server.root_path = ""
    made: list[dict[str, Any]] = []

    async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
        made.append(scope)

    server.application = application
    loop = asyncio.new_event_loop()
    try:
        asyncio.set_event_loop(loop)
        queues = {}
        for kind in ("websocket", "http"):
            protocol = object()
            server.connections = {protocol: {}}
            queues[kind] = server.create_application(protocol, {"type": kind, "headers": [], "client": None})
            assert "application_instance" in server.connections[protocol]
            loop.run_until_complete(server.connections[protocol]["application_instance"])
        assert isinstance(queues["websocket"], Inbox)
        assert isinstance(queues["http"], asyncio.Queue)
        assert [scope["type"] for scope in made] == ["websocket", "http"]
        # A protocol gone before its application was made gets none.
        server.connections = {}
        assert server.create_application(object(), {"type": "websocket", "headers": []}) is None
    finally:
        asyncio.set_event_loop(None)
        loop.close()
