"""The pure protocol module: parsing with precise error codes, frame builders."""

from __future__ import annotations

import json

import pytest

from dashboard.market import protocol
from dashboard.market.protocol import (
    ErrorCode,
    Limits,
    Ping,
    Position,
    ProtocolError,
    Subscribe,
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
        # A trailing newline (that an anchored "$" lets through) is not part of any symbol code.
        ('{"op":"subscribe","id":1,"symbols":["AAA\\n"]}', ErrorCode.BAD_FRAME),
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


def test_since_may_name_only_the_subscribes_own_symbols() -> None:
    frame = '{"op":"subscribe","id":3,"symbols":["A"],"since":{"A":{"epoch":"e","seq":1},"B":{"epoch":"e","seq":1}}}'
    with pytest.raises(ProtocolError, match="more symbols") as err:
        parse_client_frame(frame)
    assert (err.value.code, err.value.id) == (ErrorCode.BAD_FRAME, 3)
    frame = '{"op":"subscribe","id":4,"symbols":["A","C"],"since":{"B":{"epoch":"e","seq":1}}}'
    with pytest.raises(ProtocolError, match="does not"):
        parse_client_frame(frame)


def test_a_bloated_since_is_refused_by_its_size_before_any_key_is_read() -> None:
    class Counting(dict):
        """A since that counts how often its keys are read."""

        reads = 0

        def items(self):
            Counting.reads += 1
            return super().items()

    bloat = Counting({f"X{i}": {"epoch": "e", "seq": 1} for i in range(2000)})
    with pytest.raises(ProtocolError, match="more symbols"):
        protocol._parse_since(bloat, 1, ("A",))
    assert Counting.reads == 0


def test_a_frame_of_more_objects_than_any_request_needs_is_refused_before_parsing(monkeypatch) -> None:
    def must_not_parse(text: str) -> None:
        raise AssertionError("parsed")

    monkeypatch.setattr(protocol.orjson, "loads", must_not_parse)
    nested = '{"op":"ping","id":1,"pad":' + "[" * 300 + "]" * 300 + "}"
    with pytest.raises(ProtocolError, match="more objects") as err:
        parse_client_frame(nested)
    assert err.value.code == ErrorCode.BAD_FRAME
    objects = '{"op":"ping","pad":[' + ",".join(["{}"] * 250) + "]}"
    with pytest.raises(ProtocolError, match="more objects"):
        parse_client_frame(objects, limits=protocol.Limits(max_symbols=200))


def test_a_subscribe_of_the_most_symbols_with_since_for_each_is_parsed() -> None:
    symbols = [f"S{i}" for i in range(200)]
    since = {s: {"epoch": "e", "seq": 1} for s in symbols}
    op = parse_client_frame(json.dumps({"op": "subscribe", "id": 1, "symbols": symbols, "since": since}))
    assert isinstance(op, Subscribe)
    assert len(op.since) == 200
