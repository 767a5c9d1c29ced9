"""Connection events through the process's one channel, on the real pub/sub channel layer."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from channels.layers import get_channel_layer

from dashboard.streams.events import ProcessEvents
from tests.waiting import until


class Target:
    def __init__(self, fail: bool = False) -> None:
        self.got: list[dict[str, Any]] = []
        self.fail = fail

    async def dispatch(self, message: dict[str, Any]) -> None:
        self.got.append(message)
        if self.fail:
            raise RuntimeError("a broken connection")


@pytest.fixture
async def events(redis_client) -> ProcessEvents:
    return ProcessEvents(get_channel_layer())


def local_channels(events: ProcessEvents) -> int:
    """Channels the layer holds for this event loop (``RedisPubSubLoopLayer.channels``)."""
    return len(events.layer._get_layer().channels)


def layer_groups(events: ProcessEvents) -> set[str]:
    """The groups the layer subscribes for this event loop, without its key prefix."""
    return {name.split("__group__", 1)[1] for name in events.layer._get_layer().groups}


async def test_a_groups_message_reaches_its_members_only_through_one_channel(events: ProcessEvents) -> None:
    alice = [Target() for _ in range(3)]
    bob = Target()
    for target in alice:
        await events.join(target, ["user.1", "catalog"])
    await events.join(bob, ["user.2", "catalog"])
    assert local_channels(events) == 1, "one channel for every connection of the process"
    layer = events.layer
    await layer.group_send("user.1", {"type": "access.revoked", "group": "user.1", "reason": "logout"})
    await layer.group_send("catalog", {"type": "catalog.changed", "group": "catalog", "frame": "{}"})
    await until(lambda: all(len(t.got) == 2 for t in alice) and len(bob.got) == 1, 5, "both messages")
    assert [m["type"] for m in alice[0].got] == ["access.revoked", "catalog.changed"]
    assert [m["type"] for m in bob.got] == ["catalog.changed"]


async def test_a_failing_connection_does_not_keep_the_message_from_the_others(events: ProcessEvents, caplog) -> None:
    broken, fine = Target(fail=True), Target()
    await events.join(broken, ["catalog"])
    await events.join(fine, ["catalog"])
    with caplog.at_level(logging.ERROR, logger="dashboard.streams.events"):
        await events.layer.group_send("catalog", {"type": "catalog.changed", "group": "catalog"})
        await until(lambda: fine.got and broken.got, 5, "the message at both")
        await until(lambda: "not handled" in caplog.text, 5, "the failure logged")
    await events.layer.group_send("catalog", {"type": "catalog.changed", "group": "catalog"})
    await until(lambda: len(fine.got) == 2, 5, "the next message too")


async def test_a_group_whose_last_member_left_is_unsubscribed(events: ProcessEvents) -> None:
    staying, leaving = Target(), Target()
    await events.join(staying, ["catalog"])
    await events.join(leaving, ["user.7", "catalog"])
    events.leave(leaving, ["user.7", "catalog"])
    await until(lambda: "user.7" not in layer_groups(events), 5, "user.7 discarded by the layer")
    assert "catalog" in layer_groups(events)
    await events.layer.group_send("user.7", {"type": "access.revoked", "group": "user.7", "reason": "x"})
    await events.layer.group_send("catalog", {"type": "catalog.changed", "group": "catalog"})
    await until(lambda: staying.got, 5, "the catalog message")
    # Published first on the same connection: had the user.7 message been delivered, its
    # dispatch would have run before the catalog's.
    assert leaving.got == []
    # Joined again: subscribed again.
    await events.join(leaving, ["user.7"])
    await events.layer.group_send("user.7", {"type": "access.revoked", "group": "user.7", "reason": "x"})
    await until(lambda: leaving.got, 5, "the message after joining again")


async def test_a_message_that_names_no_group_is_dropped_with_a_warning(events: ProcessEvents, caplog) -> None:
    target = Target()
    await events.join(target, ["catalog"])
    with caplog.at_level(logging.WARNING, logger="dashboard.streams.events"):
        events.deliver({"type": "catalog.changed"})
    assert "without a group dropped" in caplog.text
    assert target.got == []
