"""Wire protocol v1: parse client frames, build server frames, the producer's batch type.

Pure Python (orjson only): both consumers and the producer use it, and
``static/js/protocol.js`` mirrors it in the browser. docs/protocol.md is the spec.
Abuse policy (``dashboard.streams.guard``) and per-connection state
(``dashboard.streams.subscriptions``) live with the streams, not here.

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

from dashboard.market.candles import INTERVALS_MS

PROTOCOL_VERSION = 1
SYMBOL_PATTERN = r"[A-Z0-9][A-Z0-9.\-]{0,19}"
# Used with fullmatch only: an anchored ``$`` would also accept a trailing newline.
SYMBOL_RE = re.compile(SYMBOL_PATTERN)
INTERVALS = tuple(INTERVALS_MS)
DEFAULT_INTERVAL = "1m"
MAX_ID_LENGTH = 64
# Objects and lists a frame may hold beyond one per symbol: the frame, ``symbols``, ``since``,
# ``channels``.
MAX_EXTRA_CONTAINERS = 8


class Channel(StrEnum):
    """What a subscription carries of a symbol: its ticks, its order book, its trades."""

    TICKS = "ticks"
    DEPTH = "depth"
    TRADES = "trades"


DEFAULT_CHANNELS = frozenset({Channel.TICKS})
ALL_CHANNELS = frozenset(Channel)
DEFAULT_DEPTH_LEVELS = 20
MAX_DEPTH_LEVELS = 50


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
    SERVICE_RESTART = 1012
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
    max_depth_symbols: int = 10

    def to_wire(self) -> dict[str, int]:
        return {
            "max_frame_bytes": self.max_frame_bytes,
            "max_symbols": self.max_symbols,
            "max_client_frames_per_second": self.max_client_frames_per_second,
            "max_depth_symbols": self.max_depth_symbols,
            "max_depth_levels": MAX_DEPTH_LEVELS,
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
    channels: frozenset[Channel] = DEFAULT_CHANNELS
    depth_levels: int = DEFAULT_DEPTH_LEVELS


@dataclass(frozen=True)
class Unsubscribe:
    id: int | str | None
    symbols: tuple[str, ...]
    # Without ``channels`` an unsubscribe ends every channel of its symbols.
    channels: frozenset[Channel] = ALL_CHANNELS


@dataclass(frozen=True)
class Ping:
    id: int | str | None


ClientOp = Subscribe | Unsubscribe | Ping


class ProtocolError(Exception):
    """A client frame the server refuses; becomes an ``error`` frame, never a crash."""

    def __init__(self, code: ErrorCode, message: str, id: int | str | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.id = id
        self.extra = extra

    def frame(self) -> str:
        return error_frame(self.code, self.message, self.id, **self.extra)


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
    # Parsing costs by the objects a frame holds, not its bytes: 64 KiB of tiny objects takes
    # 20 times as long as one string. No request needs more than one per symbol and a few
    # more, so a frame with more is refused before it is parsed (a scan of its text).
    if text.count("{") + text.count("[") > limits.max_symbols + MAX_EXTRA_CONTAINERS:
        raise ProtocolError(ErrorCode.BAD_FRAME, "frame holds more objects and lists than any request needs")
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
        since = _parse_since(data.get("since"), op_id, symbols)
        channels = _parse_channels(data.get("channels"), op_id, DEFAULT_CHANNELS)
        levels = _parse_depth_levels(data.get("depth_levels", DEFAULT_DEPTH_LEVELS), op_id)
        return Subscribe(
            id=op_id, symbols=symbols, interval=interval, since=since, channels=channels, depth_levels=levels
        )
    if op == "unsubscribe":
        symbols = _parse_symbols(data.get("symbols"), op_id, limits)
        return Unsubscribe(
            id=op_id, symbols=symbols, channels=_parse_channels(data.get("channels"), op_id, ALL_CHANNELS)
        )
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
        if not isinstance(item, str) or not SYMBOL_RE.fullmatch(item):
            raise ProtocolError(ErrorCode.BAD_FRAME, "each symbol must be an upper-case symbol code", op_id)
        if item not in symbols:
            symbols.append(item)
    return tuple(symbols)


def _parse_channels(raw: Any, op_id: int | str | None, default: frozenset[Channel]) -> frozenset[Channel]:
    if raw is None:
        return default
    if not isinstance(raw, list) or not raw or len(raw) > len(ALL_CHANNELS):
        raise ProtocolError(ErrorCode.BAD_FRAME, "'channels' must be a non-empty list", op_id)
    if not all(isinstance(item, str) and item in ALL_CHANNELS for item in raw):
        raise ProtocolError(ErrorCode.BAD_FRAME, "'channels' may hold 'ticks', 'depth' and 'trades'", op_id)
    return frozenset(Channel(item) for item in raw)


def _parse_depth_levels(raw: Any, op_id: int | str | None) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or not 1 <= raw <= MAX_DEPTH_LEVELS:
        raise ProtocolError(
            ErrorCode.BAD_FRAME, f"'depth_levels' must be an integer from 1 to {MAX_DEPTH_LEVELS}", op_id
        )
    return raw


def _parse_since(raw: Any, op_id: int | str | None, symbols: tuple[str, ...]) -> dict[str, Position]:
    """The resume positions of a subscribe: only of its own ``symbols`` (so at most
    ``max_symbols`` of them), checked by size before any key is looked at."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ProtocolError(ErrorCode.BAD_FRAME, "'since' must be an object", op_id)
    if len(raw) > len(symbols):
        raise ProtocolError(ErrorCode.BAD_FRAME, "'since' names more symbols than 'symbols'", op_id)
    wanted = set(symbols)
    since: dict[str, Position] = {}
    for symbol, pos in raw.items():
        if symbol not in wanted:
            raise ProtocolError(ErrorCode.BAD_FRAME, "'since' names a symbol that 'symbols' does not", op_id)
        if not isinstance(pos, dict):
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
            # Lengths too, so the browser never keeps its own copy of the interval table.
            "interval_ms": dict(INTERVALS_MS),
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


