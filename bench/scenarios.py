"""The steady scenarios against a started target: fan-out (``stream``), the sync endpoint, idle memory.

Each connects its dashboards through a ``ClientGroup``, lets them settle for the
warm-up, then measures one window (``measure``): the load clients count what arrives
while the sampler reads every process's CPU and memory and a probe reads how old the
ticks were when they crossed Redis. ``bench.results`` turns that into the figures. The
two storms, which measure something else, are in ``bench.storms``; the order of the
scenarios and the target's lifetime are ``bench.run``'s.
"""

from __future__ import annotations

import logging
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import plan, profile, results
from bench.clients import ClientGroup, client_specs
from bench.plan import Config, Scenario
from bench.probe import PublishLagProbe
from bench.procs import ManagedProcess, ProcessSampler, base_env, stable_rss, wait_for
from bench.results import Lines, SeqMark, Usage
from bench.targets import Target

logger = logging.getLogger("bench")

# A load client reports its dashboards connected within this long after its connect budget.
CONNECT_GRACE_S = 30
# Seconds the load clients have to print their results once the window has closed.
RESULT_DEADLINE_S = 30
# The measure command is sent this long before the window opens, so every client has read it.
WINDOW_LEAD_S = 0.3
# RSS is sampled this often during a window (its peak is reported).
RSS_INTERVAL_S = 1.0
# A web process counts as quiet below this share of a core, sampled over half a second...
QUIET_CPU_PCT = 25
QUIET_SAMPLE_S = 0.5
# ...and is restarted when it is not quiet within this long of the previous scenario.
SETTLE_TIMEOUT_S = 15
# Seconds py-spy may take to write its profile once its sampling time is over.
PROFILE_WRITE_S = 30


@dataclass
class RunContext:
    """What every scenario of a run shares: the configuration, the work directory, the stamp, the profiles."""

    config: Config
    workdir: Path
    stamp: str
    # "profile", "depth_profile" and "storm_profile": py-spy summaries, set by ``finish_profile``.
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)
    # The producer's seqs when the current rate was set: the long, precise span of its rate.
    rate_origin: SeqMark = ({}, 0.0)

    def budget(self, target: Target) -> float:
        """The connect budget of ``target``'s load clients."""
        return plan.connect_budget(self.config, target.name)


def mark(target: Target) -> SeqMark:
    """The producer's seqs now, with the monotonic time of the reading."""
    return target.seqs(), time.monotonic()


def new_result(target: Target, scenario: Scenario, notes: list[str]) -> dict[str, Any]:
    """The fields every result starts with: what was run."""
    return {
        "target": target.name,
        "scenario": scenario.label(),
        "kind": scenario.kind,
        "clients_requested": scenario.clients,
        "symbols_per_client": scenario.per_client,
        "rate": scenario.rate,
        "web_procs": scenario.web_procs,
        "profiled": scenario.profiled,
        "notes": notes,
    }


def note_connected(result: dict[str, Any], lines: Lines, procs: int) -> None:
    """Add the load clients' "connected" lines to ``result``: how many, failures, retries, time."""
    figures, notes = results.connection_summary(lines, procs)
    result.update(figures)
    result["notes"] += notes


def connect(ctx: RunContext, target: Target, group: ClientGroup, specs: list[dict[str, Any]]) -> dict[int, Any]:
    """Start one load client per spec beside those already in ``group``; their "connected" lines by index."""
    first = len(group.processes)
    group.spawn(specs)
    indexes = set(range(first, first + len(specs)))
    return group.collect("connected", indexes, ctx.budget(target) + CONNECT_GRACE_S)


def settle(target: Target, names: list[str]) -> list[str]:
    """Wait (bounded) for the web processes to go quiet after the previous scenario."""
    notes: list[str] = []
    pids = target.pids()

    def quiet() -> bool:
        sampler = ProcessSampler({n: pids[n] for n in names if n in pids})
        sampler.start()
        time.sleep(QUIET_SAMPLE_S)  # the sampling interval
        return all(v["cpu_pct"] < QUIET_CPU_PCT for v in sampler.stop().values())

    try:
        wait_for(quiet, SETTLE_TIMEOUT_S, f"{target.name} web processes to go quiet", interval=0)
    except TimeoutError:
        notes.append("web still busy from the previous scenario: restarted it")
        target.restart_web()
    return notes


def steady(
    ctx: RunContext, target: Target, scenario: Scenario, group: ClientGroup, result: dict[str, Any], start: SeqMark
) -> None:
    """An idle, stream or sync scenario: connect, warm up, measure one window from ``start``."""
    if scenario.kind == "idle":
        connect_idle(ctx, target, scenario, group, result)
    else:
        specs = client_specs(ctx.config, target, scenario)
        connected = connect(ctx, target, group, specs)
        note_connected(result, list(connected.values()), len(specs))
    # Warm-up: let connection bursts and queues settle before counting.
    time.sleep(ctx.config.warmup)
    measure(ctx, target, scenario, group, result, start)


