"""The sync stream's outbox, written from its thread and from the event loop, one writer at a time."""

from __future__ import annotations

import asyncio
import threading

import pytest

from dashboard.market.protocol import CloseCode, Limits
from dashboard.streams.guard import ReadBudget
from dashboard.streams.outbox import SharedWriter
from dashboard.streams.session import StreamSession


def _session() -> StreamSession:
    return StreamSession(Limits(), budget=ReadBudget(1, 1), max_missed=1, clock=lambda: 0.0, wall=lambda: 0)


async def test_frames_from_both_sides_leave_in_order_the_close_last_and_once() -> None:
    session, lock = _session(), threading.Lock()
    writer = SharedWriter(session, lock)
    sent: list[dict] = []
    release = threading.Event()

    def thread_send(message: dict) -> None:
        sent.append(message)
        if len(sent) == 1:
            release.wait(5)  # the thread is mid-send while the loop appends

    async def loop_send(message: dict) -> None:
        sent.append(message)

    with lock:
        session.outbox.extend(["t1", "t2"])
    thread = threading.Thread(target=writer.write, args=(thread_send,))
    thread.start()
    while not sent:
        await asyncio.sleep(0.001)
    shared = {"type": "websocket.send", "text": "l1"}
    with lock:
        session.outbox.append(shared["text"])
        session.close_code = CloseCode.RATE_LIMITED
    await writer.awrite(loop_send, shared)  # the thread is writing: the loop only appended
    release.set()
    thread.join(5)
    assert [m.get("text", m.get("code")) for m in sent] == ["t1", "t2", "l1", 4429]
    await writer.awrite(loop_send)
    assert len(sent) == 4, "closed once"
    assert not writer.writing


async def test_the_loop_sends_a_message_built_once_as_it_is() -> None:
    session = _session()
    writer = SharedWriter(session, threading.Lock())
    shared = {"type": "websocket.send", "text": "frame"}
    session.outbox.extend([shared["text"], "other"])
    sent: list[dict] = []

    async def loop_send(message: dict) -> None:
        sent.append(message)

    await writer.awrite(loop_send, shared)
    assert sent[0] is shared
    assert sent[1] == {"type": "websocket.send", "text": "other"}


async def test_a_send_that_fails_hands_writing_back() -> None:
    session, lock = _session(), threading.Lock()
    writer = SharedWriter(session, lock)
    session.outbox.extend(["a", "b"])

    async def broken(message: dict) -> None:
        raise ConnectionError("gone")

    with pytest.raises(ConnectionError):
        await writer.awrite(broken)
    sent: list[dict] = []
    writer.write(sent.append)
    assert [m["text"] for m in sent] == ["b"]
