"""One stream connection's protocol state, written once and driven by both consumers.

Sans-I/O, as ``websockets/protocol.py`` is to its ``asyncio`` and ``sync`` shells: a
``StreamSession`` is fed events (a client frame, a producer batch, a read's result, a
catalog change, an alert) and answers with actions: frames appended to ``outbox`` in
the order the client must see them, reads to make (``take_reads``), and ``close_code``.
It never awaits, locks or touches a socket or Redis; ``StreamConsumer`` (async) and
``SymbolConsumer`` (sync) differ only in how they wait for reads and write the outbox.

The hold: while any read is outstanding, producer batches are held in arrival order, and
read results are applied in the order the reads were asked for. Once none is left, the
held batches are forwarded through ``Subscriptions``, which drops what a snapshot
already covered. So nothing is lost, nothing is sent twice and nothing is forwarded
before the snapshot it continues, whatever the shell's timing.

A single-symbol stream is a session with ``only`` set: it subscribes on open, and a
request naming another symbol is refused with ``forbidden``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from dashboard.market import protocol
from dashboard.market.depth import MarketWindow
from dashboard.market.protocol import (
    BATCH_EPOCH,
    BATCH_FIRST_SEQ,
    BATCH_LAST_SEQ,
    BATCH_PIECE,
    Channel,
    CloseCode,
    ErrorCode,
    Limits,
    Position,
    ProtocolError,
)
from dashboard.streams.book_channels import BookChannels
from dashboard.streams.guard import REFUSED_CODES, ClientGuard, ReadBudget, Verdict, charge_reads, screen
from dashboard.streams.subscriptions import Subscriptions, subscription_frame

Catalog = dict[str, Mapping[str, Any]]
Batch = Mapping[str, Sequence[Any]]


class SharedReads(Protocol):
    """Subscribe reads shared by a process's streams (``feed.SubscribeReads``)."""

    def frame(
        self, symbol: str, interval: str, since: Any, max_missed: int, state: Any, variant: Any, build: Any
    ) -> Any: ...

    def behind(self, symbol: str, epoch: str | None, seq: int) -> tuple[list[str], int] | None: ...


@dataclass(frozen=True)
class Read:
    """A read of some symbols' subscribe state (``store.read_subscribe``) the shell makes."""

    symbols: tuple[str, ...]
    interval: str
    # The resume positions the client asked for, of these symbols.
    since: Mapping[str, Position] = field(default_factory=dict)
    op_id: int | str | None = None
    # The symbols the answer acks; None: no ack (a resync, or the subscribe on open).
    ack: tuple[str, ...] | None = None
    resync: bool = False
    opening: bool = False

    def since_keys(self) -> dict[str, tuple[str, int]]:
        """``since`` as the store takes it."""
        return {symbol: (pos.epoch, pos.seq) for symbol, pos in self.since.items()}


class _Outstanding:
    """A read asked for, and once it is back the frames that answer it."""

    __slots__ = ("frames", "positions", "read")

    def __init__(self, read: Read) -> None:
        self.read = read
        self.frames: list[str] | None = None
        self.positions: list[tuple[str, str | None, int]] = []


def catalog_index(catalog: Sequence[Mapping[str, Any]]) -> Catalog:
    return {entry["symbol"]: entry for entry in catalog}


def unavailable(op_id: int | str | None) -> ProtocolError:
    return ProtocolError(ErrorCode.UNAVAILABLE, "market data temporarily unavailable; retry shortly", op_id)


def _nothing() -> None:
    return None


