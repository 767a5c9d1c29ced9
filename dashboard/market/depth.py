"""Order books and trades on the wire: a process's copy of each book, and frames built once.

Pure Python (orjson only), like ``protocol``. The producer publishes, per window and per
symbol whose book changed, a ``BookEntry``: the changed levels (``full``: the whole book,
a keyframe the producer sends every second so a process that joins late or missed a
window has a book again within one), and the symbol's trades as one pre-encoded piece
(``TradesEntry``), like its ticks.

Clients ask for the best ``n`` levels (1-50). A diff of the whole book would not keep a
client's best ``n`` right (a level that enters the view from below would never be sent),
so each web process keeps its own copy (``BookReplicas``), and a window's ``depth`` frame
for ``n`` levels is the difference between the best ``n`` before and after it: the levels
that are new or changed in the view, and size 0 for those that left it. ``BookUpdate``
builds that frame once per window per ``n`` and hands the same text to every stream
asking for ``n``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

Level = tuple[float, float]

# A book entry's wire form, by position (read for every symbol of every window).
BOOK_EPOCH, BOOK_FIRST_U, BOOK_LAST_U, BOOK_TS, BOOK_BIDS, BOOK_ASKS, BOOK_FULL = range(7)
# A trades entry's: the ids of its first and last trade, and the encoded trades.
TRADES_EPOCH, TRADES_FIRST_ID, TRADES_LAST_ID, TRADES_PIECE = range(4)


@dataclass(frozen=True, slots=True)
class Book:
    """One symbol's book after update ``u``: levels best first."""

    epoch: str
    u: int
    ts: int
    bids: tuple[Level, ...]
    asks: tuple[Level, ...]

    def snapshot_frame(self, symbol: str, levels: int) -> str:
        return _dumps(
            {
                "type": "depth_snapshot",
                "symbol": symbol,
                "epoch": self.epoch,
                "u": self.u,
                "bids": self.bids[:levels],
                "asks": self.asks[:levels],
            }
        )


def book_entry(
    epoch: str, first_u: int, last_u: int, ts: int, bids: Iterable[Level], asks: Iterable[Level], full: bool
) -> list[Any]:
    """A ``BookEntry``'s wire form (the producer's side)."""
    return [epoch, first_u, last_u, ts, [list(b) for b in bids], [list(a) for a in asks], full]


def trades_piece(trades: Iterable[Mapping[str, Any]]) -> str:
    """Trades encoded once, comma-joined: a piece of a ``trades`` frame."""
    return ",".join(_dumps(t) for t in trades)


def trades_frame(pieces: Iterable[str]) -> str:
    return '{"type":"trades","data":[' + ",".join(pieces) + "]}"


def _merge(levels: Sequence[Level], changes: Iterable[Sequence[float]], descending: bool) -> tuple[Level, ...]:
    book = dict(levels)
    for price, size in changes:
        if size:
            book[price] = size
        else:
            book.pop(price, None)
    return tuple(sorted(book.items(), reverse=descending))


def view_changes(before: Sequence[Level], after: Sequence[Level], levels: int) -> list[Level]:
    """What turns the best ``levels`` of ``before`` into those of ``after``: set, or 0 to remove."""
    left = dict(before[:levels])
    changes = [(price, size) for price, size in after[:levels] if left.pop(price, None) != size]
    changes.extend((price, 0.0) for price in left)
    return changes


@dataclass(slots=True)
class BookUpdate:
    """One window's change of one symbol's book; its ``depth`` frames built once per level count.

    ``before`` is None when the process had no book to continue (it just started, missed
    a window, or the epoch changed): a stream then needs a snapshot of ``after``.
    """

    symbol: str
    before: Book | None
    after: Book
    first_u: int
    _frames: dict[int, str | None] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        """False for a keyframe that repeats the book (``u`` did not move)."""
        return self.first_u <= self.after.u

    def continues(self, epoch: str | None, u: int | None) -> bool:
        """Whether a stream whose copy is at ``(epoch, u)`` can take this window's diff."""
        return self.before is not None and epoch == self.after.epoch and u == self.first_u - 1

    def frame(self, levels: int) -> str | None:
        """The ``depth`` frame for a client of ``levels`` levels (None: its view did not change)."""
        if levels in self._frames:
            return self._frames[levels]
        before, after = self.before, self.after
        assert before is not None, "a snapshot, not a diff, continues a book the process did not have"
        bids = view_changes(before.bids, after.bids, levels)
        asks = view_changes(before.asks, after.asks, levels)
        # A view that did not change still gets its frame while ``u`` moved: the next one's
        # ``U`` must follow this one's ``u``.
        frame = None
        if self.changed:
            frame = _dumps(
                {
                    "type": "depth",
                    "symbol": self.symbol,
                    "epoch": after.epoch,
                    "U": self.first_u,
                    "u": after.u,
                    "ts": after.ts,
                    "bids": bids,
                    "asks": asks,
                }
            )
        self._frames[levels] = frame
        return frame


