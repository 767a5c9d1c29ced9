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
however many rules there are. A symbol's move rules share one monotonic track per
direction (each tick pushed and dropped once); per window, one bisection bounds the best
ratio any tick could reach against it, and only a window that could fire something is
checked tick by tick. ``python -m bench.alerts`` measures it (docs/performance.md has the
figures).
"""

from __future__ import annotations

import bisect
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


class MoveTrack:
    """Suffix extremes of one symbol's recent ticks, for every move rule of one direction.

    A monotonic queue of ``(ts, price)``: for a rise, prices increase along it (each tick
    drops the older ticks at or above its price), so the lowest price of the ticks since
    any time ``h`` is the first entry at or after ``h``, found by bisection; for a fall the
    same with highest prices. Each tick is pushed and dropped at most once, and one track
    serves every window length of its direction (it keeps the longest).
    """

    __slots__ = ("_head", "_prices", "_times", "rising", "span_ms")

    def __init__(self, rising: bool, span_ms: int) -> None:
        self.rising = rising
        self.span_ms = span_ms
        self._times: list[int] = []
        self._prices: list[float] = []
        self._head = 0

    def extreme_since(self, horizon: int) -> float | None:
        """Lowest (rise) or highest (fall) price of the ticks at or after ``horizon``; None if none."""
        i = bisect.bisect_left(self._times, horizon, self._head)
        return self._prices[i] if i < len(self._times) else None

    def extreme(self) -> float | None:
        """Lowest (rise) or highest (fall) price held: of at least the last ``span_ms``."""
        return self._prices[self._head] if self._head < len(self._prices) else None

    def push(self, ts: int, price: float) -> None:
        times, prices, head = self._times, self._prices, self._head
        if self.rising:
            while len(prices) > head and prices[-1] >= price:
                prices.pop()
                times.pop()
        else:
            while len(prices) > head and prices[-1] <= price:
                prices.pop()
                times.pop()
        times.append(ts)
        prices.append(price)

    def add(self, ticks: Sequence[PricePoint]) -> None:
        """Push a window's ticks, then forget those older than the span before its last one.

        ``push`` and ``expire`` inlined: this runs for every tick of a symbol with move rules.
        """
        times, prices, head = self._times, self._prices, self._head
        rising = self.rising
        for tick in ticks:
            price = tick.price
            if rising:
                while len(prices) > head and prices[-1] >= price:
                    prices.pop()
                    times.pop()
            else:
                while len(prices) > head and prices[-1] <= price:
                    prices.pop()
                    times.pop()
            times.append(tick.ts)
            prices.append(price)
        horizon = ticks[-1].ts - self.span_ms
        if times[head] < horizon:
            self._head = head = bisect.bisect_left(times, horizon, head)
            if head > 256 and head * 2 > len(times):
                del times[:head], prices[:head]
                self._head = 0

    def expire(self, now: int) -> None:
        """Forget the ticks older than the span."""
        times, head = self._times, self._head
        if times[head] >= now - self.span_ms:
            return
        self._head = head = bisect.bisect_left(times, now - self.span_ms, head)
        if head > 256 and head * 2 > len(times):
            del times[:head], self._prices[:head]
            self._head = 0


@dataclass
class _Direction:
    """A symbol's move rules of one direction: one track, one threshold list per window length."""

    track: MoveTrack
    # (span_ms, rules keyed by the price ratio to the span's extreme that fires them), shortest first
    groups: list[tuple[int, _Thresholds]]
    # The ratio that fires the first rule of any group: the lowest rise key, the highest fall key.
    floor: float = 0.0

    def refloor(self) -> None:
        if self.track.rising:
            self.floor = min((th.keys[0] for _, th in self.groups if th.keys), default=float("inf"))
        else:
            self.floor = max((th.keys[-1] for _, th in self.groups if th.keys), default=float("-inf"))


@dataclass
class _SymbolBook:
    above: _Thresholds
    below: _Thresholds
    moves: list[_Direction]


def _ratio(rule: AlertRule) -> float:
    """The price ratio to the window's extreme at which a move rule fires."""
    assert rule.percent is not None
    return 1.0 + rule.percent / 100.0 if rule.condition == RISE else 1.0 - rule.percent / 100.0


