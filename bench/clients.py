"""The load-client processes of a scenario: what each is told to do, starting them, and what they print.

Each process runs ``bench/loadclient.py`` with a JSON spec (``client_specs``), reads
commands on stdin (``measure T0 T1``, ``stop``, ``await-back``, ``close``) and prints one
JSON line per event (``connected``, ``result``, ``back``, ``closed``). ``ClientGroup``
starts them in their own process groups and gathers those lines from a reader thread.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from pathlib import Path
from typing import Any

import orjson

from bench import plan
from bench.plan import Config, Scenario
from bench.procs import PYTHON, REPO, ManagedProcess, base_env
from bench.targets import Target

logger = logging.getLogger("bench")

# A dashboard's hello, ack and snapshots arrive within this of its handshake, or it has failed.
READY_TIMEOUT_S = 20.0
# A load client exits on its own this long after its scenario should be over (the orchestrator's
# deadlines come first; this only bounds a client whose orchestrator died).
LIFETIME_SLACK_S = 120
# Seconds ``close`` waits for the processes to report their sockets closed before stopping them.
CLOSE_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 5


def client_specs(config: Config, target: Target, scenario: Scenario) -> list[dict[str, Any]]:
    """One spec per load-client process: its URLs, dashboards, symbols, credentials and bounds."""
    procs = plan.client_procs(config, scenario.clients)
    if scenario.kind == "sync":
        urls = target.sync_urls(target.symbols[0], scenario.web_procs)
    else:
        urls = target.stream_urls(scenario.web_procs)
    mode = "stream" if scenario.kind in ("storm", "restart") else scenario.kind
    depth = mode == "depth"
    budget = plan.connect_budget(config, target.name)
    specs, first = [], 0
    for n in plan.split(scenario.clients, procs):
        specs.append(
            {
                "urls": urls,
                "mode": mode,
                "clients": n,
                "symbols": target.symbols[: scenario.per_client] if mode in ("stream", "depth") else [],
                "depth_symbols": target.symbols[: plan.DEPTH_SPREAD] if depth else [],
                "depth_levels": plan.DEPTH_LEVELS,
                "headers": target.headers(),
                "cookies": target.cookies(),
                "origin": target.origin(),
                "first_index": first,
                "concurrency": max(1, config.concurrency // procs),
                "connect_budget": budget,
                "ready_timeout": min(READY_TIMEOUT_S, budget),
                "max_seconds": budget + config.warmup + config.duration + LIFETIME_SLACK_S,
            }
        )
        first += n
    return specs


class ClientGroup:
    """The load-client processes of one scenario and the JSON lines they print."""

    def __init__(self, workdir: Path, label: str) -> None:
        self.workdir = workdir
        self.label = label
        self.processes: list[ManagedProcess] = []
        self.lines: queue.Queue[tuple[int, dict[str, Any]]] = queue.Queue()

    def spawn(self, specs: list[dict[str, Any]]) -> None:
        """Start one process per spec (numbered after those already started)."""
        slug = "".join(c if c.isalnum() else "-" for c in self.label)
        for spec in specs:
            index = len(self.processes)
            path = self.workdir / f"client-{slug}-{index}.json"
            path.write_bytes(orjson.dumps(spec))
            process = ManagedProcess(
                f"client{index}",
                [PYTHON, "-m", "bench.loadclient", str(path)],
                self.workdir / f"client-{slug}-{index}.log",
                REPO,
                base_env({"PYTHONPATH": str(REPO)}),
                stdin_pipe=True,
                stdout_pipe=True,
            ).start()
            self.processes.append(process)
            threading.Thread(target=self._read, args=(index, process), daemon=True).start()

    def _read(self, index: int, process: ManagedProcess) -> None:
        assert process.popen is not None
        assert process.popen.stdout is not None
        for raw in process.popen.stdout:
            with contextlib.suppress(ValueError):
                self.lines.put((index, orjson.loads(raw)))
        self.lines.put((index, {"event": "exit"}))

    def collect(self, event: str, indexes: set[int], timeout: float) -> dict[int, dict[str, Any]]:
        """Wait for ``event`` from each process in ``indexes`` (a process that exits counts as failed)."""
        got: dict[int, dict[str, Any]] = {}
        deadline = time.monotonic() + timeout
        pending = set(indexes)
        while pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                logger.warning("%s: no %r from load clients %s in %.0f s", self.label, event, sorted(pending), timeout)
                break
            try:
                index, line = self.lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line.get("event") == event and index in pending:
                got[index] = line
                pending.discard(index)
            elif line.get("event") == "exit" and index in pending:
                logger.warning("%s: load client %d exited early:\n%s", self.label, index, self.processes[index].tail())
                pending.discard(index)
        return got

    def send(self, command: str, indexes: set[int] | None = None) -> None:
        """Write ``command`` to the stdin of every process (or of those in ``indexes``)."""
        for i, process in enumerate(self.processes):
            if indexes is not None and i not in indexes:
                continue
            if process.popen is not None and process.popen.stdin is not None:
                with contextlib.suppress(OSError):
                    process.popen.stdin.write((command + "\n").encode())
                    process.popen.stdin.flush()

    def pids(self) -> dict[str, int]:
        """The live processes' pids by name (``client0``...), for the sampler."""
        return {p.name: p.pid for p in self.processes if p.alive()}

    def close(self, timeout: float = CLOSE_TIMEOUT_S) -> None:
        """Ask every process to close its sockets, wait (bounded), then stop them all."""
        self.send("close")
        self.collect("closed", {i for i, p in enumerate(self.processes) if p.alive()}, timeout)
        for process in self.processes:
            process.stop(timeout=STOP_TIMEOUT_S)
