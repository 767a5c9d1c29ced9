"""Turning scenario results into the printed table, the ratios and the markdown summary."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bench.results import CLIENT_SATURATED_PCT

COLUMNS: list[tuple[str, str, str]] = [
    # (header, result key, format)
    ("target", "target", "s"),
    ("scenario", "scenario", "s"),
    ("clients", "clients_text", "s"),
    ("prod t/s", "producer_tps", ".0f"),
    ("deliv t/s", "delivered_tps", ".0f"),
    ("expect t/s", "expected_tps", ".0f"),
    ("deliv %", "delivered_pct", ".1f"),
    ("lost", "lost", "d"),
    ("p50 ms", "p50_ms", "d"),
    ("p99 ms", "p99_ms", "d"),
    ("max ms", "max_ms", "d"),
    ("pub p50/p99", "publish_lag_text", "s"),
    ("web CPU%", "web_cpu_pct", ".0f"),
    ("web RSS MiB", "web_rss_mib", ".0f"),
    ("stack CPU%", "stack_cpu_pct", ".0f"),
    ("client CPU%", "client_cpu_text", "s"),
    ("other CPU%", "other_cpu_pct", ".0f"),
    ("ms CPU/frame", "cpu_per_frame_ms", ".3f"),
    ("frames/dash/s", "frames_per_dashboard_s", ".2f"),
    ("us CPU/tick", "cpu_us_per_tick", ".3f"),
    ("KiB/conn", "kib_per_conn", ".1f"),
]


def _cell(result: Mapping[str, Any], key: str, fmt: str) -> str:
    value = result.get(key)
    if value is None or value == "":
        return "-"
    if fmt == "s":
        return str(value)
    return format(value, fmt)


def table_rows(results: Sequence[Mapping[str, Any]]) -> list[list[str]]:
    return [[_cell(r, key, fmt) for _, key, fmt in COLUMNS] for r in results]


def render_table(results: Sequence[Mapping[str, Any]]) -> str:
    """A fixed-width text table, one line per scenario."""
    headers = [h for h, _, _ in COLUMNS]
    rows = table_rows(results)
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = [
        "  ".join(h.rjust(w) if i > 1 else h.ljust(w) for i, (h, w) in enumerate(zip(headers, widths, strict=True)))
    ]
    lines.append("  ".join("-" * w for w in widths))
    for row in rows:
        lines.append(
            "  ".join(c.rjust(w) if i > 1 else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))
        )
    return "\n".join(lines)


def render_markdown_table(results: Sequence[Mapping[str, Any]]) -> str:
    headers = [h for h, _, _ in COLUMNS]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    for row in table_rows(results):
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


STORM_COLUMNS: list[tuple[str, str, str]] = [
    ("scenario", "scenario", "s"),
    ("dashboards", "clients_text", "s"),
    ("in flight", "storm_concurrency", "d"),
    ("all live s", "all_live_s", ".1f"),
    ("last live s", "last_live_s", ".1f"),
    ("failed handshakes", "failed_handshakes", "d"),
    ("unavailable", "unavailable", "d"),
    ("resumed", "resumed_symbols", "d"),
    ("snapshots", "resnapshot_symbols", "d"),
    ("web restart s", "web_restart_s", ".1f"),
    ("connected p99 ms", "p99_ms", "d"),
    ("connected lost", "lost", "d"),
    ("web CPU%", "web_cpu_pct", ".0f"),
    ("storm client CPU%", "client_cpu_text", "s"),
    ("other CPU%", "other_cpu_pct", ".0f"),
]


def storm_rows(results: Sequence[Mapping[str, Any]]) -> list[list[str]]:
    return [
        [_cell(r, key, fmt) for _, key, fmt in STORM_COLUMNS] for r in results if r.get("kind") in ("storm", "restart")
    ]


def render_storms(results: Sequence[Mapping[str, Any]]) -> str:
    """The storms: time to all-live, failures, and the p99 of the dashboards already connected."""
    rows = storm_rows(results)
    if not rows:
        return ""
    headers = [h for h, _, _ in STORM_COLUMNS]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(lines)


def render_markdown_storms(results: Sequence[Mapping[str, Any]]) -> str:
    rows = storm_rows(results)
    if not rows:
        return ""
    headers = [h for h, _, _ in STORM_COLUMNS]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


DEPTH_COLUMNS: list[tuple[str, str, str]] = [
    ("target", "target", "s"),
    ("scenario", "scenario", "s"),
    ("clients", "clients_text", "s"),
    ("msgs/s", "delivered_messages_per_s", ".0f"),
    ("ticks/s", "delivered_tps", ".0f"),
    ("deliv %", "delivered_pct", ".1f"),
    ("depth/s", "depth_frames_per_s", ".0f"),
    ("trades/s", "trades_per_s", ".0f"),
    ("lost", "lost", "d"),
    ("depth gaps", "depth_gaps", "d"),
    ("resnaps", "depth_resnapshots", "d"),
    ("trade gaps", "trade_gaps", "d"),
    ("tick p50/p99", "tick_latency_text", "s"),
    ("depth p50/p99", "depth_latency_text", "s"),
    ("trade p50/p99", "trade_latency_text", "s"),
    ("web CPU%", "web_cpu_pct", ".0f"),
    ("us CPU/msg", "cpu_us_per_message", ".2f"),
    ("client CPU%", "client_cpu_text", "s"),
    ("other CPU%", "other_cpu_pct", ".0f"),
]
# What the depth table's "us CPU/msg" means, printed under it.
DEPTH_LEGEND = (
    "msgs = ticks + depth frames + trades received in the window (snapshots not counted);"
    " us CPU/msg = web CPU seconds / msgs (cpu_us_per_message in the JSON)."
)


def _pair(result: Mapping[str, Any], p50: str, p99: str) -> str:
    if result.get(p99) is None:
        return "-"
    return f"{result.get(p50)}/{result.get(p99)}"


def depth_rows(results: Sequence[Mapping[str, Any]]) -> list[list[str]]:
    """The depth scenarios' cells, Ticker and the floor of each load next to each other."""
    rows = [r for r in results if r.get("kind") == "depth"]
    rows.sort(key=lambda r: (r["clients_requested"], r["rate"], bool(r.get("profiled")), r["target"] != "ticker"))
    out = []
    for r in rows:
        cells = {
            **r,
            "tick_latency_text": _pair(r, "p50_ms", "p99_ms"),
            "depth_latency_text": _pair(r, "depth_p50_ms", "depth_p99_ms"),
            "trade_latency_text": _pair(r, "trade_p50_ms", "trade_p99_ms"),
        }
        out.append([_cell(cells, key, fmt) for _, key, fmt in DEPTH_COLUMNS])
    return out


