"""The pure protocol module: parsing with precise error codes, frame builders, subscriptions."""

from __future__ import annotations

import json

import pytest

from dashboard import protocol
from dashboard.protocol import (
    ErrorCode,
    Limits,
    Ping,
    Position,
    ProtocolError,
    Subscribe,
    Subscriptions,
    Unsubscribe,
    encode_ticks,
    parse_client_frame,
    ticks_frame,
)


def tick(symbol: str, seq: int) -> dict:
    return {"symbol": symbol, "seq": seq, "ts": 1000 + seq, "price": 1.5, "bid": 1.4, "ask": 1.6, "volume": 3.0}


def error_of(text: str | None, bytes_data: bytes | None = None, limits: Limits | None = None) -> ProtocolError:
    with pytest.raises(ProtocolError) as caught:
        parse_client_frame(text, bytes_data, limits=limits or Limits())
    return caught.value


def test_parses_subscribe_with_since() -> None:
    op = parse_client_frame(
        '{"op":"subscribe","id":7,"symbols":["AAPL","BTC-USD","AAPL"],"interval":"5m",'
        '"since":{"AAPL":{"epoch":"e1","seq":12}}}'
    )
    assert op == Subscribe(id=7, symbols=("AAPL", "BTC-USD"), interval="5m", since={"AAPL": Position("e1", 12)})


def test_parses_unsubscribe_and_ping() -> None:
    assert parse_client_frame('{"op":"unsubscribe","id":"a","symbols":["X"]}') == Unsubscribe(id="a", symbols=("X",))
    assert parse_client_frame('{"op":"ping","id":9}') == Ping(id=9)
    assert parse_client_frame('{"op":"ping"}') == Ping(id=None)


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("not json", ErrorCode.BAD_FRAME),
        ("[1,2]", ErrorCode.BAD_FRAME),
        ('{"id":1}', ErrorCode.BAD_FRAME),
        ('{"op":5}', ErrorCode.BAD_FRAME),
        ('{"op":"ping","id":true}', ErrorCode.BAD_FRAME),
        ('{"op":"ping","id":{"a":1}}', ErrorCode.BAD_FRAME),
        ('{"op":"ping","id":1e400}', ErrorCode.BAD_FRAME),
        ('{"op":"subscribe","id":1}', ErrorCode.BAD_FRAME),
        ('{"op":"subscribe","id":1,"symbols":[]}', ErrorCode.BAD_FRAME),
        ('{"op":"subscribe","id":1,"symbols":["aapl"]}', ErrorCode.BAD_FRAME),
        ('{"op":"subscribe","id":1,"symbols":[1]}', ErrorCode.BAD_FRAME),
        ('{"op":"subscribe","id":1,"symbols":["A"],"interval":"7m"}', ErrorCode.BAD_FRAME),
        ('{"op":"subscribe","id":1,"symbols":["A"],"since":{"A":{"epoch":1,"seq":2}}}', ErrorCode.BAD_FRAME),
        ('{"op":"subscribe","id":1,"symbols":["A"],"since":{"A":{"epoch":"e","seq":-1}}}', ErrorCode.BAD_FRAME),
        ('{"op":"dance","id":1}', ErrorCode.UNKNOWN_OP),
    ],
)
def test_bad_frames_get_precise_codes(frame: str, code: ErrorCode) -> None:
    assert error_of(frame).code == code


def test_error_keeps_the_request_id() -> None:
    assert error_of('{"op":"dance","id":42}').id == 42


def test_binary_frames_are_refused() -> None:
    assert error_of(None, b"\x00\x01").code == ErrorCode.BAD_FRAME


def test_frame_size_limit() -> None:
    limits = Limits(max_frame_bytes=1024)
    big = json.dumps({"op": "ping", "pad": "x" * 2000})
    assert error_of(big, limits=limits).code == ErrorCode.FRAME_TOO_LARGE
    assert error_of(None, b"x" * 2000, limits=limits).code == ErrorCode.FRAME_TOO_LARGE


def test_symbols_per_request_limit() -> None:
    limits = Limits(max_symbols=2)
    assert error_of('{"op":"subscribe","symbols":["A","B","C"]}', limits=limits).code == ErrorCode.TOO_MANY_SYMBOLS


def test_error_frame_shape() -> None:
    frame = json.loads(ProtocolError(ErrorCode.UNKNOWN_OP, "nope", 3).frame())
    assert frame == {"type": "error", "id": 3, "code": "unknown_op", "message": "nope"}


