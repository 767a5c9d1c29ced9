"""examples/stream_client.py: its gap logic and order book, and the script itself against the
live stack (token auth, ticks, a web restart survived by resuming, its ``--depth`` book right
and rebuilt across one, a revoked token ending it, ``--cafile`` through the shipped HAProxy
with TLS), and that ``examples/requirements.txt`` is all it needs."""

from __future__ import annotations

import ast
import importlib.util
import logging
import os
import queue
import re
import shutil
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest

from tests.e2e.api_tokens import create_token, revoke_token
from tests.e2e.deploy_files import haproxy_config
from tests.e2e.stack import ROOT, Process, Stack, answers
from tests.e2e.tls import self_signed
from tests.waiting import wait_until
from ticker.embedded_redis import free_port

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


# --- The order book (``--depth``), frame by frame ---------------------------------------


def depth_frame(U: int, u: int, bids=(), asks=(), epoch: str = "e1", symbol: str = "AAA") -> dict:
    return {"type": "depth", "symbol": symbol, "epoch": epoch, "U": U, "u": u, "ts": 0, "bids": bids, "asks": asks}


def test_the_order_book_sets_and_removes_levels_and_refuses_a_gap_or_another_epoch() -> None:
    client = load_client()
    book = client.OrderBook(levels=3)
    assert not book.ready
    assert book.apply(depth_frame(1, 1)) == client.WAITING
    book.snapshot(
        {"type": "depth_snapshot", "symbol": "AAA", "epoch": "e1", "u": 10,
         "bids": [[9.9, 1.0], [9.8, 2.0]], "asks": [[10.1, 1.0], [10.2, 3.0]]}
    )  # fmt: skip
    assert (book.best_bid, book.best_ask, book.u) == (9.9, 10.1, 10)
    # 9.9 removed, 9.95 enters on top, 10.1 resized, 10.3 enters below.
    outcome = book.apply(depth_frame(11, 13, bids=[[9.9, 0.0], [9.95, 4.0]], asks=[[10.1, 5.0], [10.3, 1.0]]))
    assert outcome == client.APPLIED
    assert book.bids == {9.95: 4.0, 9.8: 2.0}
    assert book.asks == {10.1: 5.0, 10.2: 3.0, 10.3: 1.0}
    assert (book.best_bid, book.best_ask, book.u) == (9.95, 10.1, 13)
    assert round(book.spread, 6) == 0.15
    assert book.problems((9.95, 10.1)) == []
    assert book.problems(None) == []
    [problem] = book.problems((9.9, 10.1))
    assert "last tick's bid=9.9" in problem
    book.apply(depth_frame(14, 14, asks=[[10.4, 1.0]]))
    assert book.problems(None) == ["levels=2/4 over 3"]
    book.apply(depth_frame(15, 15, bids=[[10.2, 1.0]], asks=[[10.4, 0.0]]))
    assert book.problems(None) == ["crossed bid=10.2 ask=10.1"]

    # A frame that does not continue ``u`` drops the book: frames are ignored until a snapshot.
    assert book.apply(depth_frame(17, 18)) == client.GAP
    assert not book.ready
    assert (book.bids, book.asks, book.best_bid, book.spread) == ({}, {}, None, None)
    assert book.apply(depth_frame(19, 19)) == client.WAITING
    book.snapshot({"type": "depth_snapshot", "symbol": "AAA", "epoch": "e1", "u": 20, "bids": [[9.0, 1.0]], "asks": []})
    assert book.apply(depth_frame(21, 21, epoch="e2")) == client.NEW_EPOCH
    assert not book.ready


