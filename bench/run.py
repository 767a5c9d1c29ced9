"""The orchestrator of ``make bench``: start each server, run the load client against it, report.

For every target (Ticker, the floor, the naive tutorial pattern) it starts the whole
server on 127.0.0.1, then runs the scenarios in order: idle connections (memory per
connection, measured on a fresh server), then dashboards x symbols at each producer
rate, the depth scenario (every symbol's ticks plus one symbol's depth and trades; Ticker
and the floor), then (Ticker) the sync single-symbol endpoint, the two storms and the fan-out on
two Daphne processes. Every scenario is bounded: connect budget, warm-up, measurement
window, result deadline; the whole run has a deadline too. Everything started is
stopped in ``finally`` blocks, by process group.

The jobs live beside this module: ``plan`` (what to run), ``targets`` and ``procs`` (the
servers and processes), ``clients`` (the load clients), ``scenarios`` and ``storms``
(each scenario), ``results`` (the maths), ``report``, ``charts`` and ``output`` (the record).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from bench import output, plan, report, scenarios, storms
from bench.clients import ClientGroup
from bench.plan import Config, Scenario, parse_args
from bench.procs import REPO, machine_busy, raise_nofile_limit
from bench.scenarios import RunContext
from bench.targets import FloorTarget, NaiveTarget, Target, TickerTarget

logger = logging.getLogger("bench")

# A target is not started with less than this left before the run's deadline.
TARGET_MIN_S = 60
# Beyond half its connect budget, warm-up and window, a scenario needs about this much more.
SCENARIO_OVERHEAD_S = 15
# Above this share of a core used by others before the run, its figures will be low: warn.
BUSY_WARNING_PCT = 30
# Seconds ``git archive`` and ``tar`` may take to export ``--ref``.
EXPORT_TIMEOUT_S = 60


class Runner:
    """Runs every target's scenarios of a configuration, in order and within the run's deadline."""

    def __init__(self, config: Config, workdir: Path) -> None:
        self.config = config
        self.workdir = workdir
        self.results: list[dict[str, Any]] = []
        self.skipped: list[str] = []
        self.started = time.monotonic()
        self.deadline = self.started + config.max_minutes * 60
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H%M%SZ") + ("-quick" if config.quick else "")
        self.ctx = RunContext(config, workdir, stamp)
        self.product = REPO
        self.commit = ""
        self.dirty = False
        self.busy_before: float | None = None

    @property
    def stamp(self) -> str:
        return self.ctx.stamp

    def remaining(self) -> float:
        """Seconds left before the run's deadline."""
        return self.deadline - time.monotonic()

    def make_target(self, name: str, web_procs: int = 1) -> Target:
        if name == "ticker":
            users = plan.users_needed(self.config)
            return TickerTarget(self.workdir, self.config.symbols, self.product, web_procs=web_procs, users=users)
        if name == "naive":
            return NaiveTarget(self.workdir, self.config.symbols)
        if name == "floor":
            return FloorTarget(self.workdir, self.config.symbols)
        raise ValueError(f"unknown target {name!r}")

    def run(self) -> None:
        """Every target in turn, then Ticker on several web processes."""
        cfg = self.config
        # What is measured is fixed now: HEAD may move while the run goes on.
        self.commit = output.git("rev-parse", "--short", cfg.ref or "HEAD")
        self.dirty = not cfg.ref and bool(output.git("status", "--porcelain", "--", "dashboard", "workers", "ticker"))
        self.busy_before = machine_busy()
        if self.busy_before > BUSY_WARNING_PCT:
            logger.warning(
                "this machine is already busy (%.0f %% of a core used by other processes): figures will be lower",
                self.busy_before,
            )
        if cfg.ref:
            self.product = self.export(cfg.ref)
        for name in cfg.targets:
            self.run_target(name, 1, plan.scenarios_for(cfg, name))
        multi = plan.multi_web_scenario(cfg)
        if multi is not None:
            self.run_target("ticker", cfg.multi_web_procs, [multi])

    def export(self, ref: str) -> Path:
        """A clean copy of Ticker at ``ref`` (the harness itself stays this checkout's)."""
        dest = self.workdir / "product"
        dest.mkdir(parents=True)
        git = ["git", "-C", str(REPO), "archive", self.commit or ref]
        archive = subprocess.run(git, check=True, capture_output=True, timeout=EXPORT_TIMEOUT_S)  # noqa: S603
        tar = ["tar", "-x", "-C", str(dest)]
        subprocess.run(tar, input=archive.stdout, check=True, timeout=EXPORT_TIMEOUT_S)  # noqa: S603
        logger.info("benchmarking Ticker at %s (exported to %s)", ref, dest)
        return dest

    def run_target(self, name: str, web_procs: int, todo: list[Scenario]) -> None:
        """Start target ``name``, run its scenarios while the deadline allows, stop it."""
        if self.remaining() < TARGET_MIN_S:
            self.skipped += [f"{name} {s.label()}: run deadline reached" for s in todo]
            return
        target = self.make_target(name, web_procs)
        try:
            started = time.monotonic()
            target.start(todo[0].rate)
            target.wait_rate(todo[0].rate)
            # The producer's rate since the rate was set, over a span of minutes: the expected
            # delivery uses it (seq advances in whole windows, so short spans are +-1 window off).
            self.ctx.rate_origin = scenarios.mark(target)
            logger.info("%s started in %.1f s (web on %s)", name, time.monotonic() - started, target.web_ports)
            for scenario in todo:
                self.run_in_time(target, scenario)
        except Exception as exc:
            logger.exception("%s could not run", name)
            self.skipped.append(f"{name}: could not run ({exc!r})")
            logger.error("logs of %s:\n%s", name, target.logs())
        finally:
            target.stop()

    def run_in_time(self, target: Target, scenario: Scenario) -> None:
        """One scenario if the deadline leaves room for it; a failed one is listed and the web restarted."""
        cfg = self.config
        needed = plan.connect_budget(cfg, target.name) / 2 + cfg.warmup + cfg.duration + SCENARIO_OVERHEAD_S
        if self.remaining() < needed:
            self.skipped.append(f"{target.name} {scenario.label()}: run deadline reached")
            return
        try:
            self.results.append(self.run_scenario(target, scenario))
        except Exception as exc:
            logger.exception("%s %s failed", target.name, scenario.label())
            self.skipped.append(f"{target.name} {scenario.label()}: failed ({exc!r})")
            with contextlib.suppress(Exception):
                target.restart_web()
        self.print_last()

    def print_last(self) -> None:
        if self.results:
            logger.info("\n%s", report.render_table(self.results[-1:]))

    def run_scenario(self, target: Target, scenario: Scenario) -> dict[str, Any]:
        """Set the rate, let the web go quiet, run the scenario with its own load clients."""
        label = scenario.label()
        logger.info("%s: %s", target.name, label)
        if target.rate != scenario.rate:
            target.set_rate(scenario.rate)
            target.wait_rate(scenario.rate)
            self.ctx.rate_origin = scenarios.mark(target)
        notes = scenarios.settle(target, target.web_names(scenario.web_procs))
        # The producer's rate is taken over the whole scenario (seq moves in window steps,
        # so a short span would carry a +-1 window error).
        start = scenarios.mark(target)
        group = ClientGroup(self.workdir, f"{target.name} {label}")
        result = scenarios.new_result(target, scenario, notes)
        try:
            if scenario.kind == "storm":
                storms.connect_storm(self.ctx, target, scenario, group, result)
            elif scenario.kind == "restart":
                storms.restart_storm(self.ctx, target, scenario, group, result)
            else:
                scenarios.steady(self.ctx, target, scenario, group, result, start)
        finally:
            group.close()
        return result

    def document(self) -> dict[str, Any]:
        """The results JSON of what has been measured so far."""
        return output.document(
            stamp=self.stamp,
            elapsed_s=time.monotonic() - self.started,
            config=self.config,
            env=output.environment(self.commit, self.dirty, self.busy_before),
            results=self.results,
            skipped=self.skipped,
            profiles=self.ctx.profiles,
        )

    def write(self) -> tuple[Path, Path, dict[str, Any]]:
        """Write the results JSON, the markdown and the charts; returns their paths and the document."""
        doc = self.document()
        json_path, md_path = output.write(doc, Path(self.config.out))
        return json_path, md_path, doc


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt so ``finally`` blocks stop every child."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``make bench`` / ``python -m bench``."""
    logging.basicConfig(
        level=os.environ.get("BENCH_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    config = parse_args(argv)
    raise_nofile_limit()
    workdir = Path(tempfile.mkdtemp(prefix="ticker-bench-"))
    runner = Runner(config, workdir)
    logger.info("work directory %s; run deadline %.0f min", workdir, config.max_minutes)
    interrupted = False
    try:
        with terminate_as_interrupt():
            runner.run()
    except KeyboardInterrupt:
        interrupted = True
        logger.warning("interrupted: writing what was measured")
    finally:
        json_path, md_path, doc = runner.write()
        if config.keep or interrupted:
            logger.info("logs kept in %s", workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    output.print_summary(doc, json_path, md_path)
    return 1 if interrupted else 0
