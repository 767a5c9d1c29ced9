"""Whether a connection's ``depth`` and ``trades`` frames continue each other: pure, per symbol.

The load client keeps one ``Chains`` per dashboard and asks it about every frame of the
book channels (docs/protocol.md, ``depth_snapshot`` and ``depth``, ``trades``):

* depth: a ``depth_snapshot`` anchors the symbol's book at its ``u``; each ``depth`` frame
  must then cover ``U``..``u`` with ``U`` = the previous frame's (or the snapshot's) ``u`` + 1
  in the same ``epoch``. Anything else is a **gap** (the chain is re-anchored at the frame's
  ``u``, so one hole counts once). A later ``depth_snapshot`` of a symbol that already had
  a book is a **resnapshot**: the server's own recovery (its process missed a window), legal
  but reported apart; the chain restarts at its ``u``.
* trades: ``id`` rises by exactly 1 per symbol within an epoch. The first trade a
  connection sees of a symbol anchors its chain; after that a trade whose id is not the
  previous one + 1 (or whose epoch changed) is a gap, one at or below the previous id a
  duplicate.

Each check returns one of the verdicts below; the caller counts them.
"""

from __future__ import annotations

CONTINUES = 0
GAP = 1
DUPLICATE = 2
# A depth frame before any snapshot of its symbol, or the first trade of a symbol.
ANCHORED = 3


class Chains:
    """One connection's last depth update and last trade id, per symbol."""

    __slots__ = ("depth_epoch", "depth_u", "trade_epoch", "trade_id")

    def __init__(self) -> None:
        self.depth_u: dict[str, int] = {}
        self.depth_epoch: dict[str, str] = {}
        self.trade_id: dict[str, int] = {}
        self.trade_epoch: dict[str, str] = {}

    def snapshot(self, symbol: str, epoch: str, u: int) -> bool:
        """A ``depth_snapshot``: the chain (re)starts at ``u``; True when it is a resnapshot."""
        again = symbol in self.depth_u
        self.depth_u[symbol] = u
        self.depth_epoch[symbol] = epoch
        return again

    def depth(self, symbol: str, epoch: str, first_u: int, last_u: int) -> int:
        """A ``depth`` frame covering ``first_u``..``last_u``: CONTINUES, GAP, DUPLICATE or ANCHORED."""
        prev = self.depth_u.get(symbol)
        if prev is None:
            verdict = ANCHORED  # no snapshot came first: the server broke the protocol
        elif epoch != self.depth_epoch[symbol]:
            verdict = GAP
        elif first_u == prev + 1:
            verdict = CONTINUES
        elif last_u <= prev:
            return DUPLICATE  # already applied: the chain stays where it is
        else:
            verdict = GAP
        self.depth_u[symbol] = last_u
        self.depth_epoch[symbol] = epoch
        return verdict

    def trade(self, symbol: str, epoch: str, trade_id: int) -> int:
        """One trade: CONTINUES, GAP, DUPLICATE or ANCHORED (the symbol's first)."""
        prev = self.trade_id.get(symbol)
        if prev is None:
            verdict = ANCHORED
        elif epoch != self.trade_epoch[symbol]:
            verdict = GAP
        elif trade_id == prev + 1:
            verdict = CONTINUES
        elif trade_id <= prev:
            return DUPLICATE
        else:
            verdict = GAP
        self.trade_id[symbol] = trade_id
        self.trade_epoch[symbol] = epoch
        return verdict
