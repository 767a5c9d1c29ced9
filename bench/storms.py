"""The two storms against Ticker on one Daphne: many dashboards opening at once, and a web restart.

*Connect storm* (``connect_storm``): ``--storm-base`` dashboards connect and are measured
while ``--storm`` more open at once from every load-client process, without retry. *Restart
storm* (``restart_storm``): the web process is restarted under ``--restart-storm``
dashboards, which reconnect with backoff and resume with ``since``. ``bench.results``
turns what the clients report into the figures of the storms table.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from bench import plan, results
from bench.clients import ClientGroup, client_specs
from bench.plan import Scenario
from bench.procs import ProcessSampler
from bench.scenarios import CONNECT_GRACE_S, RunContext, connect, finish_profile, note_connected, start_profile
from bench.targets import Target

logger = logging.getLogger("bench")

# The storm's load clients start this long after they are spawned: every process has imported
# its modules and waits for the same instant.
STORM_LEAD_S = 3.0


@dataclass
class StormRun:
    """What one connect storm left: its start (epoch s), the lines of the storm and of the base, CPU."""

    start_at: float
    lines: dict[int, dict[str, Any]]
    base_lines: dict[int, dict[str, Any]]
    usage: dict[str, dict[str, float]]
    other_cpu_pct: float


def connect_storm(
    ctx: RunContext, target: Target, scenario: Scenario, group: ClientGroup, result: dict[str, Any]
) -> None:
    """STORM dashboards open at once (no retry) while STORM_BASE connected ones are measured.

    Time to all-live: from the storm's start instant to the last dashboard holding every
    snapshot. Failures: handshakes that did not complete, ``unavailable`` error frames.
    The connected dashboards are measured from the storm's start until its last
    dashboard is live (not over the whole budget, which would dilute the storm with the
    calm after it). With STORM_PROFILE, py-spy samples Daphne during a second storm,
    which is not measured.
    """
    cfg = ctx.config
    base = Scenario("stream", cfg.storm_base, scenario.rate, scenario.per_client)
    specs = client_specs(cfg, target, base)
    got = connect(ctx, target, group, specs)
    result["base_connected"] = results.total(got.values(), "connected")
    time.sleep(cfg.warmup)  # the base dashboards settle before the storm
    run = storm_once(ctx, target, scenario, group, len(specs), measured=True)
    if cfg.storm_profile:
        time.sleep(cfg.warmup)  # the first storm's sockets closed and settled
        try:
            storm_once(ctx, target, scenario, group, len(specs), measured=False)
        except Exception as exc:  # the profile is a bonus: the measured storm stands
            logger.warning("profiled storm failed: %r", exc)
            result["notes"].append(f"the profiled repeat of the storm failed: {exc!r}")
    figures = results.storm_figures(
        list(run.lines.values()),
        list(run.base_lines.values()),
        run.usage,
        start_at=run.start_at,
        requested=scenario.clients,
        web=target.web_names(1)[0],
        procs=plan.client_procs(cfg, scenario.clients),
        concurrency=cfg.storm_concurrency,
        base_clients=cfg.storm_base,
        other_cpu_pct=run.other_cpu_pct,
    )
    result.update(figures)
    result["notes"] += results.other_cpu_note(run.other_cpu_pct, "storm")
    if figures["connect_failures"]:
        result["notes"].append(f"failed handshakes (no retry): {figures['connect_failures']}")


def _storm_specs(ctx: RunContext, target: Target, scenario: Scenario, start_at: float) -> list[dict[str, Any]]:
    """The storm's load clients: no retry, all starting at ``start_at``, with their own traders."""
    cfg = ctx.config
    procs = plan.client_procs(cfg, scenario.clients)
    window = cfg.storm_budget
    specs = client_specs(cfg, target, scenario)
    for spec in specs:
        spec.update(
            {
                "retry": False,
                "start_at": start_at,
                "concurrency": max(1, cfg.storm_concurrency // procs),
                "connect_budget": window,
                "ready_timeout": window,
                "open_timeout": window,
                # Their own traders, after the base dashboards' ones.
                "first_index": spec["first_index"] + cfg.storm_base,
            }
        )
    return specs


def storm_once(
    ctx: RunContext, target: Target, scenario: Scenario, group: ClientGroup, base_procs: int, *, measured: bool
) -> StormRun:
    """One connect storm beside ``group`` (measured, or under py-spy and not measured)."""
    cfg = ctx.config
    storm = ClientGroup(ctx.workdir, f"{target.name} {scenario.label()} storm")
    start_at = time.time() + STORM_LEAD_S
    window = cfg.storm_budget
    storm_specs = _storm_specs(ctx, target, scenario, start_at)
    server = target.pids()
    base_lines: dict[int, dict[str, Any]] = {}
    try:
        storm.spawn(storm_specs)
        sampler = ProcessSampler({**server, **group.pids(), **{f"storm-{k}": v for k, v in storm.pids().items()}})
        if measured:
            group.send(f"measure {start_at} {start_at + window}")
        spy = None
        time.sleep(max(0.0, start_at - time.time()))  # until the storm starts
        if not measured:
            # The storm's first seconds, while dashboards are still opening, not the calm after.
            spy = start_profile(ctx, server[target.web_names(1)[0]], cfg.storm_profile_seconds, "storm-profile")
        sampler.start()
        lines = storm.collect("connected", set(range(len(storm_specs))), window + CONNECT_GRACE_S)
        usage = sampler.stop()
        if measured:
            group.send("stop")  # the storm is over: its last dashboard is live (or gave up)
            base_lines = group.collect("result", set(range(base_procs)), window + CONNECT_GRACE_S)
        if spy is not None:
            finish_profile(ctx, spy, scenario, "storm-profile")
    finally:
        storm.close()
    return StormRun(start_at, lines, base_lines, usage, sampler.other_cpu_pct)


def restart_storm(
    ctx: RunContext, target: Target, scenario: Scenario, group: ClientGroup, result: dict[str, Any]
) -> None:
    """The web process restarted under RESTART_STORM dashboards: how long until all are back and resumed."""
    cfg = ctx.config
    specs = client_specs(cfg, target, scenario)
    procs = len(specs)
    for spec in specs:
        spec["resume"] = True
        spec["concurrency"] = max(1, cfg.storm_concurrency // procs)  # set up quickly: it is not measured
    got = connect(ctx, target, group, specs)
    note_connected(result, list(got.values()), len(specs))
    time.sleep(cfg.warmup)  # every dashboard has ticked since its snapshot
    budget = cfg.storm_budget
    restarted_at = time.time()
    target.restart_web()
    web_back_s = time.time() - restarted_at
    group.send(f"await-back {restarted_at} {restarted_at + budget}")
    lines = group.collect("back", set(range(len(specs))), budget + CONNECT_GRACE_S)
    result.update(results.restart_figures(list(lines.values()), result.get("clients_connected", 0), web_back_s))