class StreamSession:
    """The subscriptions, guard, catalog, hold and resume decisions of one connection.

    ``on_change`` is called before the session changes what it follows (a subscribe's
    read, an unsubscribe, a catalog change, a resync): the async shell takes the stream
    out of its feed group there, since a group's members share positions with the feed.
    ``clock`` (monotonic seconds) paces the client; ``wall`` (ms) stamps pongs.
    """

    def __init__(
        self,
        limits: Limits,
        *,
        budget: ReadBudget,
        max_missed: int,
        clock: Callable[[], float],
        wall: Callable[[], int],
        only: str | None = None,
        shared: SharedReads | None = None,
        on_change: Callable[[], None] = _nothing,
    ) -> None:
        self.limits = limits
        self.guard = ClientGuard(limits)
        self.budget = budget
        self.max_missed = max_missed
        self.clock = clock
        self.wall = wall
        self.only = only
        self.shared = shared
        self.on_change = on_change
        self.subs = Subscriptions()
        # The ``depth`` and ``trades`` channels; ``subs`` keeps ``ticks``.
        self.books = BookChannels(limits.max_depth_symbols)
        self.intervals: dict[str, str] = {}
        self.catalog: Catalog = {}
        # Lists, not deques: a deque costs some 700 bytes empty, and these hold a few items
        # for a moment between long idle stretches, on every connection.
        self.outbox: list[str] = []
        self.close_code: CloseCode | None = None
        self.opened = False
        self._outstanding: list[_Outstanding] = []
        self._to_start: list[Read] = []
        self._held: list[tuple[Batch, str | None, MarketWindow | None]] = []
        self._frames_sent = 0
        self._ticks_sent = 0

    # --- events ---------------------------------------------------------------------

    def open(
        self, catalog: Sequence[Mapping[str, Any]], hello: str, since: Mapping[str, Position] | None = None
    ) -> None:
        """The connection is accepted: ``hello`` goes out (a single-symbol stream also subscribes)."""
        self.catalog = catalog_index(catalog)
        only = self.only
        if only is not None and only not in self.catalog:
            message = f"unknown or disabled symbol: {only[:20]}"
            self.outbox.append(protocol.error_frame(ErrorCode.UNKNOWN_SYMBOL, message))
            self.close_code = CloseCode.POLICY
            return
        self.opened = True
        self.outbox.append(hello)
        if only is not None:
            resume = {only: since[only]} if since and only in since else {}
            self._ask(Read((only,), protocol.DEFAULT_INTERVAL, resume, opening=True))

    def client_frame(self, text: str | None, data: bytes | None) -> CloseCode | None:
        """A frame from the client; returns the close code it earned, if any."""
        if not self.serving:
            return None  # refused or closing: the close is on its way
        screened = screen(self.guard, self.limits, text, data, self.clock())
        self.outbox.extend(screened.replies)
        if screened.close is not None:
            self.close_code = screened.close
            return screened.close
        op = screened.op
        try:
            if isinstance(op, protocol.Ping):
                self.outbox.append(protocol.pong_frame(op.id, self.wall()))
            elif isinstance(op, protocol.Subscribe):
                self._subscribe(op)
            elif isinstance(op, protocol.Unsubscribe):
                self._unsubscribe(op)
        except ProtocolError as err:
            self.outbox.append(err.frame())
            if err.code in REFUSED_CODES and self.guard.bad_frame(self.clock()) is Verdict.CLOSE:
                self.close_code = CloseCode.PROTOCOL_ABUSE
                return self.close_code
        return None

    def batch(self, entries: Batch, frame: str | None = None, window: MarketWindow | None = None) -> int:
        """A producer window (``symbol -> BatchEntry`` wire form); ``frame``: all of it, built once;
        ``window``: its book updates and trades.

        Returns the ticks forwarded now, in one frame (0: none, or held); ticks forwarded
        later, from the hold, are counted by ``take_sent``.
        """
        if not self.opened or self.close_code is not None:  # ``serving``, inline: every message
            return 0
        if self._outstanding:
            self._held.append((entries, frame, window))
            return 0
        return self._forward(entries, frame, window)

    def batch_one(
        self, symbol: str, raw: Sequence[Any] | None, frame: str | None, window: MarketWindow | None = None
    ) -> int:
        """``batch`` of one symbol's entry, ``frame`` its ticks frame: a single-symbol stream's
        every message, so written for speed (no batch mapping to build or walk)."""
        if not self.opened or self.close_code is not None:
            return 0
        if self._outstanding or raw is None or (window and self.books):
            entries = {symbol: raw} if raw is not None else {}
            return self.batch(entries, frame, window)
        subs = self.subs
        before = subs.ticks_accepted
        piece = subs.accept(symbol, raw[BATCH_EPOCH], raw[BATCH_FIRST_SEQ], raw[BATCH_LAST_SEQ], raw[BATCH_PIECE])
        if piece is not None:
            self.outbox.append(frame if piece is raw[BATCH_PIECE] else protocol.ticks_frame([piece]))
        if subs.resync_due():
            self._resync(subs.take_resync())
        return subs.ticks_accepted - before

    def book_window(self, window: MarketWindow) -> None:
        """A window's depth and trades frames, for a stream whose ticks went out in the feed's
        shared frame (in step: nothing is held)."""
        if self.serving and self.books:
            self.outbox.extend(self.books.frames(window))

    def read_done(self, read: Read, states: Mapping[str, Any]) -> None:
        """The states ``read`` asked for; its answer goes out once the reads before it have."""
        outstanding = self._find(read)
        outstanding.frames = self._answer(read, states, outstanding.positions)
        self._settle()

    def read_failed(self, read: Read) -> None:
        """``read`` could not be made (the store is unreachable): an ``unavailable`` error."""
        outstanding = self._find(read)
        outstanding.frames = [unavailable(read.op_id).frame()]
        if read.opening:
            self.close_code = CloseCode.TRY_AGAIN_LATER
        self._settle()

    def catalog_changed(self, catalog: Sequence[Mapping[str, Any]], frame: str) -> None:
        """The catalog changed (``frame``: its ``symbols`` frame); delisted symbols are dropped."""
        if not self.serving:
            return
        self.on_change()
        self.catalog = catalog_index(catalog)
        for symbol in self.subs.symbols():
            if symbol not in self.catalog:
                self.subs.remove(symbol)
                self.intervals.pop(symbol, None)
        self.books.keep_only(self.catalog)
        self.outbox.append(frame)

    def disconnected(self) -> None:
        """The client has gone: nothing more is served (a read still out is answered into the void)."""
        self.opened = False
        self._held.clear()

    def alert(self, frame: str) -> None:
        """One of the user's alerts fired (the producer built ``frame``)."""
        if self.serving:
            self.outbox.append(frame)

    # --- what the shell asks --------------------------------------------------------

    @property
    def serving(self) -> bool:
        """Open and not closing: client frames, ticks and heartbeats are served."""
        return self.opened and self.close_code is None

    def take_reads(self) -> list[Read]:
        """Reads to make now, each handed out once; answer each with ``read_done`` or ``read_failed``."""
        reads, self._to_start = self._to_start, []
        return reads

    def has_reads(self) -> bool:
        return bool(self._to_start)

    def take_sent(self) -> tuple[int, int]:
        """Tick frames and ticks forwarded from the hold since the last call (for the shell's metrics)."""
        sent = self._frames_sent, self._ticks_sent
        self._frames_sent = self._ticks_sent = 0
        return sent

    def steppable(self) -> frozenset[str] | None:
        """Its symbols, when it may share frames now: nothing held, outstanding or unsent."""
        if self._outstanding or self.outbox:
            return None
        return self.subs.key()

    # --- inside ---------------------------------------------------------------------

    def _subscribe(self, op: protocol.Subscribe) -> None:
        self._only(op.symbols, op.id)
        unknown = [s for s in op.symbols if s not in self.catalog]
        if unknown:
            charge_reads(self.budget, 1, op.id, self.clock())  # even a refused subscribe costs a unit
            raise ProtocolError(ErrorCode.UNKNOWN_SYMBOL, f"unknown or disabled symbols: {', '.join(unknown)}", op.id)
        # New symbols, ones the client asks to resume (it saw a gap), ones in another interval.
        subs, intervals = self.subs, self.intervals
        todo = [s for s in op.symbols if s not in subs or s in op.since or intervals.get(s) != op.interval]
        if Channel.TICKS not in op.channels:
            todo = []
        # Counting the symbols of subscribes still being read: a client cannot outrun the bound.
        being_read = {s for o in self._outstanding if not o.read.resync for s in o.read.symbols}
        if len(set(subs.symbols()) | being_read | set(todo)) > self.limits.max_symbols:
            raise ProtocolError(
                ErrorCode.TOO_MANY_SYMBOLS, f"at most {self.limits.max_symbols} symbols per connection", op.id
            )
        snapshots = self.books.snapshots_for(op.symbols, op.channels, op.id)
        # Every subscribe costs at least one unit, one that reads nothing too; a depth
        # snapshot costs one as a symbol's read does.
        charge_reads(self.budget, max(len(todo) + snapshots, 1), op.id, self.clock())
        if op.channels - {Channel.TICKS}:
            self.books.subscribe(op.symbols, op.channels, op.depth_levels)
        if not todo:
            self.outbox.append(protocol.ack_frame(op.id, "subscribe", op.symbols))
            return
        since = {s: p for s, p in op.since.items() if s in todo}
        self._ask(Read(tuple(todo), op.interval, since, op_id=op.id, ack=op.symbols))

    def _unsubscribe(self, op: protocol.Unsubscribe) -> None:
        self._only(op.symbols, op.id)
        self.on_change()
        removed = [s for s in op.symbols if Channel.TICKS in op.channels and self.subs.remove(s)]
        for symbol in removed:
            self.intervals.pop(symbol, None)
        booked = self.books.unsubscribe(op.symbols, op.channels)
        removed += [s for s in op.symbols if s in booked and s not in removed]
        self.outbox.append(protocol.ack_frame(op.id, "unsubscribe", removed))

    def _only(self, symbols: Sequence[str], op_id: int | str | None) -> None:
        if self.only is not None and any(s != self.only for s in symbols):
            message = f"this stream serves {self.only} only; use /ws/stream/ for others"
            raise ProtocolError(ErrorCode.FORBIDDEN, message, op_id)

    def _ask(self, read: Read) -> None:
        # Held from the moment it is asked for: a batch the read's state may not include
        # waits for its answer.
        self.on_change()
        self._outstanding.append(_Outstanding(read))
        self._to_start.append(read)

    def _find(self, read: Read) -> _Outstanding:
        for outstanding in self._outstanding:
            if outstanding.read is read:
                return outstanding
        raise KeyError("a read this session did not ask for, or answered already")

    def _answer(self, read: Read, states: Mapping[str, Any], positions: list[tuple[str, str | None, int]]) -> list[str]:
        """The frames answering ``read`` and the positions they leave the client at.

        Built as soon as the read is back, even if an earlier read is still out: a shared
        read is completed with the pieces the feed has sent since (``SharedReads.behind``),
        and those are only kept for a while.
        """
        frames = [] if read.ack is None else [protocol.ack_frame(read.op_id, "subscribe", read.ack)]
        shared = self.shared
        for symbol in read.symbols:
            entry = self.catalog.get(symbol)
            if entry is None or (read.resync and symbol not in self.subs):
                continue  # delisted or unsubscribed while it was read
            state, status, position = states[symbol], entry["status"], read.since.get(symbol)
            since_key = (position.epoch, position.seq) if position is not None else None

            def build(state: Any = state, position: Position | None = position, status: str = status) -> Any:
                return subscription_frame(state, position, status, read.interval)

            if shared is None:
                frame, epoch, seq = build()
            else:
                frame, epoch, seq = shared.frame(
                    symbol, read.interval, since_key, self.max_missed, state, status, build
                )
            frames.append(frame)
            if shared is not None:
                behind = shared.behind(symbol, epoch, seq)
                if behind is not None and behind[0]:
                    frames.append(protocol.ticks_frame(behind[0]))
                    seq = behind[1]
            positions.append((symbol, epoch, seq))
        return frames

    def _settle(self) -> None:
        """Apply the answers that are back, in the order asked; then forward what was held."""
        outstanding = self._outstanding
        while outstanding and outstanding[0].frames is not None:
            done = outstanding.pop(0)
            self.outbox.extend(done.frames or ())
            for symbol, epoch, seq in done.positions:
                self.subs.add(symbol, epoch, seq)
                self.intervals[symbol] = done.read.interval
        held = self._held
        while held and not outstanding and self.close_code is None:
            ticks = self._forward(*held.pop(0))
            if ticks:
                self._frames_sent += 1
                self._ticks_sent += ticks
        if self.close_code is not None:
            held.clear()

    def _forward(self, entries: Batch, frame: str | None, window: MarketWindow | None = None) -> int:
        """Send what the client has not seen of ``entries``, then the window's book frames it
        follows; the ticks sent (in one frame)."""
        subs = self.subs
        before = subs.ticks_accepted
        pieces = subs.select(entries)
        if pieces:
            # ``frame`` is all of ``entries``: it fits when the client gets one untrimmed piece of one.
            whole = frame is not None and len(entries) == 1 and pieces[0] is next(iter(entries.values()))[BATCH_PIECE]
            self.outbox.append(frame if whole else protocol.ticks_frame(pieces))  # type: ignore[arg-type]
        if window and self.books:
            self.outbox.extend(self.books.frames(window))
        if subs.resync_due():
            self._resync(subs.take_resync())
        return subs.ticks_accepted - before

    def _resync(self, symbols: list[str]) -> None:
        """Series that changed epoch: each gets a fresh snapshot, in the interval it follows."""
        by_interval: dict[str, list[str]] = {}
        for symbol in symbols:
            if symbol in self.catalog:
                by_interval.setdefault(self.intervals.get(symbol, protocol.DEFAULT_INTERVAL), []).append(symbol)
        for interval, found in by_interval.items():
            self._ask(Read(tuple(found), interval, resync=True))
