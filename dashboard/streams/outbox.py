"""One writer at a time for a session's outbox that a thread and the event loop both fill.

The sync consumer's session is driven from two sides: client frames and reads on the
consumer's thread, the symbol's ticks on the event loop. Whichever side finds no writer
at work becomes the writer and sends what it finds in the outbox, the session's close
last; the other side only appends. The lock guards the outbox and the writer flag and is
never held across a send, so neither side waits on the other's socket write, and frames
leave in the order the session put them.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from typing import Any

from dashboard.market.protocol import CloseCode
from dashboard.streams.session import StreamSession

Message = dict[str, Any]


class SharedWriter:
    """Writes ``session.outbox`` as ASGI messages from either side; ``lock`` guards the session."""

    def __init__(self, session: StreamSession, lock: threading.Lock) -> None:
        self.session = session
        self.lock = lock
        self.writing = False
        self.close_sent = False

    def write(self, send: Callable[[Message], None]) -> None:
        """Write from a thread, unless the other side is writing (it will send these too)."""
        if not self._begin():
            return
        try:
            while (out := self._next()) is not None:
                send(_message(out, None))
        except BaseException:
            self._stop()
            raise

    async def awrite(self, send: Callable[[Message], Awaitable[None]], shared: Message | None = None) -> None:
        """``write`` for the event loop; ``shared``: a message built once for many streams, sent
        as it is when its text is the next frame."""
        with self.lock:
            first = self.claim()
        if first is not None:
            await self.awrite_from(first, send, shared)

    def claim(self) -> str | None:
        """Become the writer and take the first frame, if there is one and nobody writes (lock held).

        Lets a caller that already holds the lock (a delivery, for every message of every
        single-symbol stream) start writing without taking it again.
        """
        if self.writing or not self.session.outbox:
            return None
        self.writing = True
        return self.session.outbox.pop(0)

    async def awrite_from(
        self, first: str, send: Callable[[Message], Awaitable[None]], shared: Message | None = None
    ) -> None:
        """Write ``first`` (``claim``'s), then the rest, as the writer."""
        out: str | CloseCode | None = first
        try:
            while out is not None:
                await send(shared if shared is not None and out is shared["text"] else _message(out, None))
                out = self._next()
        except BaseException:
            self._stop()
            raise

    def _begin(self) -> bool:
        with self.lock:
            if self.writing:
                return False
            self.writing = True
            return True

    def _next(self) -> str | CloseCode | None:
        """The next frame, the close once the frames are out, or None: writing ends."""
        session = self.session
        with self.lock:
            if session.outbox:
                return session.outbox.pop(0)
            if session.close_code is not None and not self.close_sent:
                self.close_sent = True
                return session.close_code
            self.writing = False
            return None

    def _stop(self) -> None:
        with self.lock:
            self.writing = False


def _message(out: str | CloseCode, shared: Message | None) -> Message:
    if isinstance(out, CloseCode):
        return {"type": "websocket.close", "code": int(out)}
    if shared is not None and out is shared["text"]:
        return shared
    return {"type": "websocket.send", "text": out}