class AlertEvaluator:
    """The active rules of the symbols a producer ticks, checked against every window.

    ``replace`` swaps in a freshly loaded rule set, ``add`` indexes new rules beside the
    current ones, ``remove`` drops deleted ones (move tracks that remain keep their history
    in all three); ``evaluate`` returns what one symbol's ticks fired and forgets those
    rules, so each fires at most once here.
    Fired ids are remembered until a full load no longer lists them, so a load that raced a
    firing cannot bring a fired rule back.
    """

    def __init__(self, rules: Iterable[AlertRule] = ()) -> None:
        self._books: dict[str, _SymbolBook] = {}
        self._fired: set[int] = set()
        self._known: set[int] = set()
        self.replace(rules)

    def __len__(self) -> int:
        total = 0
        for book in self._books.values():
            total += len(book.above) + len(book.below)
            total += sum(len(th) for direction in book.moves for _, th in direction.groups)
        return total

    def replace(self, rules: Iterable[AlertRule]) -> None:
        """Index ``rules`` (the full active set) in place of the current ones."""
        rules = list(rules)
        self._known = {rule.id for rule in rules}
        self._fired &= self._known
        grouped: dict[str, list[AlertRule]] = {}
        for rule in rules:
            if rule.id not in self._fired:
                grouped.setdefault(rule.symbol, []).append(rule)
        self._books = {symbol: self._book(symbol, symbol_rules) for symbol, symbol_rules in grouped.items()}

    def add(self, rules: Iterable[AlertRule]) -> int:
        """Index the rules not indexed yet (a partial load of recent alerts); returns how many."""
        grouped: dict[str, list[AlertRule]] = {}
        for rule in rules:
            if rule.id not in self._known and rule.id not in self._fired:
                self._known.add(rule.id)
                grouped.setdefault(rule.symbol, []).append(rule)
        for symbol, fresh in grouped.items():
            self._books[symbol] = self._book(symbol, self._rules_of(symbol) + fresh)
        return sum(len(fresh) for fresh in grouped.values())

    def remove(self, ids: Iterable[int]) -> int:
        """Drop these rules (their alerts were deleted); returns how many were indexed."""
        gone = set(ids)
        removed = 0
        for symbol in list(self._books):
            rules = self._rules_of(symbol)
            kept = [rule for rule in rules if rule.id not in gone]
            if len(kept) < len(rules):
                removed += len(rules) - len(kept)
                self._books[symbol] = self._book(symbol, kept)
        return removed

    def _rules_of(self, symbol: str) -> list[AlertRule]:
        book = self._books.get(symbol)
        if book is None:
            return []
        return [*book.above.rules, *book.below.rules, *(r for d in book.moves for _, th in d.groups for r in th.rules)]

    def _book(self, symbol: str, symbol_rules: list[AlertRule]) -> _SymbolBook:
        """One symbol's index; move tracks of the previous one are kept."""
        old = self._books.get(symbol)
        old_tracks = {d.track.rising: d.track for d in old.moves} if old is not None else {}
        moves = []
        for condition in MOVE_CONDITIONS:
            by_span: dict[int, list[AlertRule]] = {}
            for rule in symbol_rules:
                if rule.condition == condition:
                    assert rule.minutes is not None
                    by_span.setdefault(rule.minutes * MINUTE_MS, []).append(rule)
            if not by_span:
                continue
            rising = condition == RISE
            track = old_tracks.get(rising) or MoveTrack(rising, 0)
            track.span_ms = max(by_span)
            groups = [
                (span, _Thresholds.of((_ratio(rule), rule) for rule in members))
                for span, members in sorted(by_span.items())
            ]
            direction = _Direction(track, groups)
            direction.refloor()
            moves.append(direction)
        return _SymbolBook(
            above=_Thresholds.of((r.price, r) for r in symbol_rules if r.condition == ABOVE),  # type: ignore[misc]
            below=_Thresholds.of((r.price, r) for r in symbol_rules if r.condition == BELOW),  # type: ignore[misc]
            moves=moves,
        )

    def forget_fired(self, ids: Iterable[int]) -> None:
        """Let the next ``replace`` restore these rules (their firing was not stored)."""
        self._fired.difference_update(ids)

    def evaluate(self, symbol: str, ticks: Sequence[PricePoint]) -> list[Firing]:
        """What ``ticks`` (one window of ``symbol``, in order) fired; each rule fires once."""
        book = self._books.get(symbol)
        if book is None or not ticks:
            return []
        fired: list[Firing] = []
        if len(ticks) == 1:
            high = low = ticks[0].price
        else:
            prices = [tick.price for tick in ticks]
            high, low = max(prices), min(prices)
        # The nearest thresholds first: most windows cross none and stop here.
        above, below = book.above, book.below
        if above.keys and high >= above.keys[0]:
            fired += [_first_at_or_above(rule, ticks) for rule in above.take_up_to(high)]
        if below.keys and low <= below.keys[-1]:
            fired += [_first_at_or_below(rule, ticks) for rule in below.take_from(low)]
        for direction in book.moves:
            track = direction.track
            extreme = track.extreme()
            # The track's extreme covers at least the longest span: if even against it no
            # move rule can fire, the window only joins the track.
            if track.rising:
                if extreme is None or low < extreme:
                    extreme = low
                if high / extreme >= direction.floor:
                    fired += _moves(direction, ticks, high, low)
            else:
                if extreme is None or high > extreme:
                    extreme = high
                if low / extreme <= direction.floor:
                    fired += _moves(direction, ticks, high, low)
            track.add(ticks)
        if fired:
            # The book stays (empty ones are dropped by the next ``replace``): tracks keep their history.
            self._fired.update(firing.rule.id for firing in fired)
        return fired


def _moves(direction: _Direction, ticks: Sequence[PricePoint], high: float, low: float) -> list[Firing]:
    """Move rules of one direction against a window that may fire one (before it joins the track).

    Per window length, one bisection bounds the best ratio any tick of the window can reach
    (its best price against the extreme since the span before its first tick); only a
    length whose bound reaches a threshold is checked tick by tick.
    """
    track = direction.track
    rising = track.rising
    first = ticks[0].ts
    fired: list[Firing] = []
    for span, thresholds in direction.groups:
        if not thresholds.keys:
            continue
        before = track.extreme_since(first - span)
        if rising:
            extreme = low if before is None or low < before else before
            if high / extreme < thresholds.keys[0]:
                continue
        else:
            extreme = high if before is None or high > before else before
            if low / extreme > thresholds.keys[-1]:
                continue
        running: float | None = None
        for tick in ticks:
            price = tick.price
            running = price if running is None else (min(running, price) if rising else max(running, price))
            before = track.extreme_since(tick.ts - span)
            extreme = running if before is None else (min(before, running) if rising else max(before, running))
            taken = thresholds.take_up_to(price / extreme) if rising else thresholds.take_from(price / extreme)
            fired.extend(Firing(rule, price, tick.ts) for rule in taken)
    if fired:
        direction.refloor()
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