def test_depth_subscribes_with_the_book_and_a_gap_resubscribes_depth_only(capsys) -> None:
    client = load_client()
    state = client.StreamState(symbols=["AAA"], depth_levels=5)
    assert state.on_connect() == [
        {"op": "subscribe", "id": 1, "symbols": ["AAA"], "interval": "1m",
         "channels": ["ticks", "depth", "trades"], "depth_levels": 5}
    ]  # fmt: skip
    state.handle({"type": "ack", "id": 1, "op": "subscribe", "symbols": ["AAA"]})
    state.handle(
        {
            "type": "snapshot",
            "symbol": "AAA",
            "epoch": "e1",
            "seq": 7,
            "quote": {"price": 10.0, "bid": 9.9, "ask": 10.1},
        }
    )
    state.handle({"type": "ticks", "data": [{"symbol": "AAA", "seq": 8, "price": 10.0, "bid": 9.95, "ask": 10.1}]})
    snapshot = {"type": "depth_snapshot", "symbol": "AAA", "epoch": "e1", "u": 40,
                "bids": [[9.95, 1.0], [9.9, 2.0]], "asks": [[10.1, 1.0]]}  # fmt: skip
    assert state.handle(snapshot) == []
    state.handle({"type": "ticks", "data": [{"symbol": "AAA", "seq": 9, "price": 10.0, "bid": 9.9, "ask": 10.1}]})
    assert state.handle(depth_frame(41, 42, bids=[[9.95, 0.0]])) == []
    state.handle(
        {"type": "trades", "data": [{"symbol": "AAA", "epoch": "e1", "id": 3, "ts": 0, "price": 10.1, "size": 2.0,
                                     "side": "buy"}]}
    )  # fmt: skip
    # A lost depth frame: depth again for that symbol only, its ticks untouched.
    assert state.handle(depth_frame(45, 46, bids=[[9.8, 1.0]])) == [
        {"op": "subscribe", "id": 2, "symbols": ["AAA"], "channels": ["depth"], "depth_levels": 5}
    ]
    assert list(state.awaiting) == []
    # Frames of the old copy still on the way are ignored; the fresh snapshot rebuilds the book.
    assert state.handle(depth_frame(47, 47, bids=[[9.7, 1.0]])) == []
    state.handle({"type": "ack", "id": 2, "op": "subscribe", "symbols": ["AAA"]})
    state.handle({**snapshot, "u": 50, "bids": [[9.9, 2.0]]})
    assert state.books["AAA"].bids == {9.9: 2.0}
    assert state.handle(depth_frame(51, 51, asks=[[10.2, 1.0]])) == []
    # A tick gap resubscribes its ticks with ``since``, not the book.
    [resume] = state.handle({"type": "ticks", "data": [{"symbol": "AAA", "seq": 12, "price": 1, "bid": 1, "ask": 2}]})
    assert "channels" not in resume
    assert resume["since"] == {"AAA": {"epoch": "e1", "seq": 9}}
    lines = capsys.readouterr().out.splitlines()
    assert [line for line in lines if not line.startswith(("snapshot ", "tick ", "gap "))] == [
        "depth_snapshot AAA epoch=e1 u=40 bid=9.95 ask=10.1 spread=0.15000000 levels=2/1",
        "book AAA u=42 bid=9.9 ask=10.1 spread=0.20000000 levels=1/1",
        "trade AAA id=3 buy 2.0 @ 10.1",
        "depth gap AAA expected U=43 got U=45 -> resubscribe depth",
        "depth_snapshot AAA epoch=e1 u=50 bid=9.9 ask=10.1 spread=0.20000000 levels=1/1",
        "book AAA u=51 bid=9.9 ask=10.1 spread=0.20000000 levels=1/2",
    ]
    assert state.depth.summary() == "depth ok: 2 updates, 2 snapshots, 1 gaps, 4 checked, 1 trades"