def alert_frame(alert: Mapping[str, Any]) -> str:
    """A fired price alert, sent to every open stream of its owner.

    ``alert``: ``id``, ``symbol``, ``condition``, ``price`` (``above``/``below``; else null),
    ``triggered_price``, ``triggered_at`` (ms), and ``percent``/``minutes`` for ``rise``/``fall``.
    """
    return _dumps({"type": "alert", "alert": dict(alert)})


def encode_ticks(ticks: Iterable[Mapping[str, Any]]) -> str:
    """Encode ticks once as comma-joined JSON objects: a piece of a ``ticks`` frame."""
    return ",".join(_dumps(t) for t in ticks)


def ticks_frame(pieces: Iterable[str], *, recovered: bool = False) -> str:
    """Join pre-encoded tick pieces into one frame without decoding them."""
    body = ",".join(pieces)
    if recovered:
        return '{"type":"ticks","recovered":true,"data":[' + body + "]}"
    return '{"type":"ticks","data":[' + body + "]}"


# --- producer batches -------------------------------------------------------------------


# Fields of a batch entry's wire form, by position. The fan-out reads them for every
# symbol of every window, where a list index is what a dataclass attribute would cost
# to build; these names say which field each index is.
BATCH_EPOCH, BATCH_FIRST_SEQ, BATCH_LAST_SEQ, BATCH_PIECE = range(4)


@dataclass(frozen=True)
class BatchEntry:
    """One symbol's ticks of one producer window, already encoded.

    On the wire (``to_wire``) a list ``[epoch, first_seq, last_seq, piece]``, indexed by
    the ``BATCH_*`` constants.
    """

    epoch: str
    first_seq: int
    last_seq: int
    piece: str

    def to_wire(self) -> list[Any]:
        return [self.epoch, self.first_seq, self.last_seq, self.piece]

    @classmethod
    def from_wire(cls, raw: Sequence[Any]) -> BatchEntry:
        return cls(
            epoch=raw[BATCH_EPOCH], first_seq=raw[BATCH_FIRST_SEQ], last_seq=raw[BATCH_LAST_SEQ], piece=raw[BATCH_PIECE]
        )