class BookReplicas:
    """A process's copy of every symbol's book, kept from the producer's book entries.

    Entries are applied when a stream asks for a window of their symbol (``MarketWindow.book``),
    so a process pays for the books its streams follow, not for every symbol's: the others'
    entries wait, and each keyframe drops those it replaces. Each update replaces a symbol's
    ``Book`` (never mutated).
    """

    def __init__(self) -> None:
        self.books: dict[str, Book] = {}
        self.missed = 0
        self._pending: dict[str, list[Sequence[Any]]] = {}

    def receive(self, symbol: str, raw: Sequence[Any]) -> None:
        """Queue one book entry, in arrival order."""
        if raw[BOOK_FULL]:
            if self._pending.get(symbol):
                # Entries nobody asked for are dropped unapplied: the keyframe starts afresh.
                self.books.pop(symbol, None)
            self._pending[symbol] = [raw]
        else:
            self._pending.setdefault(symbol, []).append(raw)

    def update_for(self, symbol: str, raw: Sequence[Any]) -> BookUpdate | None:
        """The update ``raw`` makes, once the entries before it are applied; None when it was
        dropped (a keyframe came after it) or there is no book to continue until the next."""
        pending = self._pending.get(symbol)
        if not pending or not any(entry is raw for entry in pending):
            return None
        while True:
            entry = pending.pop(0)
            update = self.apply(symbol, entry)
            if entry is raw:
                return update

    def apply(self, symbol: str, raw: Sequence[Any]) -> BookUpdate | None:
        """Apply one book entry now; the update to hand to streams, or None (waiting for a keyframe)."""
        epoch, first_u, last_u = raw[BOOK_EPOCH], raw[BOOK_FIRST_U], raw[BOOK_LAST_U]
        before = self.books.get(symbol)
        if before is not None and (before.epoch != epoch or before.u + 1 != first_u):
            self.missed += before.epoch == epoch  # a window lost on the way, not a new series
            before = None
        if raw[BOOK_FULL]:
            bids = tuple(sorted(((p, s) for p, s in raw[BOOK_BIDS]), reverse=True))
            asks = tuple(sorted((p, s) for p, s in raw[BOOK_ASKS]))
        elif before is None:
            self.books.pop(symbol, None)
            return None
        else:
            bids = _merge(before.bids, raw[BOOK_BIDS], descending=True)
            asks = _merge(before.asks, raw[BOOK_ASKS], descending=False)
        after = Book(epoch, last_u, raw[BOOK_TS], bids, asks)
        self.books[symbol] = after
        return BookUpdate(symbol, before, after, first_u)


class MarketWindow:
    """What one producer window brings beyond ticks: book entries and trades, by symbol.

    ``book(symbol)`` is the window's ``BookUpdate`` of a symbol, made once for every stream
    that asks (None: none, or no book to continue yet).
    """

    __slots__ = ("_raws", "_replicas", "_updates", "trades")

    def __init__(
        self,
        replicas: BookReplicas | None = None,
        books: Mapping[str, Sequence[Any]] | None = None,
        trades: Mapping[str, Sequence[Any]] | None = None,
    ) -> None:
        self._replicas = replicas
        self._raws = dict(books) if books else {}
        self._updates: dict[str, BookUpdate | None] = {}
        self.trades = dict(trades) if trades else {}

    def __bool__(self) -> bool:
        return bool(self._raws or self.trades)

    def book(self, symbol: str) -> BookUpdate | None:
        if symbol in self._updates:
            return self._updates[symbol]
        raw = self._raws.get(symbol)
        update = None if raw is None or self._replicas is None else self._replicas.update_for(symbol, raw)
        self._updates[symbol] = update
        return update


def window_of(
    replicas: BookReplicas, books: Mapping[str, Any] | None, trades: Mapping[str, Any] | None
) -> MarketWindow:
    """A window's book entries queued on ``replicas``; the window to hand to streams."""
    for symbol, raw in (books or {}).items():
        replicas.receive(symbol, raw)
    return MarketWindow(replicas, books, trades)


def _dumps(obj: Any) -> str:
    return orjson.dumps(obj).decode()