def test_the_book_is_checked_against_the_last_tick_only_while_the_ticks_are_current(capsys) -> None:
    client = load_client()
    state = client.StreamState(symbols=["AAA"], depth_levels=5)
    state.handle({"type": "hello", "protocol": 1, "heartbeat_ms": 5000, "symbols": [{"symbol": "AAA", "precision": 2}]})
    state.on_connect()
    state.handle(
        {"type": "snapshot", "symbol": "AAA", "epoch": "e1", "seq": 1, "quote": {"price": 1, "bid": 1.0, "ask": 1.2}}
    )
    state.handle(
        {"type": "depth_snapshot", "symbol": "AAA", "epoch": "e1", "u": 1, "bids": [[1.0, 1.0]], "asks": [[1.2, 1.0]]}
    )
    # The book moved but the tick that moved it was not applied: inconsistent.
    state.handle(depth_frame(2, 2, bids=[[1.0, 0.0], [1.1, 1.0]]))
    assert state.depth.inconsistent == 1
    assert capsys.readouterr().out.splitlines()[-1] == (
        "depth inconsistent AAA u=2: top bid=1.1 ask=1.2 but the last tick's bid=1.0 ask=1.2"
    )
    # While a resume is on the way the last tick is not known: not compared, nor counted.
    state.on_connect()
    state.handle(
        {"type": "depth_snapshot", "symbol": "AAA", "epoch": "e1", "u": 5, "bids": [[1.1, 1.0]], "asks": [[1.3, 1.0]]}
    )
    state.handle(
        {
            "type": "ticks",
            "recovered": True,
            "data": [{"symbol": "AAA", "seq": 2, "price": 1.2, "bid": 1.1, "ask": 1.3}],
        }
    )
    # Nor is a book of a new epoch whose ticks' snapshot has not come yet.
    state.handle(
        {"type": "depth_snapshot", "symbol": "AAA", "epoch": "e2", "u": 1, "bids": [[5.0, 1.0]], "asks": [[5.1, 1.0]]}
    )
    assert state.depth.inconsistent == 1
    assert state.depth.summary() == "depth FAILED: 1 inconsistent, 1 updates, 3 snapshots, 0 gaps, 2 checked, 0 trades"
    assert capsys.readouterr().out.splitlines()[-1].endswith("spread=0.10 levels=1/1")


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

    def _run(token: str, *options: str, url: str = stack_logs.ws_url) -> Lines:
        env = {**os.environ, "TICKER_TOKEN": token, "PYTHONUNBUFFERED": "1"}
        # Only --cafile may make a private CA trusted (a CA bundle from the environment would too).
        env.pop("SSL_CERT_FILE", None)
        env.pop("SSL_CERT_DIR", None)
        process = subprocess.Popen(
            [sys.executable, str(SCRIPT), "--url", url, *options, *SYMBOLS],
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
def test_the_example_clients_book_stays_right_and_is_rebuilt_across_a_web_restart(
    stack_logs: Stack, run_client
) -> None:
    _, token = create_token(stack_logs.session(), "example client depth")
    out = run_client(token, "--depth", "--depth-levels", "10")
    out.until(lambda line: line.startswith("connected "), 30, "the hello")

    def books_built(start: int, what: str) -> None:
        """Wait until every symbol's output since line ``start`` has a depth_snapshot, then 5 book updates."""

        def built() -> bool:
            lines = out.seen[start:]
            for symbol in SYMBOLS:
                snapshots = [i for i, line in enumerate(lines) if line.startswith(f"depth_snapshot {symbol} ")]
                if not snapshots or sum(line.startswith(f"book {symbol} ") for line in lines[snapshots[0] :]) < 5:
                    return False
            return True

        if not built():
            out.until(lambda _: built(), 30, f"a depth_snapshot then 5 book updates of each symbol ({what})")

    books_built(0, "first")
    out.until(lambda line: line.startswith("trade "), 15, "a trade")

    stack_logs.kill_web()
    out.until(lambda line: line.startswith("disconnected "), 30, "the client to notice the dead server")
    restart_at = len(out.seen)
    stack_logs.start_web()
    out.until(lambda line: line.startswith("connected "), 60, "the client to reconnect")
    books_built(restart_at, "after the restart")

    out.process.send_signal(signal.SIGINT)
    summary = out.until(lambda line: line.startswith(("depth ok:", "depth FAILED:")), 15, "the depth summary")
    assert out.process.wait(10) == 0, summary
    after = out.seen[restart_at:]
    logger.info("%s; the client's output after the web restart:\n%s", summary, "\n".join(after[:12]))
    assert not [line for line in out.seen if line.startswith(("depth inconsistent", "depth gap"))], summary
    # Ticks resumed from where they were; the book was rebuilt from the new connection's snapshot.
    for symbol in SYMBOLS:
        assert [line for line in after if line.startswith(f"resumed {symbol} ")], after[:20]
        assert [line for line in after if line.startswith(f"depth_snapshot {symbol} ")], after[:20]
    assert not [line for line in after if line.startswith("snapshot ")], after[:20]
    match = re.fullmatch(r"depth ok: (\d+) updates, (\d+) snapshots, 0 gaps, (\d+) checked, (\d+) trades", summary)
    assert match, summary
    updates, snapshots, checked, trades = map(int, match.groups())
    assert updates >= 4 * len(SYMBOLS)
    assert snapshots >= 2 * len(SYMBOLS)
    # The top was compared with the last tick's for every update: a book is only fed once its
    # symbol's resume was answered (the server holds the windows until then).
    assert checked >= updates, summary
    assert updates == len([line for line in out.seen if line.startswith("book ")])
    assert trades == len([line for line in out.seen if line.startswith("trade ")]) > 0


@pytest.mark.e2e
def test_revoking_the_token_ends_the_example_client(stack_logs: Stack, run_client) -> None:
    session = stack_logs.session()
    token_id, token = create_token(session, "to revoke")
    out = run_client(token)
    out.until(lambda line: line.startswith("tick "), 30, "ticks")
    revoke_token(session, token_id)
    out.until(lambda line: line.startswith("closed code=4401"), 15, "the 4401 close")
    assert out.process.wait(10) == 2


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_the_example_client_ends_with_its_summary_on_sigint_or_sigterm_even_if_started_ignoring_sigint(
    signum: int,
) -> None:
    """A shell's background job, and some CI runners, start a program with SIGINT ignored, and
    asyncio.run then installs no Ctrl-C handler: the client handles both signals itself."""
    env = {**os.environ, "TICKER_TOKEN": "unused", "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, str(SCRIPT), "--url", f"ws://127.0.0.1:{free_port()}", "--depth", "AAPL"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    try:
        out = Lines(process)
        out.until(lambda line: line.startswith("connect failed "), 15, "a refused connect")
        process.send_signal(signum)
        out.until(lambda line: line.startswith("depth ok:"), 10, "the depth summary")
        assert process.wait(10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_the_example_client_needs_only_the_standard_library_and_its_requirements() -> None:
    """``python -m pip install -r examples/requirements.txt`` is all it needs: every import is
    the standard library's or a package that file names."""
    required = {
        re.split(r"[<>=!~ \[]", line, maxsplit=1)[0].strip().lower()
        for line in (ROOT / "examples" / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    }
    assert required == {"websockets"}
    imported = set()
    for node in ast.walk(ast.parse(SCRIPT.read_text())):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            imported.add(node.module.split(".")[0])
    assert imported - sys.stdlib_module_names - {"__future__"} == required
    command = "python -m pip install -r examples/requirements.txt"
    for document in (SCRIPT, ROOT / "README.md", ROOT / "docs" / "protocol.md", ROOT / "examples" / "requirements.txt"):
        assert command in document.read_text(), f"{document.name} gives the install command"


@pytest.mark.e2e
def test_the_example_client_verifies_tls_against_its_cafile(stack_logs: Stack, run_client, tmp_path: Path) -> None:
    """Through deploy/haproxy/haproxy.cfg with a self-signed certificate: refused without
    ``--cafile`` (exit 3 at once, not retried), streaming with it."""
    pem, _ = self_signed(tmp_path / "tls")
    cafile = tmp_path / "ca.pem"
    certificate = pem.read_text().split("-----END CERTIFICATE-----")[0] + "-----END CERTIFICATE-----\n"
    cafile.write_text(certificate)
    port = free_port()
    config = tmp_path / "haproxy.cfg"
    web = stack_logs.web_port
    config.write_text(haproxy_config(free_port(), port, pem, [web, web], tmp_path / "haproxy"))
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    balancer = Process("haproxy", [haproxy, "-f", str(config), "-db"], tmp_path / "haproxy.log")
    balancer.start({"PATH": "/usr/sbin:/usr/bin:/bin"})
    try:
        context = ssl.create_default_context(cafile=str(cafile))
        wait_until(lambda: answers(f"https://127.0.0.1:{port}/healthz", context), 30, "HAProxy with TLS")
        _, token = create_token(stack_logs.session(), "example client tls")
        url = f"wss://127.0.0.1:{port}"
        refused = run_client(token, url=url)
        line = refused.until(lambda line: line.startswith("tls failed:"), 30, "the refused certificate")
        assert "certificate verify failed" in line or "self-signed" in line or "self signed" in line, line
        assert refused.process.wait(10) == 3
        trusted = run_client(token, "--cafile", str(cafile), url=url)
        trusted.until(lambda line: line.startswith("connected "), 30, "the hello over TLS")
        for symbol in SYMBOLS:
            trusted.until(lambda line, s=symbol: line.startswith(f"tick {s} "), 15, f"{symbol} ticks over TLS")
    finally:
        balancer.stop()
