"""One connection's ``depth`` and ``trades`` subscriptions, and the frames a window owes it.

Pure, like ``Subscriptions`` beside it (which keeps the ``ticks`` channel): the stream
session (``dashboard.streams.session``) owns one and asks it, per forwarded window, for
the frames that follow the window's ``ticks`` frame.

Depth: a symbol's copy is at ``(epoch, u)``. A window whose book update continues it
(``U == u + 1``) gets the diff frame shared by every stream of the same level count;
anything else (a new subscription, a window the process missed, a new epoch) gets a
``depth_snapshot`` of the book as of that window. So a client's book is right after
every depth frame, and its ``U`` always follows the previous frame's ``u``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from dashboard.market.depth import TRADES_PIECE, MarketWindow, trades_frame
from dashboard.market.protocol import Channel, ErrorCode, ProtocolError


class _DepthCopy:
    """Where a client's copy of one book is; ``u`` None: a snapshot is due."""

    __slots__ = ("epoch", "levels", "u")

    def __init__(self, levels: int) -> None:
        self.levels = levels
        self.epoch: str | None = None
        self.u: int | None = None


class BookChannels:
    """The symbols a connection follows the book and the trades of."""

    def __init__(self, max_depth_symbols: int) -> None:
        self.max_depth_symbols = max_depth_symbols
        self.depth: dict[str, _DepthCopy] = {}
        self.trades: set[str] = set()

    def __bool__(self) -> bool:
        return bool(self.depth or self.trades)

    def snapshots_for(self, symbols: Sequence[str], channels: Iterable[Channel], op_id: int | str | None) -> int:
        """The depth snapshots a subscribe would cost, refusing one over the depth bound."""
        if Channel.DEPTH not in channels:
            return 0
        if len(self.depth.keys() | set(symbols)) > self.max_depth_symbols:
            message = f"at most {self.max_depth_symbols} depth symbols per connection"
            raise ProtocolError(ErrorCode.TOO_MANY_SYMBOLS, message, op_id)
        return len(symbols)

    def subscribe(self, symbols: Sequence[str], channels: Iterable[Channel], levels: int) -> None:
        """Follow ``channels`` of ``symbols``; a depth subscription (again) starts with a snapshot."""
        channels = set(channels)
        for symbol in symbols:
            if Channel.DEPTH in channels:
                self.depth[symbol] = _DepthCopy(levels)
            if Channel.TRADES in channels:
                self.trades.add(symbol)

    def unsubscribe(self, symbols: Sequence[str], channels: Iterable[Channel]) -> set[str]:
        """Stop ``channels`` of ``symbols``; the symbols that had one of them."""
        channels = set(channels)
        removed = set()
        for symbol in symbols:
            if Channel.DEPTH in channels and self.depth.pop(symbol, None) is not None:
                removed.add(symbol)
            if Channel.TRADES in channels and symbol in self.trades:
                self.trades.discard(symbol)
                removed.add(symbol)
        return removed

    def keep_only(self, symbols: Iterable[str]) -> None:
        """Drop what is not in ``symbols`` (the catalog's)."""
        listed = set(symbols)
        for symbol in [s for s in self.depth if s not in listed]:
            del self.depth[symbol]
        self.trades &= listed

    def frames(self, window: MarketWindow) -> list[str]:
        """The window's depth frames (snapshots or diffs) and its trades frame, in that order."""
        out = []
        for symbol, copy in self.depth.items():
            update = window.book(symbol)
            if update is None:
                continue
            after = update.after
            if copy.u is not None and update.continues(copy.epoch, copy.u):
                frame = update.frame(copy.levels)
                if frame is not None:
                    out.append(frame)
            elif copy.u != after.u or copy.epoch != after.epoch:
                out.append(after.snapshot_frame(symbol, copy.levels))
            copy.epoch, copy.u = after.epoch, after.u
        if self.trades and window.trades:
            trades = window.trades
            pieces = [trades[s][TRADES_PIECE] for s in self.trades if s in trades]
            if pieces:
                out.append(trades_frame(pieces))
        return out