def connect_idle(
    ctx: RunContext, target: Target, scenario: Scenario, group: ClientGroup, result: dict[str, Any]
) -> None:
    """Connect a tenth, note the web RSS, connect the rest: memory per connection is the slope."""
    web = target.pids()[target.web_names(1)[0]]
    first = max(1, scenario.clients // 10)
    specs = client_specs(ctx.config, target, Scenario("idle", first, scenario.rate, 0))
    specs[0]["clients"] = first
    got = connect(ctx, target, group, specs[:1])
    rss_a = stable_rss(web)
    rest = client_specs(ctx.config, target, Scenario("idle", scenario.clients - first, scenario.rate, 0))
    got |= connect(ctx, target, group, rest)
    rss_b = stable_rss(web)
    note_connected(result, list(got.values()), 1 + len(rest))
    second = sum(line.get("connected", 0) for i, line in got.items() if i > 0)
    result.update(results.idle_figures(rss_a, rss_b, second))


def _sample_window(
    sampler: ProcessSampler, target: Target, t0: float, t1: float, result: dict[str, Any]
) -> dict[str, dict[str, float]]:
    """Sample every process from ``t0`` to ``t1`` (epoch s), with the publish lag where there is a probe."""
    probe = None
    if target.probe_channel and target.redis is not None:
        probe = PublishLagProbe(target.redis.url, target.probe_channel)
        probe.start()
    time.sleep(max(0.0, t0 - time.time()))  # until the window opens
    sampler.start()
    if probe is not None:
        probe.open_window()
    while time.time() < t1:
        time.sleep(min(RSS_INTERVAL_S, max(0.0, t1 - time.time())))
        sampler.sample_rss()
    usage = sampler.stop()
    result["host_cpu_pct"] = sampler.host_cpu_pct
    result["other_cpu_pct"] = sampler.other_cpu_pct
    result["host_cpu_breakdown_pct"] = sampler.host_breakdown
    result["notes"] += results.other_cpu_note(sampler.other_cpu_pct, "window")
    if probe is not None:
        lag = probe.stop()
        result["publish_lag_p50_ms"] = results.percentile(lag, 0.5)
        result["publish_lag_p99_ms"] = results.percentile(lag, 0.99)
    return usage


def measure(
    ctx: RunContext, target: Target, scenario: Scenario, group: ClientGroup, result: dict[str, Any], start: SeqMark
) -> None:
    """One measurement window: the clients count, the sampler samples, then the figures are computed."""
    indexes = set(range(len(group.processes)))
    server = target.pids()
    sampler = ProcessSampler({**server, **group.pids()})
    t0 = time.time() + WINDOW_LEAD_S
    t1 = t0 + ctx.config.duration
    group.send(f"measure {t0} {t1}")
    spy = None
    name = "depth-profile" if scenario.kind == "depth" else "profile"
    if scenario.profiled:
        spy = start_profile(ctx, server[target.web_names(1)[0]], name=name)
    usage = _sample_window(sampler, target, t0, t1, result)
    lines = group.collect("result", indexes, RESULT_DEADLINE_S)
    end = mark(target)
    if spy is not None:
        finish_profile(ctx, spy, scenario, name)
    record(ctx, target, scenario, result, usage, list(lines.values()), start, end)


def record(
    ctx: RunContext,
    target: Target,
    scenario: Scenario,
    result: dict[str, Any],
    usage: Usage,
    lines: Lines,
    start: SeqMark,
    end: SeqMark,
) -> None:
    """The window's figures, table cells and notes into ``result`` (the producer's rate from ``start``)."""
    producer_tps, per_symbol = results.producer_rates(target.symbols, start, ctx.rate_origin, end)
    fanout = scenario.kind in ("stream", "depth")
    subscribed = target.symbols[: scenario.per_client] if fanout else target.symbols[:1]
    expected = 0.0 if scenario.kind == "idle" else results.expected_tps(per_symbol, subscribed, scenario.clients)
    figures = results.fanout_figures(
        lines,
        usage,
        target.web_names(scenario.web_procs),
        duration=ctx.config.duration,
        producer_tps=producer_tps,
        expected=expected,
    )
    result.update(figures)
    result.update(results.fanout_texts(result, scenario.clients))
    if scenario.kind == "depth":
        result.update(
            results.book_figures(lines, usage, target.web_names(scenario.web_procs), duration=ctx.config.duration)
        )
        result["notes"] += results.book_notes(result)
    result["notes"] += results.fanout_notes(
        result, kind=scenario.kind, rate=scenario.rate, profiled=scenario.profiled, producer_tps=producer_tps
    )


# --- profiling --------------------------------------------------------------------------------


def _profile_path(ctx: RunContext, name: str) -> Path:
    return Path(ctx.config.out) / f"{ctx.stamp}-{name}.txt"


def start_profile(ctx: RunContext, pid: int, seconds: float = 0.0, name: str = "profile") -> ManagedProcess | None:
    """py-spy on ``pid`` for ``seconds`` (default: one window); None when it cannot start."""
    out = _profile_path(ctx, name)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        log = ctx.workdir / f"py-spy-{name}.log"
        spy = profile.recorder(pid, seconds or ctx.config.duration, out, log, base_env({}))
        return spy.start()
    except Exception as exc:
        logger.warning("no profile: %r", exc)
        return None


def finish_profile(ctx: RunContext, spy: ManagedProcess, scenario: Scenario, name: str = "profile") -> None:
    """Wait for py-spy to write its profile and keep its summary in ``ctx.profiles`` (``name`` with ``_``)."""
    assert spy.popen is not None
    try:
        spy.popen.wait(PROFILE_WRITE_S)
    except subprocess.TimeoutExpired:
        logger.warning("py-spy did not finish in time")
    spy.stop()
    out = _profile_path(ctx, name)
    if not out.exists():
        logger.warning("py-spy wrote nothing:\n%s", spy.tail())
        return
    summary = {"scenario": f"ticker {scenario.label()}", "file": out.name, **profile.summarize(out)}
    ctx.profiles[name.replace("-", "_")] = summary
