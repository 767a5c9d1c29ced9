"""Price alert rules and their evaluation against each producer window: pure Python.

No Django, no Channels, no I/O: ``workers/alerts.py`` loads the rules from the database,
feeds every window's ticks through an ``AlertEvaluator`` and stores and publishes what
fires. Kept pure so the conditions are unit-tested exactly (``tests/workers/test_alerts.py``).

Conditions:

* ``above`` ``price``: fires at the first tick whose price is at or above ``price``;
* ``below`` ``price``: fires at the first tick whose price is at or below ``price``;
* ``rise`` ``percent`` ``minutes``: fires at the first tick whose price is at least
  ``percent`` % above the lowest price of the ticks seen in the ``minutes`` before it;
* ``fall`` ``percent`` ``minutes``: the same downwards, from the highest price.

Cost per window: symbols with no rule cost one dict lookup. Price rules are kept per symbol
in two sorted threshold lists, so a window costs its min/max price and two bisections,
however many rules there are. Move rules share one monotonic deque per
(symbol, direction, minutes): amortised O(1) per tick and distinct window length, then one
bisection over the percent thresholds of that group.
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

ABOVE = "above"
BELOW = "below"
RISE = "rise"
FALL = "fall"
CONDITIONS = (ABOVE, BELOW, RISE, FALL)
PRICE_CONDITIONS = (ABOVE, BELOW)
MOVE_CONDITIONS = (RISE, FALL)
MINUTE_MS = 60_000


class PricePoint(Protocol):
    """What the evaluator reads from a tick (``workers.simulator.Tick`` has both)."""

    @property
    def ts(self) -> int: ...

    @property
    def price(self) -> float: ...


@dataclass(frozen=True, slots=True)
class AlertRule:
    """One active alert as the evaluator needs it."""

    id: int
    user_id: int
    symbol: str
    condition: str
    price: float | None = None
    percent: float | None = None
    minutes: int | None = None

    def __post_init__(self) -> None:
        if self.condition in PRICE_CONDITIONS:
            if self.price is None or not self.price > 0:
                raise ValueError(f"alert {self.id}: {self.condition} needs a positive price")
        elif self.condition in MOVE_CONDITIONS:
            if self.percent is None or not self.percent > 0 or self.minutes is None or self.minutes < 1:
                raise ValueError(f"alert {self.id}: {self.condition} needs a positive percent and minutes >= 1")
            if self.condition == FALL and self.percent >= 100:
                raise ValueError(f"alert {self.id}: a fall is less than 100 %")
        else:
            raise ValueError(f"alert {self.id}: unknown condition {self.condition!r}")


@dataclass(frozen=True, slots=True)
class Firing:
    """A rule that fired, with the tick that crossed it."""

    rule: AlertRule
    price: float
    ts: int


@dataclass
class _Thresholds:
    """Rules sorted by a float threshold, kept as two parallel lists for ``bisect``."""

    keys: list[float] = field(default_factory=list)
    rules: list[AlertRule] = field(default_factory=list)

    @classmethod
    def of(cls, pairs: Iterable[tuple[float, AlertRule]]) -> _Thresholds:
        ordered = sorted(pairs, key=lambda pair: (pair[0], pair[1].id))
        return cls([key for key, _ in ordered], [rule for _, rule in ordered])

    def take_up_to(self, value: float) -> list[AlertRule]:
        """Remove and return the rules whose key is <= ``value``."""
        end = bisect.bisect_right(self.keys, value)
        if not end:
            return []
        taken = self.rules[:end]
        del self.keys[:end], self.rules[:end]
        return taken

    def take_from(self, value: float) -> list[AlertRule]:
        """Remove and return the rules whose key is >= ``value``."""
        start = bisect.bisect_left(self.keys, value)
        if start == len(self.keys):
            return []
        taken = self.rules[start:]
        del self.keys[start:], self.rules[start:]
        return taken

    def __len__(self) -> int:
        return len(self.keys)


class MoveWindow:
    """The lowest (``rise``) or highest (``fall``) price of the ticks of the last ``minutes``.

    A monotonic deque of ``(ts, price)``: each tick is pushed and popped at most once.
    """

    __slots__ = ("_points", "rising", "span_ms")

    def __init__(self, rising: bool, minutes: int) -> None:
        self.rising = rising
        self.span_ms = minutes * MINUTE_MS
        self._points: deque[tuple[int, float]] = deque()

    def push(self, ts: int, price: float) -> float:
        """Add a tick; returns the extreme (low for a rise, high for a fall) of the window, it included."""
        points = self._points
        if self.rising:
            while points and points[-1][1] >= price:
                points.pop()
        else:
            while points and points[-1][1] <= price:
                points.pop()
        points.append((ts, price))
        horizon = ts - self.span_ms
        while points[0][0] < horizon:
            points.popleft()
        return points[0][1]


@dataclass
class _MoveGroup:
    """Move rules of one symbol, direction and window length; keyed by the price ratio that fires them."""

    window: MoveWindow
    thresholds: _Thresholds


@dataclass
class _SymbolBook:
    above: _Thresholds
    below: _Thresholds
    moves: dict[tuple[str, int], _MoveGroup]


def _ratio(rule: AlertRule) -> float:
    """The price ratio to the window's extreme at which a move rule fires."""
    assert rule.percent is not None
    return 1.0 + rule.percent / 100.0 if rule.condition == RISE else 1.0 - rule.percent / 100.0