def test_ticks_frame_joins_pre_encoded_pieces() -> None:
    pieces = [encode_ticks([tick("A", 1), tick("A", 2)]), encode_ticks([tick("B", 5)])]
    frame = json.loads(ticks_frame(pieces))
    assert frame["type"] == "ticks"
    assert [(t["symbol"], t["seq"]) for t in frame["data"]] == [("A", 1), ("A", 2), ("B", 5)]
    assert json.loads(ticks_frame(pieces, recovered=True))["recovered"] is True


def test_hello_frame() -> None:
    frame = json.loads(
        protocol.hello_frame(server_time=5, heartbeat_ms=5000, limits=Limits(), symbols=[{"symbol": "A"}])
    )
    assert frame["type"] == "hello"
    assert frame["protocol"] == 1
    assert frame["limits"]["max_frame_bytes"] == 64 * 1024
    assert frame["symbols"] == [{"symbol": "A"}]


def entry(epoch: str, first: int, last: int, symbol: str = "A") -> list:
    return [epoch, first, last, encode_ticks([tick(symbol, s) for s in range(first, last + 1)])]


def seqs(pieces: list[str]) -> list[int]:
    return [t["seq"] for t in json.loads(ticks_frame(pieces))["data"]]


def test_subscriptions_skip_what_the_snapshot_covered() -> None:
    subs = Subscriptions()
    subs.add("A", "e1", 10)
    assert subs.select({"A": entry("e1", 8, 10)}) == []
    assert seqs(subs.select({"A": entry("e1", 9, 12)})) == [11, 12]
    assert seqs(subs.select({"A": entry("e1", 13, 14)})) == [13, 14]
    assert subs.position("A") == ("e1", 14)


def test_subscriptions_ignore_unsubscribed_symbols() -> None:
    subs = Subscriptions()
    subs.add("A", "e1", 0)
    assert seqs(subs.select({"A": entry("e1", 1, 1), "B": entry("e1", 1, 1, "B")})) == [1]
    subs.remove("A")
    assert subs.select({"A": entry("e1", 2, 2)}) == []


def test_a_new_epoch_asks_for_a_fresh_snapshot_instead_of_ticks() -> None:
    subs = Subscriptions()
    subs.add("A", "e1", 100)
    assert subs.select({"A": entry("e2", 1, 2)}) == []
    assert subs.select({"A": entry("e2", 3, 3)}) == [], "nothing until the snapshot is sent"
    assert subs.take_resync() == ["A"]
    assert subs.take_resync() == []
    subs.add("A", "e2", 3)
    assert seqs(subs.select({"A": entry("e2", 3, 4)})) == [4]


def test_subscription_made_before_the_series_started_gets_a_snapshot_of_it() -> None:
    subs = Subscriptions()
    subs.add("A", None, 0)
    assert subs.select({"A": entry("e1", 1, 3)}) == []
    assert subs.take_resync() == ["A"]


def test_guard_admits_the_rate_refuses_over_it_and_closes_a_flood() -> None:
    guard = protocol.ClientGuard(Limits(max_client_frames_per_second=5))
    verdicts = [guard.admit(0.0) for _ in range(5)]
    assert verdicts == [protocol.Verdict.ACCEPT] * 5
    assert guard.admit(0.01) == protocol.Verdict.REFUSE
    assert guard.should_report_refusal()
    assert guard.admit(0.02) == protocol.Verdict.REFUSE
    assert not guard.should_report_refusal()
    assert guard.admit(0.25) == protocol.Verdict.ACCEPT, "tokens refill at the rate"
    verdicts = [guard.admit(0.3) for _ in range(6)]
    assert verdicts[-1] == protocol.Verdict.CLOSE


def test_guard_closes_after_too_many_bad_frames_in_the_window() -> None:
    guard = protocol.ClientGuard(Limits(), max_bad_frames=3, bad_window=10.0)
    assert [guard.bad_frame(t) for t in (0, 1, 2)] == [protocol.Verdict.REFUSE] * 3
    assert guard.bad_frame(20.0) == protocol.Verdict.REFUSE, "old bad frames age out"
    assert guard.bad_frame(21.0) == protocol.Verdict.REFUSE
    assert guard.bad_frame(22.0) == protocol.Verdict.REFUSE
    assert guard.bad_frame(23.0) == protocol.Verdict.CLOSE
