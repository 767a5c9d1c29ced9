"""A connection's events (access revoked, an alert fired, a catalog change) through one
channel-layer channel per process instead of one per connection.

Channels gives every consumer a channel of its own, joined to each of its groups: per
connection an ``asyncio.Queue`` in the layer, a task waiting on it for the connection's
whole life and a membership per group, kilobytes per idle dashboard for messages that
come a few times a day. Here the process's one channel joins a group while any of its
dashboards is in it, and a message to the group is handed to each of them
(``consumer.dispatch``, as channels would). Every message the publishers send to these
groups names its group (``dashboard.market.broadcast``): one channel receives them all.

Ticks do not come this way: they have their own per-process feeds (``dashboard.streams.feed``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from typing import Any, Protocol

from dashboard.market.loop_services import BackgroundTask, services
from dashboard.streams.feed import layer_messages

logger = logging.getLogger(__name__)


class EventTarget(Protocol):
    async def dispatch(self, message: dict[str, Any]) -> None: ...


class ProcessEvents:
    """The groups the process's dashboards are in, joined once each on one channel."""

    def __init__(self, layer: Any) -> None:
        self.layer = layer
        self.members: dict[str, dict[EventTarget, None]] = {}
        # A group's subscription, in flight or done, while it has members.
        self._joined: dict[str, asyncio.Task[None]] = {}
        self._channel: asyncio.Task[str] | None = None
        self.receiving = BackgroundTask(self._run, isolated=True)
        self._handling: set[asyncio.Task[None]] = set()

    async def join(self, target: EventTarget, groups: Iterable[str]) -> None:
        """Hand ``target`` its groups' messages from now on (returns once each is subscribed).

        Raises what the layer raised when a group cannot be subscribed (the connection is
        refused, as channels would refuse it); the next join tries again.
        """
        groups = list(groups)
        for group in groups:
            self.members.setdefault(group, {})[target] = None
        try:
            channel = await asyncio.shield(self._ensure_channel())
            self.receiving.ensure()
            for group in groups:
                joining = self._joined.get(group)
                if joining is None or _failed(joining):
                    joining = self._joined[group] = asyncio.ensure_future(self.layer.group_add(group, channel))
                await asyncio.shield(joining)
        except BaseException:
            self.leave(target, groups)
            raise

    def leave(self, target: EventTarget, groups: Iterable[str]) -> None:
        """No more messages for ``target``; a group left with no member is unsubscribed."""
        for group in groups:
            members = self.members.get(group)
            if members is None:
                continue
            members.pop(target, None)
            if members:
                continue
            del self.members[group]
            joining = self._joined.pop(group, None)
            if joining is not None and self._channel is not None and self._channel.done():
                self._background(self._discard(group, joining, self._channel.result()))

    async def _ensure_channel(self) -> str:
        if self._channel is None or _failed(self._channel):
            self._channel = asyncio.ensure_future(self.layer.new_channel())
        return await self._channel

    async def _discard(self, group: str, joining: asyncio.Task[None], channel: str) -> None:
        with contextlib.suppress(Exception):
            await joining
            if group not in self.members:  # nobody joined it again meanwhile
                await self.layer.group_discard(group, channel)

    def _background(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._handling.add(task)
        task.add_done_callback(self._handling.discard)

    async def _run(self) -> None:
        channel = await self._ensure_channel()
        async for message in layer_messages(self.layer, channel, "connection events"):
            self.deliver(message)

    def deliver(self, message: dict[str, Any]) -> None:
        """Hand ``message`` to every member of its group, each in a task of its own (one slow
        or failing connection must not hold up the others)."""
        group = message.get("group")
        members = self.members.get(group) if isinstance(group, str) else None
        if members is None:
            if group is None:
                logger.warning("connection event without a group dropped: %r", message.get("type"))
            return
        for target in list(members):
            self._background(self._dispatch(target, message))

    async def _dispatch(self, target: EventTarget, message: dict[str, Any]) -> None:
        try:
            await target.dispatch(message)
        except Exception:
            logger.exception("connection event %r not handled", message.get("type"))


def _failed(task: asyncio.Future[Any]) -> bool:
    return task.done() and (task.cancelled() or task.exception() is not None)


def process_events(layer: Any) -> ProcessEvents:
    """The connection events of the running event loop (Daphne runs one loop per process)."""
    return services.get(ProcessEvents, layer)
