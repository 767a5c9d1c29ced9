"""Per-connection fan-out state and the resume decision, shared by both consumers.

``Subscriptions`` decides which pieces of each producer batch a connection gets;
``subscription_frame`` decides what answers a (re)subscribe: the missed ticks
(``recovered: true``) or a fresh snapshot.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from dashboard.market.protocol import Position, encode_ticks, ticks_frame
from dashboard.market.store import SubscribeState
from dashboard.streams.frames import snapshot


class Subscriptions:
    """A connection's subscribed symbols and the last ``(epoch, seq)`` sent for each.

    It decides which pieces of a batch go to the client: nothing already covered by
    the snapshot, nothing twice. A batch from another epoch (the series restarted, or
    started after the subscribe) is not forwarded: the symbol is marked for a fresh
    snapshot instead (``take_resync``), which the consumer then sends.
    """

    def __init__(self) -> None:
        self._positions: dict[str, list[Any]] = {}
        self._resync: set[str] = set()
        self._key: frozenset[str] | None = None
        # Ticks let through since the connection opened (for metrics).
        self.ticks_accepted = 0

    def __contains__(self, symbol: object) -> bool:
        return symbol in self._positions

    def __len__(self) -> int:
        return len(self._positions)

    def symbols(self) -> list[str]:
        return list(self._positions)

    def add(self, symbol: str, epoch: str | None, seq: int) -> None:
        self._positions[symbol] = [epoch, seq]
        self._resync.discard(symbol)
        self._key = None

    def remove(self, symbol: str) -> bool:
        self._resync.discard(symbol)
        self._key = None
        return self._positions.pop(symbol, None) is not None

    def key(self) -> frozenset[str] | None:
        """The subscribed symbols, when a frame may be shared with others (none pending resync)."""
        if self._resync or not self._positions:
            return None
        if self._key is None:
            self._key = frozenset(self._positions)
        return self._key

    def matches(self, last: Mapping[str, Sequence[Any]]) -> bool:
        """Whether every position equals ``last`` (``symbol -> (epoch, seq)``): in step with it."""
        for symbol, pos in self._positions.items():
            seen = last.get(symbol)
            if seen is None or seen[0] != pos[0] or seen[1] != pos[1]:
                return False
        return True

    def catch_up(self, last: Mapping[str, Sequence[Any]]) -> None:
        """Set every position from ``last``: what a stream in step with it has been sent."""
        for symbol, pos in self._positions.items():
            seen = last.get(symbol)
            if seen is not None:
                pos[0], pos[1] = seen[0], seen[1]

    def position(self, symbol: str) -> tuple[str | None, int] | None:
        pos = self._positions.get(symbol)
        return (pos[0], pos[1]) if pos else None

    def resync_due(self) -> bool:
        return bool(self._resync)

    def take_resync(self) -> list[str]:
        """Symbols that need a fresh snapshot (new epoch seen); cleared by this call."""
        if not self._resync:
            return []
        symbols = sorted(self._resync)
        self._resync.clear()
        return symbols

    def select(self, entries: Mapping[str, Sequence[Any]]) -> list[str]:
        """Pieces of a batch (``symbol -> BatchEntry wire form``) this client should get.

        The hot path of fan-out (every dashboard, every window): the common case, the next
        ticks of a series the client follows, is handled inline; anything else goes
        through ``accept``.
        """
        pieces: list[str] = []
        positions = self._positions
        resync = self._resync
        accepted = 0
        # Iterate the smaller side: a dashboard on 50 of 500 symbols, or 500 of 50.
        if len(positions) < len(entries):
            candidates = [(s, entries[s]) for s in positions if s in entries]
        else:
            candidates = [(s, e) for s, e in entries.items() if s in positions]
        for symbol, raw in candidates:
            pos = positions[symbol]
            epoch, first_seq, last_seq, piece = raw
            if pos[0] == epoch and first_seq == pos[1] + 1 and symbol not in resync:
                pos[1] = last_seq
                accepted += last_seq - first_seq + 1
                pieces.append(piece)
            else:
                piece = self.accept(symbol, epoch, first_seq, last_seq, piece)
                if piece:
                    pieces.append(piece)
        self.ticks_accepted += accepted
        return pieces

    def accept(self, symbol: str, epoch: str, first_seq: int, last_seq: int, piece: str) -> str | None:
        """The part of ``piece`` this client has not seen, updating its position."""
        pos = self._positions.get(symbol)
        if pos is None or symbol in self._resync:
            return None
        if pos[0] != epoch:
            self._resync.add(symbol)
            return None
        if last_seq <= pos[1]:
            return None
        if first_seq > pos[1]:
            self.ticks_accepted += last_seq - first_seq + 1
            pos[1] = last_seq
            return piece
        # Overlaps the snapshot: keep only the unseen ticks (rare, once per subscribe).
        fresh = [t for t in orjson.loads("[" + piece + "]") if t["seq"] > pos[1]]
        self.ticks_accepted += len(fresh)
        pos[1] = last_seq
        return encode_ticks(fresh)


def subscription_frame(
    state: SubscribeState, since: Position | None, status: str, interval: str
) -> tuple[str, str | None, int]:
    """The frame answering a (re)subscribe of one symbol, and the position it leaves the client at.

    Resume: when ``since`` is in the current epoch and every tick after it is still held,
    exactly those ticks (``recovered: true``); otherwise a snapshot (``recovered: false``
    when a resume was asked for).
    """
    snap = state.snapshot
    if since is not None and state.missed is not None and snap.epoch == since.epoch and since.seq <= snap.seq:
        seqs = [seq for seq, _ in state.missed]
        expected = list(range(since.seq + 1, since.seq + 1 + len(seqs)))
        if seqs == expected and (not seqs or seqs[-1] >= snap.seq):
            last = seqs[-1] if seqs else since.seq
            return ticks_frame([t for _, t in state.missed], recovered=True), snap.epoch, last
    recovered = False if since is not None else None
    return snapshot(snap, status, interval, recovered=recovered), snap.epoch, snap.seq
