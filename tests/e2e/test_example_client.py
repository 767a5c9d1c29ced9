"""examples/stream_client.py: its gap logic, and the script itself against the live stack
(token auth, ticks, a web restart survived by resuming, a revoked token ending it)."""

from __future__ import annotations

import importlib.util
import logging
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest

from tests.e2e.api_tokens import create_token, revoke_token
from tests.e2e.stack import ROOT, Stack

SCRIPT = ROOT / "examples" / "stream_client.py"
logger = logging.getLogger(__name__)
SYMBOLS = ["AAPL", "BTC-USD"]


def load_client() -> ModuleType:
    spec = importlib.util.spec_from_file_location("stream_client", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["stream_client"] = module  # dataclasses resolve annotations through it
    spec.loader.exec_module(module)
    return module


# --- The client's logic, frame by frame -------------------------------------------------


def test_a_gap_resubscribes_with_since_and_the_recovery_fills_it(capsys) -> None:
    client = load_client()
    state = client.StreamState(symbols=["AAA"])
    assert state.on_connect() == [{"op": "subscribe", "id": 1, "symbols": ["AAA"], "interval": "1m"}]
    state.handle({"type": "snapshot", "symbol": "AAA", "epoch": "e1", "seq": 10, "quote": {"price": 1.0}})
    assert state.handle({"type": "ticks", "data": [{"symbol": "AAA", "seq": 11, "price": 1.1}]}) == []
    # 12 and 13 were lost: the client asks for what follows 11.
    replies = state.handle({"type": "ticks", "data": [{"symbol": "AAA", "seq": 14, "price": 1.4}]})
    assert replies == [
        {"op": "subscribe", "id": 2, "symbols": ["AAA"], "interval": "1m", "since": {"AAA": {"epoch": "e1", "seq": 11}}}
    ]
    # Live ticks racing the answer are left to it.
    assert state.handle({"type": "ticks", "data": [{"symbol": "AAA", "seq": 15, "price": 1.5}]}) == []
    recovered = [{"symbol": "AAA", "seq": s, "price": 1.0} for s in (12, 13, 14, 15)]
    state.handle({"type": "ticks", "recovered": True, "data": recovered})
    assert state.positions["AAA"] == ("e1", 15)
    state.handle(
        {
            "type": "ticks",
            "data": [{"symbol": "AAA", "seq": 15, "price": 1.5}, {"symbol": "AAA", "seq": 16, "price": 1.6}],
        }
    )
    lines = capsys.readouterr().out.splitlines()
    assert lines[-3:] == [
        "gap AAA expected=12 got=14 -> resubscribe since 11",
        "resumed AAA ticks=4 seq=15",
        "tick AAA seq=16 price=1.6",
    ]


def test_a_reconnect_resumes_every_started_series() -> None:
    client = load_client()
    state = client.StreamState(symbols=["AAA", "NEW"])
    state.on_connect()
    state.handle({"type": "snapshot", "symbol": "AAA", "epoch": "e1", "seq": 3, "quote": None})
    state.handle({"type": "snapshot", "symbol": "NEW", "epoch": None, "seq": 0, "quote": None})
    [frame] = state.on_connect()
    assert frame["since"] == {"AAA": {"epoch": "e1", "seq": 3}}
    # An empty recovery (nothing missed) still answers its symbol.
    state.handle({"type": "ticks", "recovered": True, "data": []})
    assert list(state.awaiting) == ["NEW"]


def test_backoff_grows_with_full_jitter_up_to_its_cap() -> None:
    client = load_client()
    backoff = client.Backoff(base=0.25, cap=5.0)
    delays = [backoff.next() for _ in range(12)]
    assert all(0 <= d <= min(5.0, 0.25 * 2**i) for i, d in enumerate(delays))
    assert len(set(delays)) == len(delays)  # jittered, not a fixed schedule
    backoff.reset()
    assert backoff.next() <= 0.25


# --- The script against the live stack ---------------------------------------------------


class Lines:
    """The client's stdout, line by line, read on a thread so the test can wait with deadlines."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.seen: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def until(self, predicate: Callable[[str], bool], timeout: float, what: str) -> str:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {what} within {timeout} s; last lines: {self.seen[-15:]}")
            try:
                line = self._queue.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"the client exited ({self.process.wait()}) before {what}: {self.seen[-15:]}")
            self.seen.append(line)
            if predicate(line):
                return line


@pytest.fixture
def run_client(stack_logs: Stack, tmp_path: Path) -> Iterator[Callable[[str], Lines]]:
    started: list[subprocess.Popen[str]] = []

    def _run(token: str) -> Lines:
        env = {**os.environ, "TICKER_TOKEN": token, "PYTHONUNBUFFERED": "1"}
        process = subprocess.Popen(
            [sys.executable, str(SCRIPT), "--url", stack_logs.ws_url, *SYMBOLS],
            env=env,
            stdout=subprocess.PIPE,
            stderr=(tmp_path / "client.log").open("w"),
            text=True,
        )
        started.append(process)
        return Lines(process)

    yield _run
    for process in started:
        if process.poll() is None:
            process.terminate()
            process.wait(10)


def tick_seqs(lines: list[str], symbol: str) -> list[int]:
    return [int(line.split()[2].removeprefix("seq=")) for line in lines if line.startswith(f"tick {symbol} ")]


@pytest.mark.e2e
def test_the_example_client_streams_survives_a_web_restart_and_resumes(stack_logs: Stack, run_client) -> None:
    _, token = create_token(stack_logs.session(), "example client")
    out = run_client(token)
    out.until(lambda line: line.startswith("connected "), 30, "the hello")
    for symbol in SYMBOLS:
        out.until(lambda line, s=symbol: line.startswith(f"snapshot {s} "), 15, f"the {symbol} snapshot")
    for symbol in SYMBOLS:
        out.until(lambda line, s=symbol: line.startswith(f"tick {s} "), 15, f"{symbol} ticks")

    stack_logs.kill_web()
    out.until(lambda line: line.startswith("disconnected "), 30, "the client to notice the dead server")
    restart_at = len(out.seen)
    stack_logs.start_web()
    out.until(lambda line: line.startswith("connected "), 60, "the client to reconnect")
    for symbol in SYMBOLS:
        out.until(lambda line, s=symbol: line.startswith(f"resumed {s} "), 15, f"{symbol} resumed")
    for symbol in SYMBOLS:
        seq_after = tick_seqs(out.seen, symbol)[-1] if tick_seqs(out.seen, symbol) else 0
        out.until(
            lambda line, s=symbol, q=seq_after: line.startswith(f"tick {s} ") and int(line.split()[2][4:]) > q,
            15,
            f"live {symbol} ticks after the resume",
        )

    after = out.seen[restart_at:]
    logger.info(
        "the client's output around the web restart:\n%s", "\n".join(out.seen[restart_at - 4 : restart_at + 12])
    )
    # The gap was still held: resumed from its ticks, never a fresh snapshot.
    assert not [line for line in after if line.startswith("snapshot ")], after
    for symbol in SYMBOLS:
        seqs = tick_seqs(out.seen, symbol)
        resumed = [line for line in out.seen if line.startswith(f"resumed {symbol} ")]
        # Every seq applied exactly once, in order: live ticks plus the recovered runs.
        recovered = sum(int(line.split()[2].removeprefix("ticks=")) for line in resumed)
        assert len(seqs) + recovered == seqs[-1] - seqs[0] + 1, (symbol, seqs, resumed)
        assert seqs == sorted(set(seqs))


@pytest.mark.e2e
def test_revoking_the_token_ends_the_example_client(stack_logs: Stack, run_client) -> None:
    session = stack_logs.session()
    token_id, token = create_token(session, "to revoke")
    out = run_client(token)
    out.until(lambda line: line.startswith("tick "), 30, "ticks")
    revoke_token(session, token_id)
    out.until(lambda line: line.startswith("closed code=4401"), 15, "the 4401 close")
    assert out.process.wait(10) == 2