def render_depth(results: Sequence[Mapping[str, Any]]) -> str:
    """The depth and trades scenarios (Ticker and the floor side by side), or "" when none ran."""
    rows = depth_rows(results)
    if not rows:
        return ""
    headers = [h for h, _, _ in DEPTH_COLUMNS]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        pairs = enumerate(zip(cells, widths, strict=True))
        return "  ".join(c.rjust(w) if i > 1 else c.ljust(w) for i, (c, w) in pairs)

    return "\n".join([line(headers), "  ".join("-" * w for w in widths), *(line(row) for row in rows), DEPTH_LEGEND])


def render_markdown_depth(results: Sequence[Mapping[str, Any]]) -> str:
    rows = depth_rows(results)
    if not rows:
        return ""
    headers = [h for h, _, _ in DEPTH_COLUMNS]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def ratios(results: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Ticker against each reference, for every fan-out load both ran."""
    by_key: dict[tuple[str, int, int, float], Mapping[str, Any]] = {}
    for r in results:
        if r.get("kind") == "stream" and not r.get("profiled"):
            by_key.setdefault((r["target"], r["clients_requested"], r.get("web_procs", 1), r["rate"]), r)
    out = []
    for (target, clients, web, rate), ours in by_key.items():
        if target != "ticker":
            continue
        for ref in ("naive", "floor"):
            theirs = by_key.get((ref, clients, 1, rate))
            if theirs is None:
                continue
            out.append(
                {
                    "load": f"{clients}x{ours['symbols_per_client']} @{rate:.0f}"
                    + (f" ({web} web)" if web > 1 else ""),
                    "reference": ref,
                    "delivered_ratio": _ratio(ours.get("delivered_tps"), theirs.get("delivered_tps")),
                    "p99_ratio": _ratio(ours.get("p99_ms"), theirs.get("p99_ms")),
                    "ticker_delivered_pct": ours.get("delivered_pct"),
                    "ref_delivered_pct": theirs.get("delivered_pct"),
                    "ticker_p99_ms": ours.get("p99_ms"),
                    "ref_p99_ms": theirs.get("p99_ms"),
                    "cpu_per_frame_ratio": _ratio(ours.get("cpu_per_frame_ms"), theirs.get("cpu_per_frame_ms")),
                    "ticker_cpu_per_frame_ms": ours.get("cpu_per_frame_ms"),
                    "ref_cpu_per_frame_ms": theirs.get("cpu_per_frame_ms"),
                    "cpu_per_tick_ratio": _ratio(ours.get("cpu_us_per_tick"), theirs.get("cpu_us_per_tick")),
                    "ticker_cpu_us_per_tick": ours.get("cpu_us_per_tick"),
                    "ref_cpu_us_per_tick": theirs.get("cpu_us_per_tick"),
                    "ticker_frames_per_dashboard_s": ours.get("frames_per_dashboard_s"),
                    "ref_frames_per_dashboard_s": theirs.get("frames_per_dashboard_s"),
                }
            )
    return out


# The depth scenario's targets: Ticker's web CPU per delivered message at most this many times the floor's.
DEPTH_CPU_RATIO_TARGET = 2.0


def depth_ratios(results: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Ticker against the floor for every depth load both ran: CPU per message and p99s as multiples."""
    by_key: dict[tuple[str, int, float], Mapping[str, Any]] = {}
    for r in results:
        if r.get("kind") == "depth" and not r.get("profiled"):
            by_key.setdefault((r["target"], r["clients_requested"], r["rate"]), r)
    out = []
    for (target, clients, rate), ours in by_key.items():
        theirs = by_key.get(("floor", clients, rate))
        if target != "ticker" or theirs is None:
            continue
        cpu_ratio = _ratio(ours.get("cpu_us_per_message"), theirs.get("cpu_us_per_message"))
        out.append(
            {
                "load": f"{clients}x{ours['symbols_per_client']}+1 @{rate:.0f}",
                "reference": "floor",
                "cpu_per_message_ratio": cpu_ratio,
                "ticker_cpu_us_per_message": ours.get("cpu_us_per_message"),
                "ref_cpu_us_per_message": theirs.get("cpu_us_per_message"),
                "p99_ratio": _ratio(ours.get("p99_ms"), theirs.get("p99_ms")),
                "ticker_p99_ms": ours.get("p99_ms"),
                "ref_p99_ms": theirs.get("p99_ms"),
                "book_p99_ratio": _ratio(ours.get("book_p99_ms"), theirs.get("book_p99_ms")),
                "ticker_book_p99_ms": ours.get("book_p99_ms"),
                "ref_book_p99_ms": theirs.get("book_p99_ms"),
                "delivered_messages_ratio": _ratio(
                    ours.get("delivered_messages_per_s"), theirs.get("delivered_messages_per_s")
                ),
                "ticker_holds": depth_holds(ours),
                "ref_holds": depth_holds(theirs),
                "cpu_within_target": None if cpu_ratio is None else cpu_ratio <= DEPTH_CPU_RATIO_TARGET,
            }
        )
    return out


def render_depth_ratios(rows: Sequence[Mapping[str, Any]]) -> str:
    """One line per depth load: Ticker's CPU per message and p99s as multiples of the floor's."""
    lines = []
    for r in rows:
        lines.append(
            f"{r['load']:<22} vs floor  CPU/msg x{_fmt(r['cpu_per_message_ratio'], '.2f')}"
            f" ({_fmt(r['ticker_cpu_us_per_message'], '.2f')} vs {_fmt(r['ref_cpu_us_per_message'], '.2f')} us;"
            f" target <= x{DEPTH_CPU_RATIO_TARGET:.0f})"
            f"  tick p99 x{_fmt(r['p99_ratio'], '.2f')}"
            f" ({_fmt(r['ticker_p99_ms'], 'd')} vs {_fmt(r['ref_p99_ms'], 'd')} ms)"
            f"  depth+trades p99 x{_fmt(r['book_p99_ratio'], '.2f')}"
            f" ({_fmt(r['ticker_book_p99_ms'], 'd')} vs {_fmt(r['ref_book_p99_ms'], 'd')} ms)"
            f"  holds: ticker {'yes' if r['ticker_holds'] else 'no'}, floor {'yes' if r['ref_holds'] else 'no'}"
        )
    return "\n".join(lines)


# A fan-out scenario "holds" when nothing is lost, (almost) everything is delivered and p99 is in target.
HOLD_P99_MS = 250
HOLD_DELIVERED_PCT = 97.0
# A web process above this share of a core is CPU-bound (the event loop has no slack left).
WEB_CPU_BOUND_PCT = 85
# A producer below this fraction of its asked rate is the limit, not the web tier.
PRODUCER_SHORT_FRACTION = 0.85
# The server processes above this share of the machine's two cores (200 %) leave nothing for anyone.
MACHINE_CPU_BOUND_PCT = 170
# Milliseconds of web CPU one web process has per second: a full core.
CORE_MS_PER_S = 1000.0


def holds(result: Mapping[str, Any]) -> bool:
    return (
        result.get("lost", 1) == 0
        and (result.get("delivered_pct") or 0) >= HOLD_DELIVERED_PCT
        and result.get("p99_ms") is not None
        and result["p99_ms"] <= HOLD_P99_MS
        and result.get("clients_connected") == result.get("clients_requested")
    )


def depth_holds(result: Mapping[str, Any]) -> bool:
    """A depth load holds as a fan-out does, with no chain broken and depth and trades in the p99 target."""
    return (
        holds(result)
        and result.get("depth_gaps", 1) == 0
        and result.get("trade_gaps", 1) == 0
        and result.get("book_p99_ms") is not None
        and result["book_p99_ms"] <= HOLD_P99_MS
    )


def why_not(result: Mapping[str, Any]) -> str:
    """The most likely limit of a scenario that did not hold, from what was measured."""
    reasons = []
    if (result.get("web_cpu_pct") or 0) >= WEB_CPU_BOUND_PCT * result.get("web_procs", 1):
        reasons.append(f"web process CPU-bound ({result['web_cpu_pct']:.0f} % of a core)")
    if result.get("client_cpu_max_pct", 0) >= CLIENT_SATURATED_PCT:
        reasons.append("load client CPU-bound")
    rate = result.get("rate") or 0
    if rate and (result.get("producer_tps") or 0) < PRODUCER_SHORT_FRACTION * rate:
        reasons.append(f"producer reached {result['producer_tps']:.0f} of {rate:.0f} ticks/s")
    if result.get("lost"):
        reasons.append(f"{result['lost']} ticks dropped")
    if result.get("clients_connected") != result.get("clients_requested"):
        reasons.append(f"only {result.get('clients_connected')} of {result['clients_requested']} handshakes completed")
    if (result.get("stack_cpu_pct") or 0) >= MACHINE_CPU_BOUND_PCT:
        reasons.append(f"machine CPU-bound (server processes {result['stack_cpu_pct']:.0f} % of 200 %)")
    p99 = result.get("p99_ms")
    if not reasons and p99 is not None and p99 > HOLD_P99_MS:
        clients = result.get("clients_connected") or 0
        burst = clients * (result.get("cpu_per_frame_ms") or 0) / result.get("web_procs", 1)
        lag = result.get("publish_lag_p99_ms")
        older = f", on top of ticks already {lag} ms old (p99) when their batch crossed Redis" if lag else ""
        reasons.append(
            f"p99 {p99} ms with the web process at {result.get('web_cpu_pct', 0):.0f} % CPU: a window's frames are"
            f" written one after another, {burst:.0f} ms of CPU per window per web process{older}"
        )
    return "; ".join(reasons) or "latency above target"


def capacity_dashboards(cpu_per_frame_ms: float, frames_per_s_per_dashboard: float, web_procs: int = 1) -> float:
    """Dashboards a full core per web process would serve at that CPU per frame and frame rate."""
    return CORE_MS_PER_S / (cpu_per_frame_ms * frames_per_s_per_dashboard) * web_procs


def scaling(results: Sequence[Mapping[str, Any]]) -> list[str]:
    """Per target and rate: how cost grows with clients, where it stops holding and why."""
    series: dict[tuple[str, float, int], list[Mapping[str, Any]]] = {}
    for r in results:
        if r.get("kind") == "stream" and r.get("frames_per_s") and not r.get("profiled"):
            series.setdefault((r["target"], r["rate"], r.get("web_procs", 1)), []).append(r)
    lines = []
    for (target, rate, web), rows in series.items():
        rows = sorted(rows, key=lambda r: r["clients_requested"])
        steps = ", ".join(
            f"{r['clients_requested']}: {r['frames_per_s']:.0f} frames/s, {r['web_cpu_pct']:.0f} % CPU,"
            f" {_fmt(r.get('cpu_per_frame_ms'), '.3f')} ms/frame"
            for r in rows
        )
        held = [r["clients_requested"] for r in rows if holds(r)]
        failed = [r for r in rows if not holds(r)]
        head = f"- **{target} @{rate:.0f} ticks/s{f' on {web} web processes' if web > 1 else ''}** ({steps})."
        if held:
            head += f" Holds up to {max(held)} dashboards."
        if failed:
            first = failed[0]
            head += f" Stops holding at {first['clients_requested']}: {why_not(first)}."
        best = [r["cpu_per_frame_ms"] for r in rows if r.get("cpu_per_frame_ms")]
        per_client_fps = rows[0]["frames_per_s"] / max(1, rows[0].get("clients_connected") or 1)
        if best and per_client_fps:
            capacity = capacity_dashboards(min(best), per_client_fps, web)
            head += (
                f" At {min(best):.3f} ms per frame and {per_client_fps:.1f} frames/s per dashboard, a full core"
                f" per web process would serve about {capacity:.0f} dashboards."
            )
        lines.append(head)
    return lines


# Rows of the profiles quoted in the markdown: enough to see the tail, short enough to read.
PROFILE_TOP_SELF = 15
PROFILE_TOP_STORM = 30


def _fmt(value: float | None, fmt: str, suffix: str = "") -> str:
    return "-" if value is None else format(value, fmt) + suffix


def render_ratios(rows: Sequence[Mapping[str, Any]]) -> str:
    """One line per (load, reference): delivered ticks/s and p99 of Ticker as multiples of the reference's."""
    lines = []
    for r in rows:
        lines.append(
            f"{r['load']:<22} vs {r['reference']:<5}  delivered x{_fmt(r['delivered_ratio'], '.2f'):<7}"
            f" ({_fmt(r['ticker_delivered_pct'], '.1f', '%')} vs {_fmt(r['ref_delivered_pct'], '.1f', '%')})"
            f"  p99 x{_fmt(r['p99_ratio'], '.2f'):<6}"
            f" ({_fmt(r['ticker_p99_ms'], 'd')} vs {_fmt(r['ref_p99_ms'], 'd')} ms)"
            f"  CPU/frame x{_fmt(r['cpu_per_frame_ratio'], '.1f')}"
            f" ({_fmt(r['ticker_cpu_per_frame_ms'], '.3f')} vs {_fmt(r['ref_cpu_per_frame_ms'], '.3f')} ms)"
            f"  CPU/tick x{_fmt(r.get('cpu_per_tick_ratio'), '.2f')}"
            f" ({_fmt(r.get('ticker_cpu_us_per_tick'), '.3f')} vs {_fmt(r.get('ref_cpu_us_per_tick'), '.3f')} us;"
            f" frames/dashboard/s {_fmt(r.get('ticker_frames_per_dashboard_s'), '.2f')}"
            f" vs {_fmt(r.get('ref_frames_per_dashboard_s'), '.2f')})"
        )
    return "\n".join(lines)


def _per_tick(run: Mapping[str, Any], profile: Mapping[str, Any]) -> list[str]:
    profiled = [r for r in run["results"] if r.get("profiled") and r.get("cpu_us_per_tick")]
    if not profiled:
        return []
    r = profiled[0]
    return [
        f"In that run Daphne spent {r['cpu_us_per_tick']:.2f} µs of CPU per delivered tick"
        f" ({r['cpu_per_frame_ms']:.3f} ms per frame of {r['ticks_per_frame']:.0f} ticks); the shares below"
        " split it.",
        "",
    ]


def _per_message(run: Mapping[str, Any]) -> list[str]:
    profiled = [r for r in run["results"] if r.get("profiled") and r.get("kind") == "depth"]
    if not profiled or not profiled[0].get("cpu_us_per_message"):
        return []
    r = profiled[0]
    return [
        f"In that run Daphne spent {r['cpu_us_per_message']:.2f} µs of CPU per delivered message"
        f" ({r['delivered_messages_per_s']:.0f} messages/s: ticks, depth frames and trades); the shares below"
        " split it.",
        "",
    ]


def render_markdown(run: Mapping[str, Any]) -> str:
    """The short summary written next to the JSON."""
    env = run["environment"]
    lines = [
        f"# Benchmark run {run['stamp']}",
        "",
        f"Ticker commit `{env.get('commit', '?')}`{' (with uncommitted changes)' if env.get('dirty') else ''};"
        f" {env.get('cpus')} CPUs ({env.get('cpu_model', '?')}), Python {env.get('python')};"
        f" {run['config'].get('duration')} s measured per scenario after {run['config'].get('warmup')} s warm-up;"
        f" total {run.get('elapsed_s', 0):.0f} s.",
        "",
        render_markdown_table(run["results"]),
        "",
        "## Ticker against the references (same load, same run)",
        "",
        "| load | reference | delivered ratio | Ticker / ref delivered | p99 ratio | Ticker / ref p99 ms"
        " | CPU/frame ratio | Ticker / ref ms CPU/frame | CPU/tick ratio | Ticker / ref µs CPU/tick"
        " | Ticker / ref frames per dashboard-s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in run.get("ratios", []):
        lines.append(
            f"| {r['load']} | {r['reference']} | {_fmt(r['delivered_ratio'], '.2f')} |"
            f" {_fmt(r['ticker_delivered_pct'], '.1f', '%')} / {_fmt(r['ref_delivered_pct'], '.1f', '%')} |"
            f" {_fmt(r['p99_ratio'], '.2f')} | {_fmt(r['ticker_p99_ms'], 'd')} / {_fmt(r['ref_p99_ms'], 'd')} |"
            f" {_fmt(r['cpu_per_frame_ratio'], '.1f')} |"
            f" {_fmt(r['ticker_cpu_per_frame_ms'], '.3f')} / {_fmt(r['ref_cpu_per_frame_ms'], '.3f')} |"
            f" {_fmt(r.get('cpu_per_tick_ratio'), '.2f')} |"
            f" {_fmt(r.get('ticker_cpu_us_per_tick'), '.3f')} / {_fmt(r.get('ref_cpu_us_per_tick'), '.3f')} |"
            f" {_fmt(r.get('ticker_frames_per_dashboard_s'), '.2f')} /"
            f" {_fmt(r.get('ref_frames_per_dashboard_s'), '.2f')} |"
        )
    depth = render_markdown_depth(run["results"])
    if depth:
        lines += [
            "",
            "## Depth and trades (Ticker and the floor)",
            "",
            "Every dashboard subscribes every symbol's ticks, then the `depth` (20 levels) and `trades` of one"
            " symbol (dashboard i: symbol i % 10). Gaps: a `depth` frame whose `U` is not the previous `u` + 1"
            " (the snapshot's included), a trade whose `id` is not the previous + 1; resnaps: `depth_snapshot`"
            " frames the server sent again. " + DEPTH_LEGEND,
            "",
            depth,
            "",
            f"A depth load holds as a fan-out does, with 0 gaps and depth and trades p99 <= {HOLD_P99_MS} ms too;"
            f" Ticker's target is at most {DEPTH_CPU_RATIO_TARGET:.0f}x the floor's web CPU per message.",
            "",
            "| load | reference | CPU/msg ratio | Ticker / ref us CPU/msg | tick p99 ratio | Ticker / ref tick p99 ms"
            " | depth+trades p99 ratio | Ticker / ref depth+trades p99 ms | holds (Ticker / ref) |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in run.get("depth_ratios", []):
            lines.append(
                f"| {r['load']} | {r['reference']} | {_fmt(r['cpu_per_message_ratio'], '.2f')} |"
                f" {_fmt(r['ticker_cpu_us_per_message'], '.2f')} / {_fmt(r['ref_cpu_us_per_message'], '.2f')} |"
                f" {_fmt(r['p99_ratio'], '.2f')} | {_fmt(r['ticker_p99_ms'], 'd')} / {_fmt(r['ref_p99_ms'], 'd')} |"
                f" {_fmt(r['book_p99_ratio'], '.2f')} |"
                f" {_fmt(r['ticker_book_p99_ms'], 'd')} / {_fmt(r['ref_book_p99_ms'], 'd')} |"
                f" {'yes' if r['ticker_holds'] else 'no'} / {'yes' if r['ref_holds'] else 'no'} |"
            )
    storms = render_markdown_storms(run["results"])
    if storms:
        lines += [
            "",
            "## Storms",
            "",
            "Connect storm: dashboards opening at once (handshakes in flight as shown, no retry) beside"
            " dashboards already connected, whose p99 and lost ticks are shown. Restart storm: the web"
            " process restarted under the dashboards, which reconnect with backoff and jitter and"
            " resubscribe with `since`. Times from the storm's start (the restart command).",
            "",
            storms,
        ]
    lines += ["", "## Where it stops", ""]
    lines += [
        f"A load holds when 0 ticks are lost, >= {HOLD_DELIVERED_PCT:.0f} % are delivered, every client connected"
        f" and p99 <= {HOLD_P99_MS} ms.",
        "",
        *scaling(run["results"]),
    ]
    notes = [f"- **{r['target']} {r['scenario']}**: {'; '.join(r['notes'])}" for r in run["results"] if r.get("notes")]
    if notes:
        lines += ["", "## Notes", "", *notes]
    skipped = run.get("skipped", [])
    if skipped:
        lines += ["", "## Not run", "", *(f"- {s}" for s in skipped)]
    lines += _profile_section(run)
    lines += _profile_section(run, "depth_profile")
    lines += _storm_profile_section(run)
    lines.append("")
    return "\n".join(lines)


def _profile_section(run: Mapping[str, Any], key: str = "profile") -> list[str]:
    """A fan-out profile: shares by component, named functions inclusive, the top self-time functions."""
    profile = run.get(key)
    if not profile or not profile.get("samples"):
        return []
    lines = [
        "",
        f"## Profile: {profile['scenario']} (py-spy, {profile['samples']} samples of the busy Daphne process)",
        "",
        "Each sample is charged to the first non-standard-library frame from the top of its stack.",
        "",
        *(_per_tick(run, profile) if key == "profile" else _per_message(run)),
        "| share | component |",
        "|---|---|",
    ]
    lines += [f"| {pct:.1f} % | {name} |" for name, pct in profile["categories"]]
    lines += ["", "| inclusive | function |", "|---|---|"]
    lines += [f"| {pct:.1f} % | `{name}` |" for name, pct in profile["markers"] if pct]
    lines += ["", "| self | function |", "|---|---|"]
    lines += [f"| {row['self_pct']:.1f} % | `{row['function']}` |" for row in profile["top_self"][:PROFILE_TOP_SELF]]
    return lines


def _storm_profile_section(run: Mapping[str, Any]) -> list[str]:
    """The connect storm's profile: shares by component and the top inclusive functions."""
    storm = run.get("storm_profile")
    if not storm or not storm.get("samples"):
        return []
    return [
        "",
        f"## Profile: {storm['scenario']} (py-spy, {storm['samples']} samples, every thread of Daphne)",
        "",
        "| share | component |",
        "|---|---|",
        *(f"| {pct:.1f} % | {name} |" for name, pct in storm["categories"]),
        "",
        "| inclusive | function |",
        "|---|---|",
        *(f"| {row['inclusive_pct']:.1f} % | `{row['function']}` |" for row in storm["top"][:PROFILE_TOP_STORM]),
    ]


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.report RESULTS.json``: print the table and rewrite the markdown next to it."""
    import json
    import sys
    from pathlib import Path

    for name in sys.argv[1:] if argv is None else argv:
        path = Path(name)
        run = json.loads(path.read_text())
        run["ratios"] = ratios(run["results"])
        run["depth_ratios"] = depth_ratios(run["results"])
        path.with_suffix(".md").write_text(render_markdown(run))
        sys.stdout.write(render_table(run["results"]) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
