"""Abuse policy: the frame-rate and bad-frame budgets of a connection, screening, and the
read budget of a user.

Both consumers screen every client frame through ``screen``: rate-limit, then parse;
well-formed requests the server refuses are answered, malformed input counts toward a
close with 4400, and flooding closes with 4429.

A frame's rate says little about its cost: one ``subscribe`` may name 200 symbols. What a
subscribe makes the server read (one bounded read per symbol: a snapshot, or at most
``MAX_RESUME_TICKS`` missed ticks) is charged to its user's ``ReadBudget``, shared by all
of that user's streams in the process; a subscribe over budget is refused whole with
``rate_limited`` and ``retry_after_ms``, and reads nothing.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from enum import IntEnum

from dashboard.market.protocol import (
    ClientOp,
    CloseCode,
    ErrorCode,
    Limits,
    ProtocolError,
    error_frame,
    parse_client_frame,
)

# Malformed input, as opposed to a well-formed request the server refuses.
ABUSE_CODES = frozenset({ErrorCode.BAD_FRAME, ErrorCode.UNKNOWN_OP, ErrorCode.FRAME_TOO_LARGE})
# Requests refused for what they ask (not for the server's state, as ``unavailable`` is):
# each costs the server as much as a bad frame, so it counts toward the same close.
REFUSED_CODES = frozenset(
    {ErrorCode.UNKNOWN_SYMBOL, ErrorCode.TOO_MANY_SYMBOLS, ErrorCode.RATE_LIMITED, ErrorCode.FORBIDDEN}
)
COUNTED_CODES = ABUSE_CODES | REFUSED_CODES
# A buggy client sends a few bad frames; more than this many within the window is abuse (4400).
MAX_BAD_FRAMES = 10
BAD_WINDOW_SECONDS = 10.0


class Verdict(IntEnum):
    """What to do with a client frame."""

    ACCEPT = 0
    REFUSE = 1  # answer with an error, keep the connection
    CLOSE = 2  # close the connection with the matching close code


class ClientGuard:
    """Per-connection rate limit and bad-frame budget.

    A token bucket (``max_client_frames_per_second``, same burst) admits frames; a frame
    over the limit is refused with ``rate_limited``. A client that keeps flooding (more
    refused frames in one second than the limit) is closed with 4429. More than
    ``max_bad_frames`` bad frames within ``bad_window`` seconds closes with 4400.
    """

    def __init__(
        self, limits: Limits, *, max_bad_frames: int = MAX_BAD_FRAMES, bad_window: float = BAD_WINDOW_SECONDS
    ) -> None:
        self.rate = float(limits.max_client_frames_per_second)
        self.tokens = self.rate
        self.updated: float | None = None
        self.refused_window_start = 0.0
        self.refused = 0
        self.max_bad_frames = max_bad_frames
        self.bad_window = bad_window
        self.bad_times: list[float] = []

    def admit(self, now: float) -> Verdict:
        if self.updated is not None:
            self.tokens = min(self.rate, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return Verdict.ACCEPT
        if now - self.refused_window_start >= 1.0:
            self.refused_window_start, self.refused = now, 0
        self.refused += 1
        return Verdict.CLOSE if self.refused > self.rate else Verdict.REFUSE

    def should_report_refusal(self) -> bool:
        """Only the first refusal of each second gets an error frame: no amplification."""
        return self.refused == 1

    def bad_frame(self, now: float) -> Verdict:
        self.bad_times = [t for t in self.bad_times if now - t < self.bad_window]
        self.bad_times.append(now)
        return Verdict.CLOSE if len(self.bad_times) > self.max_bad_frames else Verdict.REFUSE


@dataclass
class Screened:
    """The outcome of screening one client frame: an op to run, frames to send, or a close."""

    op: ClientOp | None = None
    replies: list[str] = field(default_factory=list)
    close: CloseCode | None = None


def screen(guard: ClientGuard, limits: Limits, text: str | None, data: bytes | None, now: float) -> Screened:
    """Rate-limit and parse a client frame received at ``now`` (monotonic seconds)."""
    verdict = guard.admit(now)
    if verdict is Verdict.CLOSE:
        return Screened(close=CloseCode.RATE_LIMITED)
    if verdict is Verdict.REFUSE:
        if guard.should_report_refusal():
            message = f"more than {limits.max_client_frames_per_second} frames per second; frame ignored"
            return Screened(replies=[error_frame(ErrorCode.RATE_LIMITED, message)])
        return Screened()
    try:
        return Screened(op=parse_client_frame(text, data, limits=limits))
    except ProtocolError as err:
        if err.code in COUNTED_CODES and guard.bad_frame(now) is Verdict.CLOSE:
            return Screened(replies=[err.frame()], close=CloseCode.PROTOCOL_ABUSE)
        return Screened(replies=[err.frame()])


class ReadBudget:
    """A user's symbol reads: a token bucket of ``burst`` refilled at ``per_second``; thread-safe."""

    def __init__(self, per_second: float, burst: float, now: float | None = None) -> None:
        self.per_second = per_second
        self.burst = burst
        self.tokens = burst
        self.updated = time.monotonic() if now is None else now
        self._lock = threading.Lock()

    def charge(self, reads: int, now: float | None = None) -> float:
        """Take ``reads`` tokens and return 0, or take none and return the seconds until they are there."""
        now = time.monotonic() if now is None else now
        with self._lock:
            self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.per_second)
            self.updated = now
            if reads <= self.tokens:
                self.tokens -= reads
                return 0.0
            if reads > self.burst:
                return float("inf")
            return (reads - self.tokens) / self.per_second


def charge_reads(budget: ReadBudget, reads: int, op_id: int | str | None, now: float | None = None) -> None:
    """Charge a client's subscribe for the reads it causes, or refuse it whole (``rate_limited``)."""
    wait = budget.charge(reads, now)
    if not wait:
        return
    message = f"subscribing {reads} symbols now exceeds your read budget ({budget.per_second:g} per second)"
    if math.isinf(wait):  # more than the whole burst: no wait makes it fit
        raise ProtocolError(ErrorCode.RATE_LIMITED, f"{message}; nothing was subscribed, subscribe fewer", op_id)
    raise ProtocolError(
        ErrorCode.RATE_LIMITED,
        f"{message}; nothing was subscribed, retry later",
        op_id,
        retry_after_ms=math.ceil(wait * 1000),
    )
