"""Wire protocol v1: parse client frames, build server frames, track subscriptions.

Pure Python (orjson only): both consumers and the producer's broadcaster use it, and
``static/js/protocol.js`` mirrors it in the browser. docs/protocol.md is the spec.

Ticks are encoded once by the producer (``encode_ticks``) and travel as JSON text
pieces; a consumer only joins the pieces its client subscribed to (``ticks_frame``),
so per-client work is a string join, never a JSON encode.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import Any

import orjson

PROTOCOL_VERSION = 1
SYMBOL_PATTERN = r"[A-Z0-9][A-Z0-9.\-]{0,19}"
SYMBOL_RE = re.compile(rf"^{SYMBOL_PATTERN}$")
INTERVALS = ("5s", "1m", "5m")
DEFAULT_INTERVAL = "1m"
MAX_ID_LENGTH = 64


class ErrorCode(StrEnum):
    BAD_FRAME = "bad_frame"
    UNKNOWN_OP = "unknown_op"
    UNKNOWN_SYMBOL = "unknown_symbol"
    TOO_MANY_SYMBOLS = "too_many_symbols"
    RATE_LIMITED = "rate_limited"
    FRAME_TOO_LARGE = "frame_too_large"
    FORBIDDEN = "forbidden"
    UNAVAILABLE = "unavailable"


class CloseCode(IntEnum):
    NORMAL = 1000
    GOING_AWAY = 1001
    POLICY = 1008
    TRY_AGAIN_LATER = 1013
    PROTOCOL_ABUSE = 4400
    NOT_AUTHENTICATED = 4401
    FORBIDDEN = 4403
    TOO_SLOW = 4408
    RATE_LIMITED = 4429


@dataclass(frozen=True)
class Limits:
    """Per-connection limits, announced in ``hello``."""

    max_frame_bytes: int = 64 * 1024
    max_symbols: int = 200
    max_client_frames_per_second: int = 20

    def to_wire(self) -> dict[str, int]:
        return {
            "max_frame_bytes": self.max_frame_bytes,
            "max_symbols": self.max_symbols,
            "max_client_frames_per_second": self.max_client_frames_per_second,
        }


@dataclass(frozen=True)
class Position:
    """Where a client's copy of a symbol's series ends: ``(epoch, seq)``."""

    epoch: str
    seq: int


@dataclass(frozen=True)
class Subscribe:
    id: int | str | None
    symbols: tuple[str, ...]
    interval: str = DEFAULT_INTERVAL
    since: Mapping[str, Position] = field(default_factory=dict)


@dataclass(frozen=True)
class Unsubscribe:
    id: int | str | None
    symbols: tuple[str, ...]


@dataclass(frozen=True)
class Ping:
    id: int | str | None


ClientOp = Subscribe | Unsubscribe | Ping


class ProtocolError(Exception):
    """A client frame the server refuses; becomes an ``error`` frame, never a crash."""

    def __init__(self, code: ErrorCode, message: str, id: int | str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.id = id

    def frame(self) -> str:
        return error_frame(self.code, self.message, self.id)


# --- parsing -------------------------------------------------------------------------


def parse_client_frame(text: str | None, bytes_data: bytes | None = None, *, limits: Limits = Limits()) -> ClientOp:
    """Validate one client frame and return the operation it asks for.

    Raises ``ProtocolError`` with the most specific code for anything else.
    """
    if text is None:
        if bytes_data is not None and len(bytes_data) > limits.max_frame_bytes:
            raise ProtocolError(ErrorCode.FRAME_TOO_LARGE, f"frame exceeds {limits.max_frame_bytes} bytes")
        raise ProtocolError(ErrorCode.BAD_FRAME, "binary frames are not supported; send JSON text")
    if len(text) > limits.max_frame_bytes or len(text.encode("utf-8", "surrogatepass")) > limits.max_frame_bytes:
        raise ProtocolError(ErrorCode.FRAME_TOO_LARGE, f"frame exceeds {limits.max_frame_bytes} bytes")
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise ProtocolError(ErrorCode.BAD_FRAME, "frame is not valid JSON") from None
    if not isinstance(data, dict):
        raise ProtocolError(ErrorCode.BAD_FRAME, "frame must be a JSON object")
    op_id = _parse_id(data.get("id"))
    op = data.get("op")
    if not isinstance(op, str):
        raise ProtocolError(ErrorCode.BAD_FRAME, "'op' must be a string", op_id)
    if op == "ping":
        return Ping(id=op_id)
    if op == "subscribe":
        symbols = _parse_symbols(data.get("symbols"), op_id, limits)
        interval = data.get("interval", DEFAULT_INTERVAL)
        if interval not in INTERVALS:
            raise ProtocolError(ErrorCode.BAD_FRAME, f"'interval' must be one of {', '.join(INTERVALS)}", op_id)
        since = _parse_since(data.get("since"), op_id)
        return Subscribe(id=op_id, symbols=symbols, interval=interval, since=since)
    if op == "unsubscribe":
        return Unsubscribe(id=op_id, symbols=_parse_symbols(data.get("symbols"), op_id, limits))
    raise ProtocolError(ErrorCode.UNKNOWN_OP, f"unknown op {op[:32]!r}", op_id)


def _parse_id(raw: Any) -> int | str | None:
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, (int, str)):
        raise ProtocolError(ErrorCode.BAD_FRAME, "'id' must be an integer or a string")
    if isinstance(raw, str) and len(raw) > MAX_ID_LENGTH:
        raise ProtocolError(ErrorCode.BAD_FRAME, f"'id' is longer than {MAX_ID_LENGTH} characters")
    if isinstance(raw, int) and abs(raw) > 2**53:
        raise ProtocolError(ErrorCode.BAD_FRAME, "'id' is out of range")
    return raw


def _parse_symbols(raw: Any, op_id: int | str | None, limits: Limits) -> tuple[str, ...]:
    if not isinstance(raw, list) or not raw:
        raise ProtocolError(ErrorCode.BAD_FRAME, "'symbols' must be a non-empty list", op_id)
    if len(raw) > limits.max_symbols:
        raise ProtocolError(ErrorCode.TOO_MANY_SYMBOLS, f"at most {limits.max_symbols} symbols per connection", op_id)
    symbols: list[str] = []
    for item in raw:
        if not isinstance(item, str) or not SYMBOL_RE.match(item):
            raise ProtocolError(ErrorCode.BAD_FRAME, "each symbol must be an upper-case symbol code", op_id)
        if item not in symbols:
            symbols.append(item)
    return tuple(symbols)


def _parse_since(raw: Any, op_id: int | str | None) -> dict[str, Position]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ProtocolError(ErrorCode.BAD_FRAME, "'since' must be an object", op_id)
    since: dict[str, Position] = {}
    for symbol, pos in raw.items():
        if not SYMBOL_RE.match(symbol) or not isinstance(pos, dict):
            raise ProtocolError(ErrorCode.BAD_FRAME, "'since' maps symbols to {epoch, seq}", op_id)
        epoch, seq = pos.get("epoch"), pos.get("seq")
        if not isinstance(epoch, str) or isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
            raise ProtocolError(ErrorCode.BAD_FRAME, "'since' positions need a string epoch and seq >= 0", op_id)
        since[symbol] = Position(epoch=epoch[:64], seq=seq)
    return since


# --- building ------------------------------------------------------------------------


def _dumps(obj: Any) -> str:
    return orjson.dumps(obj).decode()


def hello_frame(*, server_time: int, heartbeat_ms: int, limits: Limits, symbols: Sequence[Mapping[str, Any]]) -> str:
    return _dumps(
        {
            "type": "hello",
            "protocol": PROTOCOL_VERSION,
            "server_time": server_time,
            "heartbeat_ms": heartbeat_ms,
            "limits": limits.to_wire(),
            "intervals": list(INTERVALS),
            "symbols": list(symbols),
        }
    )


def ack_frame(op_id: int | str | None, op: str, symbols: Sequence[str] = ()) -> str:
    frame: dict[str, Any] = {"type": "ack", "id": op_id, "op": op}
    if op != "ping":
        frame["symbols"] = list(symbols)
    return _dumps(frame)


def error_frame(code: ErrorCode, message: str, op_id: int | str | None = None, **extra: Any) -> str:
    return _dumps({"type": "error", "id": op_id, "code": str(code), "message": message, **extra})


def pong_frame(op_id: int | str | None, server_time: int) -> str:
    return _dumps({"type": "pong", "id": op_id, "server_time": server_time})


def heartbeat_frame(server_time: int) -> str:
    return _dumps({"type": "heartbeat", "server_time": server_time})


def symbols_frame(symbols: Sequence[Mapping[str, Any]]) -> str:
    return _dumps({"type": "symbols", "symbols": list(symbols)})


def snapshot_frame(
    *,
    symbol: str,
    epoch: str | None,
    seq: int,
    quote: Mapping[str, Any] | None,
    candles: Sequence[Mapping[str, Any]],
    status: str,
    interval: str,
    recovered: bool | None = None,
) -> str:
    frame: dict[str, Any] = {
        "type": "snapshot",
        "symbol": symbol,
        "epoch": epoch,
        "seq": seq,
        "quote": quote,
        "candles": list(candles),
        "interval": interval,
        "status": status,
    }
    if recovered is not None:
        frame["recovered"] = recovered
    return _dumps(frame)


def encode_ticks(ticks: Iterable[Mapping[str, Any]]) -> str:
    """Encode ticks once as comma-joined JSON objects: a piece of a ``ticks`` frame."""
    return ",".join(_dumps(t) for t in ticks)


def ticks_frame(pieces: Iterable[str], *, recovered: bool = False) -> str:
    """Join pre-encoded tick pieces into one frame without decoding them."""
    body = ",".join(pieces)
    if recovered:
        return '{"type":"ticks","recovered":true,"data":[' + body + "]}"
    return '{"type":"ticks","data":[' + body + "]}"


# --- abuse limits --------------------------------------------------------------------


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

    def __init__(self, limits: Limits, *, max_bad_frames: int = 10, bad_window: float = 10.0) -> None:
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


# --- subscriptions -------------------------------------------------------------------


@dataclass(frozen=True)
class BatchEntry:
    """One symbol's ticks of one producer window, already encoded."""

    epoch: str
    first_seq: int
    last_seq: int
    piece: str

    def to_wire(self) -> list[Any]:
        return [self.epoch, self.first_seq, self.last_seq, self.piece]

    @classmethod
    def from_wire(cls, raw: Sequence[Any]) -> BatchEntry:
        return cls(epoch=raw[0], first_seq=raw[1], last_seq=raw[2], piece=raw[3])


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

    def remove(self, symbol: str) -> bool:
        self._resync.discard(symbol)
        return self._positions.pop(symbol, None) is not None

    def position(self, symbol: str) -> tuple[str | None, int] | None:
        pos = self._positions.get(symbol)
        return (pos[0], pos[1]) if pos else None

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
