"""One heartbeat task per process: every open stream gets the same frame each interval,
and the process's open-stream count is published for ``manage.py ticker_status``."""

from __future__ import annotations

import json
import os

from dashboard.market import store
from dashboard.streams import heartbeat
from dashboard.streams.heartbeat import PROCESS_HOST, HeartbeatHub
from tests.waiting import until


class StreamConsumer:
    """A stand-in stream: keeps what it is sent (named as a consumer, for the kind counts)."""

    def __init__(self, fail: bool = False) -> None:
        self.frames: list[str] = []
        self.fail = fail

    async def send_heartbeat(self, frame: str) -> None:
        if self.fail:
            raise ConnectionError("the socket went away")
        self.frames.append(frame)


class SymbolConsumer(StreamConsumer):
    pass


async def test_every_registered_stream_gets_each_beat_and_a_broken_one_stops_nobody() -> None:
    hub = HeartbeatHub(interval_ms=20)
    broken, first, second = StreamConsumer(fail=True), StreamConsumer(), SymbolConsumer()
    for target in (broken, first, second):
        hub.register(target)
    await until(lambda: len(first.frames) >= 3 and len(second.frames) >= 3, 5, "three beats")
    beat = json.loads(first.frames[0])
    assert beat["type"] == "heartbeat"
    assert isinstance(beat["server_time"], int)
    assert first.frames[0] is second.frames[0], "built once per beat, not per stream"


async def test_an_unregistered_stream_gets_nothing_more_and_the_task_ends_with_the_last() -> None:
    hub = HeartbeatHub(interval_ms=20)
    stream = StreamConsumer()
    hub.register(stream)
    await until(lambda: stream.frames, 5, "a first beat")
    hub.unregister(stream)
    await until(lambda: not hub.beats.running(), 5, "the beat task to end with no stream left")
    count = len(stream.frames)
    hub.register(other := StreamConsumer())
    await until(lambda: other.frames, 5, "the task started again by a new stream")
    assert len(stream.frames) == count


async def test_each_beat_publishes_the_processes_open_streams_by_kind(redis_client) -> None:
    hub = HeartbeatHub(interval_ms=20)
    streams = [StreamConsumer(), StreamConsumer(), SymbolConsumer()]
    for target in streams:
        hub.register(target)
    key = store.web_streams_key(f"{PROCESS_HOST}:{os.getpid()}")
    published = await until(lambda: redis_client.get(key), 5, "the open-stream count in Redis")
    entry = json.loads(published)
    assert (entry["streams"], entry["by_kind"]) == (3, {"stream": 2, "symbol": 1})
    assert (entry["host"], entry["pid"]) == (PROCESS_HOST, os.getpid())
    # It outlives a few missed beats, not a dead process.
    assert 0 < redis_client.pttl(key) <= 20 * heartbeat.REPORT_TTL_BEATS
    for target in streams:
        hub.unregister(target)
    await until(lambda: json.loads(redis_client.get(key) or b"{}").get("streams") == 0, 5, "0 once all closed")


async def test_the_processes_hub_follows_the_settings(settings) -> None:
    settings.TICKER = {**settings.TICKER, "HEARTBEAT_MS": 700}
    assert heartbeat.hub() is heartbeat.hub(), "one per event loop"
    assert heartbeat.hub().interval == 0.7
    settings.TICKER = {**settings.TICKER, "HEARTBEAT_MS": 900}
    assert heartbeat.hub().interval == 0.9, "rebuilt once a setting changed"