class AlertEvaluator:
    """The active rules of the symbols a producer ticks, checked against every window.

    ``replace`` swaps in a freshly loaded rule set (move windows of groups that remain keep
    their history); ``evaluate`` returns what one symbol's ticks fired and forgets those
    rules, so each fires at most once here. Fired ids are remembered until a load no
    longer lists them, so a load that raced a firing cannot bring a fired rule back.
    """

    def __init__(self, rules: Iterable[AlertRule] = ()) -> None:
        self._books: dict[str, _SymbolBook] = {}
        self._fired: set[int] = set()
        self.replace(rules)

    def __len__(self) -> int:
        total = 0
        for book in self._books.values():
            total += len(book.above) + len(book.below) + sum(len(g.thresholds) for g in book.moves.values())
        return total

    def replace(self, rules: Iterable[AlertRule]) -> None:
        """Index ``rules`` (the full active set) in place of the current ones."""
        rules = list(rules)
        listed = {rule.id for rule in rules}
        self._fired &= listed
        grouped: dict[str, list[AlertRule]] = {}
        for rule in rules:
            if rule.id not in self._fired:
                grouped.setdefault(rule.symbol, []).append(rule)
        books: dict[str, _SymbolBook] = {}
        for symbol, symbol_rules in grouped.items():
            moves: dict[tuple[str, int], list[AlertRule]] = {}
            for rule in symbol_rules:
                if rule.condition in MOVE_CONDITIONS:
                    assert rule.minutes is not None
                    moves.setdefault((rule.condition, rule.minutes), []).append(rule)
            old = self._books.get(symbol)
            groups = {}
            for key, members in moves.items():
                kept = old.moves.get(key) if old is not None else None
                window = kept.window if kept is not None else MoveWindow(key[0] == RISE, key[1])
                groups[key] = _MoveGroup(window, _Thresholds.of((_ratio(rule), rule) for rule in members))
            books[symbol] = _SymbolBook(
                above=_Thresholds.of((r.price, r) for r in symbol_rules if r.condition == ABOVE),  # type: ignore[misc]
                below=_Thresholds.of((r.price, r) for r in symbol_rules if r.condition == BELOW),  # type: ignore[misc]
                moves=groups,
            )
        self._books = books

    def forget_fired(self, ids: Iterable[int]) -> None:
        """Let the next ``replace`` restore these rules (their firing was not stored)."""
        self._fired.difference_update(ids)

    def evaluate(self, symbol: str, ticks: Sequence[PricePoint]) -> list[Firing]:
        """What ``ticks`` (one window of ``symbol``, in order) fired; each rule fires once."""
        book = self._books.get(symbol)
        if book is None or not ticks:
            return []
        fired: list[Firing] = []
        if book.above or book.below:
            prices = [tick.price for tick in ticks]
            if book.above:
                fired += [_first_at_or_above(rule, ticks) for rule in book.above.take_up_to(max(prices))]
            if book.below:
                fired += [_first_at_or_below(rule, ticks) for rule in book.below.take_from(min(prices))]
        for group in book.moves.values():
            window, thresholds = group.window, group.thresholds
            rising = window.rising
            for tick in ticks:
                extreme = window.push(tick.ts, tick.price)
                if not thresholds:
                    continue
                ratio = tick.price / extreme
                taken = thresholds.take_up_to(ratio) if rising else thresholds.take_from(ratio)
                fired.extend(Firing(rule, tick.price, tick.ts) for rule in taken)
        if fired:
            # The book stays (empty ones are dropped by the next ``replace``): move windows keep their history.
            self._fired.update(firing.rule.id for firing in fired)
        return fired


def _first_at_or_above(rule: AlertRule, ticks: Sequence[PricePoint]) -> Firing:
    """An ``above`` rule fires at the first tick at or above its price."""
    threshold = rule.price
    assert threshold is not None
    tick = next(t for t in ticks if t.price >= threshold)
    return Firing(rule, tick.price, tick.ts)


def _first_at_or_below(rule: AlertRule, ticks: Sequence[PricePoint]) -> Firing:
    """A ``below`` rule fires at the first tick at or below its price."""
    threshold = rule.price
    assert threshold is not None
    tick = next(t for t in ticks if t.price <= threshold)
    return Firing(rule, tick.price, tick.ts)
