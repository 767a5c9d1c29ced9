"""From what the load clients and the process sampler reported to a scenario's figures: pure maths, no I/O.

The load clients print one JSON line each ("connected", "result", "back"); the sampler
gives CPU seconds, % of a core and RSS per process; the producer's progress is a ``seq``
per symbol read at two instants. Everything here turns those into the numbers of the
results JSON and the printed tables (``bench.report`` renders them). Nothing reads a
clock, a file or a socket, so every function is tested in ``tests/bench/test_results.py``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

Line = Mapping[str, Any]
Lines = Sequence[Line]
Usage = Mapping[str, Mapping[str, float]]
# The producer's latest seq per symbol and the monotonic time it was read at.
SeqMark = tuple[Mapping[str, int], float]

# A load-client process above this share of a core is the bottleneck: figures are bounded by it.
CLIENT_SATURATED_PCT = 90
# Other processes above this share of a core during a window are worth a note beside the figures.
OTHER_CPU_NOTE_PCT = 15
# The long-run producer rate replaces the scenario's own when the two agree within this fraction
# (seq advances in whole windows, so a span of seconds is +-1 window off; minutes are precise).
STEADY_RATE_AGREEMENT = 0.1
# A producer further than this fraction from the asked rate gets a note.
PRODUCER_RATE_TOLERANCE = 0.15
MIB = 2**20
KIB = 1024


# --- histograms -----------------------------------------------------------------------------


def merge_hist(hists: Iterable[Mapping[str, int]]) -> dict[int, int]:
    """Sum 1 ms latency histograms (JSON keys are strings)."""
    merged: dict[int, int] = {}
    for hist in hists:
        for key, count in hist.items():
            merged[int(key)] = merged.get(int(key), 0) + count
    return merged


def percentile(hist: Mapping[int, int], q: float) -> int | None:
    """The smallest latency (ms) at or below which a fraction ``q`` of ticks arrived."""
    total = sum(hist.values())
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for value in sorted(hist):
        seen += hist[value]
        if seen >= rank:
            return value
    return max(hist)


# --- summing the load clients' lines --------------------------------------------------------


def total(lines: Iterable[Line], key: str) -> int:
    """The sum of ``key`` over the lines (a line without it counts 0)."""
    return sum(line.get(key, 0) for line in lines)


def merge_counts(counts: Iterable[Mapping[str, int]]) -> dict[str, int]:
    """Sum count dictionaries (failure reasons, close codes, frame types, error codes)."""
    merged: dict[str, int] = {}
    for count in counts:
        for key, n in count.items():
            merged[key] = merged.get(key, 0) + n
    return merged


def clients_text(done: int, of: int) -> str:
    """``"290/300"`` when some did not get through, ``"300"`` when all did."""
    return f"{done}/{of}" if done != of else str(done)


def client_cpu_text(total_pct: float, procs: int, saturated: bool) -> str:
    """The client CPU column: ``"36/1p"``, with ``" sat"`` when a process was CPU-bound."""
    return f"{total_pct:.0f}/{procs}p{' sat' if saturated else ''}"


def connection_summary(lines: Lines, procs: int) -> tuple[dict[str, Any], list[str]]:
    """Connected dashboards, failed attempts by reason, retries and the slowest process's connect time."""
    figures = {
        "clients_connected": total(lines, "connected"),
        "connect_failures": merge_counts(line.get("failures", {}) for line in lines),
        "connect_retries": total(lines, "retries"),
        "connect_seconds": max((line.get("seconds", 0) for line in lines), default=None),
    }
    notes = [f"{procs - len(lines)} load-client processes never reported"] if len(lines) < procs else []
    return figures, notes


def other_cpu_note(other_cpu_pct: float, during: str) -> list[str]:
    """A note when other processes took a noticeable share of a core ``during`` the window or storm."""
    if other_cpu_pct > OTHER_CPU_NOTE_PCT:
        return [f"other processes on this machine used {other_cpu_pct:.0f} % of a core during the {during}"]
    return []


# --- the sampler's figures -------------------------------------------------------------------


def process_usage(cpu_s: float, elapsed: float, rss: int, peak_rss: int) -> dict[str, float]:
    """One process's entry: CPU seconds, % of one core over ``elapsed``, RSS now and at peak (MiB)."""
    return {
        "cpu_s": round(cpu_s, 3),
        "cpu_pct": round(100.0 * cpu_s / elapsed, 1),
        "rss_mib": round(rss / MIB, 1),
        "peak_rss_mib": round(peak_rss / MIB, 1),
    }


def busy_pct(cpu_s: float, elapsed: float) -> float:
    """CPU seconds over ``elapsed`` as % of one core (never negative)."""
    return round(100.0 * max(cpu_s, 0.0) / elapsed, 1)


def host_breakdown(before: Mapping[str, float], after: Mapping[str, float], elapsed: float) -> dict[str, float]:
    """The machine's CPU time by kind (user, system, softirq, steal...) over ``elapsed``, % of one core."""
    return {
        kind: round(100.0 * (after[kind] - before[kind]) / elapsed, 1)
        for kind in after
        if kind not in ("idle", "guest", "guest_nice")
    }


# --- the producer's rate ---------------------------------------------------------------------


def symbol_rates(symbols: Sequence[str], start: SeqMark, end: SeqMark) -> dict[str, float]:
    """Ticks/s per symbol between two readings of the producer's seqs (0 over an empty span)."""
    seconds = end[1] - start[1]
    if seconds <= 0:
        return dict.fromkeys(symbols, 0.0)
    return {s: (end[0][s] - start[0][s]) / seconds for s in symbols}


def producer_rates(symbols: Sequence[str], start: SeqMark, long_start: SeqMark, end: SeqMark) -> tuple[float, dict]:
    """The producer's ticks/s over the scenario, and per symbol the most precise rate that agrees with it.

    ``start`` is the scenario's own reading, ``long_start`` the one taken when the rate was
    set (minutes earlier, precise); the long-run rates are used when their total is within
    ``STEADY_RATE_AGREEMENT`` of the scenario's (the producer kept its pace).
    """
    per_symbol = symbol_rates(symbols, start, end)
    producer_tps = sum(per_symbol.values())
    steady = symbol_rates(symbols, long_start, end)
    if abs(sum(steady.values()) - producer_tps) <= STEADY_RATE_AGREEMENT * producer_tps:
        per_symbol = steady
    return producer_tps, per_symbol


def expected_tps(per_symbol: Mapping[str, float], subscribed: Sequence[str], clients: int) -> float:
    """Ticks/s that should arrive: the producer's rate of the subscribed symbols times the dashboards."""
    return sum(per_symbol[s] for s in subscribed) * clients


# --- a fan-out window ------------------------------------------------------------------------


def _per_frame_ms(cpu_s: float, frames: int, ticks: int) -> float | None:
    """Milliseconds of CPU per frame received, or None when nothing (or no tick) arrived."""
    return round(1000.0 * cpu_s / frames, 4) if frames and ticks else None


def web_cpu_seconds(usage: Usage, web_names: Sequence[str]) -> float:
    """CPU seconds of the web processes over the window."""
    return sum(usage[n]["cpu_s"] for n in web_names if n in usage)


# The load balancer's process name, when a target runs one.
BALANCER = "haproxy"


def cpu_figures(usage: Usage, web_names: Sequence[str], frames: int, ticks: int, dashboard_s: float) -> dict[str, Any]:
    """CPU and memory of the web processes, the whole stack and the load clients over a window
    (``dashboard_s``: dashboards x seconds of it)."""
    client_names = [n for n in usage if n.startswith("client")]
    server_names = [n for n in usage if n not in client_names]
    web = [n for n in web_names if n in usage]
    web_cpu_s = web_cpu_seconds(usage, web_names)
    stack_cpu_s = sum(usage[n]["cpu_s"] for n in server_names)
    client_pcts = [usage[n]["cpu_pct"] for n in client_names]
    balancer = {}
    if BALANCER in usage:  # HAProxy in front of the web processes (bench/capacity.py)
        lb_s = usage[BALANCER]["cpu_s"]
        balancer = {
            "balancer_cpu_pct": round(usage[BALANCER]["cpu_pct"], 1),
            "balancer_us_per_tick": round(1e6 * lb_s / ticks, 3) if ticks else None,
        }
    if "redis" in usage:  # the channel layer's and the market's Redis
        balancer["redis_cpu_pct"] = round(usage["redis"]["cpu_pct"], 1)
    return {
        **balancer,
        "web_cpu_pct": round(sum(usage[n]["cpu_pct"] for n in web), 1),
        "web_rss_mib": round(sum(usage[n]["rss_mib"] for n in web), 1),
        "stack_cpu_pct": round(sum(usage[n]["cpu_pct"] for n in server_names), 1),
        "client_cpu_pct": round(sum(client_pcts), 1),
        "client_cpu_max_pct": max(client_pcts, default=0.0),
        "client_procs": len(client_names),
        "cpu_per_frame_ms": _per_frame_ms(web_cpu_s, frames, ticks),
        "stack_cpu_per_frame_ms": _per_frame_ms(stack_cpu_s, frames, ticks),
        # Per delivered tick: the comparison that holds when two servers send different frames.
        "cpu_us_per_tick": round(1e6 * web_cpu_s / ticks, 3) if ticks else None,
        "cpu_us_per_dashboard_s": round(1e6 * web_cpu_s / dashboard_s, 1) if dashboard_s and ticks else None,
    }


def fanout_figures(
    lines: Lines,
    usage: Usage,
    web_names: Sequence[str],
    *,
    duration: float,
    producer_tps: float,
    expected: float,
) -> dict[str, Any]:
    """A fan-out window's figures, in the results JSON's order: delivery, latency, traffic, CPU."""
    ticks = total(lines, "ticks")
    frames = total(lines, "frames")
    hist = merge_hist(line.get("latency_hist", {}) for line in lines)
    delivered = ticks / duration
    dashboard_s = total(lines, "alive") * duration
    return {
        "duration_s": duration,
        "producer_tps": round(producer_tps, 1),
        "expected_tps": round(expected, 1),
        "delivered_tps": round(delivered, 1),
        "delivered_pct": round(100.0 * delivered / expected, 1) if expected else None,
        "lost": total(lines, "lost"),
        "duplicates": total(lines, "duplicates"),
        "p50_ms": percentile(hist, 0.50),
        "p99_ms": percentile(hist, 0.99),
        "max_ms": max((line.get("max_latency_ms", 0) for line in lines), default=None) if ticks else None,
        "frames_per_s": round(frames / duration, 1),
        "frames_per_dashboard_s": round(frames / dashboard_s, 2) if dashboard_s else None,
        "ticks_per_frame": round(ticks / max(1, total(lines, "tick_frames")), 1),
        "mbytes_per_s": round(total(lines, "bytes") / duration / 1e6, 2),
        **cpu_figures(usage, web_names, frames, ticks, dashboard_s),
        "processes": usage,
        "closed_codes": merge_counts(line.get("closed_codes", {}) for line in lines),
        "frame_types": merge_counts(line.get("frame_types", {}) for line in lines),
        "errors": total(lines, "errors"),
        "alive_at_end": total(lines, "alive"),
    }


def fanout_texts(result: Mapping[str, Any], requested: int) -> dict[str, str]:
    """The table's text cells of a fan-out result: publish lag, clients, client CPU."""
    texts = {}
    if result.get("publish_lag_p99_ms") is not None:
        texts["publish_lag_text"] = f"{result['publish_lag_p50_ms']}/{result['publish_lag_p99_ms']}"
    texts["clients_text"] = clients_text(result.get("clients_connected", 0), requested)
    saturated = result["client_cpu_max_pct"] >= CLIENT_SATURATED_PCT
    texts["client_cpu_text"] = client_cpu_text(result["client_cpu_pct"], result["client_procs"], saturated)
    return texts


def fanout_notes(
    result: Mapping[str, Any], *, kind: str, rate: float, profiled: bool, producer_tps: float
) -> list[str]:
    """What a reader of a fan-out result should know: closed connections, failures, a slow producer."""
    notes = []
    connected = result.get("clients_connected", 0)
    if result["alive_at_end"] < connected:
        notes.append(
            f"{connected - result['alive_at_end']} connections closed during the run: {result['closed_codes']}"
        )
    if result["connect_failures"]:
        notes.append(
            f"failed handshake attempts (retried with backoff within the connect budget): {result['connect_failures']}"
        )
    if profiled:
        notes.append(
            "a repeat for the profile: py-spy sampled the web process during this window (--nonblocking,"
            " 250 Hz); not used in the comparisons"
        )
    if kind != "idle" and abs(producer_tps - rate) > PRODUCER_RATE_TOLERANCE * rate:
        notes.append(f"producer reached {producer_tps:.0f} of {rate:.0f} ticks/s")
    if result["client_cpu_max_pct"] >= CLIENT_SATURATED_PCT:
        notes.append("a load-client process was CPU-saturated: figures are bounded by the client")
    return notes


# --- the depth scenario: ticks, depth frames and trades --------------------------------------


def messages_delivered(ticks: int, depth_frames: int, trades: int) -> int:
    """Delivered messages: every tick, every ``depth`` frame and every trade, received in the window.

    The unit the depth scenario's cost is counted in: a tick and a trade are each one
    item of a frame's ``data``, a ``depth`` frame is one book update of one symbol (however
    many levels it carries). Snapshots, acks and heartbeats are not counted.
    """
    return ticks + depth_frames + trades


def cpu_us_per_message(web_cpu_s: float, messages: int) -> float | None:
    """Microseconds of web CPU per delivered message (None when nothing arrived)."""
    return round(1e6 * web_cpu_s / messages, 3) if messages else None


def book_figures(lines: Lines, usage: Usage, web_names: Sequence[str], *, duration: float) -> dict[str, Any]:
    """A depth window's own figures: depth frames and trades, their chains and latency, cost per message."""
    ticks = total(lines, "ticks")
    depth_frames = total(lines, "depth_frames")
    trades = total(lines, "trades")
    messages = messages_delivered(ticks, depth_frames, trades)
    depth_hist = merge_hist(line.get("depth_latency_hist", {}) for line in lines)
    trade_hist = merge_hist(line.get("trade_latency_hist", {}) for line in lines)
    book_hist = merge_hist([depth_hist, trade_hist])
    hist = merge_hist([book_hist, merge_hist(line.get("latency_hist", {}) for line in lines)])
    web_cpu_s = web_cpu_seconds(usage, web_names)
    return {
        "messages": messages,
        "delivered_messages_per_s": round(messages / duration, 1),
        "cpu_us_per_message": cpu_us_per_message(web_cpu_s, messages),
        "depth_frames": depth_frames,
        "depth_frames_per_s": round(depth_frames / duration, 1),
        "depth_gaps": total(lines, "depth_gaps"),
        "depth_duplicates": total(lines, "depth_duplicates"),
        "depth_unanchored": total(lines, "depth_unanchored"),
        "depth_resnapshots": total(lines, "depth_resnapshots"),
        "depth_p50_ms": percentile(depth_hist, 0.50),
        "depth_p99_ms": percentile(depth_hist, 0.99),
        "depth_max_ms": max((line.get("depth_max_latency_ms", 0) for line in lines), default=None)
        if depth_frames
        else None,
        "trade_frames": total(lines, "trade_frames"),
        "trades": trades,
        "trades_per_s": round(trades / duration, 1),
        "trade_gaps": total(lines, "trade_gaps"),
        "trade_duplicates": total(lines, "trade_duplicates"),
        "trade_p50_ms": percentile(trade_hist, 0.50),
        "trade_p99_ms": percentile(trade_hist, 0.99),
        "trade_max_ms": max((line.get("trade_max_latency_ms", 0) for line in lines), default=None) if trades else None,
        # Depth frames and trades together, and every message (ticks too).
        "book_p99_ms": percentile(book_hist, 0.99),
        "messages_p99_ms": percentile(hist, 0.99),
        "gaps_outside_window": total(lines, "depth_gaps_total")
        - total(lines, "depth_gaps")
        + total(lines, "trade_gaps_total")
        - total(lines, "trade_gaps"),
        "resnapshots_outside_window": total(lines, "depth_resnapshots_total") - total(lines, "depth_resnapshots"),
    }


def book_notes(result: Mapping[str, Any]) -> list[str]:
    """What a reader of a depth result should know: broken chains, resnapshots, frames before a snapshot."""
    notes = []
    if result["depth_gaps"] or result["trade_gaps"]:
        notes.append(
            f"chains broken in the window: {result['depth_gaps']} depth frames whose U did not follow the"
            f" previous u, {result['trade_gaps']} trades whose id did not follow the previous one"
        )
    if result["depth_resnapshots"]:
        notes.append(f"{result['depth_resnapshots']} depth_snapshot frames re-sent by the server during the window")
    if result["depth_unanchored"]:
        notes.append(f"{result['depth_unanchored']} depth frames arrived before their symbol's depth_snapshot")
    if result["depth_duplicates"] or result["trade_duplicates"]:
        notes.append(
            f"duplicates: {result['depth_duplicates']} depth frames, {result['trade_duplicates']} trades already seen"
        )
    if result["gaps_outside_window"] or result["resnapshots_outside_window"]:
        notes.append(
            f"outside the window (connect, warm-up): {result['gaps_outside_window']} gaps,"
            f" {result['resnapshots_outside_window']} resnapshots"
        )
    return notes


def idle_figures(rss_before: int, rss_after: int, second_batch: int) -> dict[str, float]:
    """Web RSS before and after the second batch of idle connections, and the growth per connection."""
    figures = {"web_rss_before_mib": round(rss_before / MIB, 1), "web_rss_after_mib": round(rss_after / MIB, 1)}
    if second_batch > 0:
        figures["kib_per_conn"] = round((rss_after - rss_before) / second_batch / KIB, 1)
    return figures


# --- storms ----------------------------------------------------------------------------------


def _live_s(last: float, start_at: float) -> float | None:
    return round(last - start_at, 2) if last else None


def storm_figures(
    lines: Lines,
    base_lines: Lines,
    usage: Usage,
    *,
    start_at: float,
    requested: int,
    web: str,
    procs: int,
    concurrency: int,
    base_clients: int,
    other_cpu_pct: float,
) -> dict[str, Any]:
    """A connect storm: who got through, when the last was live, what the connected dashboards saw.

    ``lines`` are the storm's load clients' "connected" lines, ``base_lines`` the "result"
    lines of the dashboards connected before it, ``start_at`` the storm's start (epoch s).
    """
    connected = total(lines, "connected")
    errors = merge_counts(line.get("error_codes", {}) for line in lines)
    last = max((line.get("last_ready_at", 0.0) for line in lines), default=0.0)
    hist = merge_hist(line.get("latency_hist", {}) for line in base_lines)
    storm_pcts = [v["cpu_pct"] for n, v in usage.items() if n.startswith("storm-")]
    return {
        "clients_connected": connected,
        "clients_text": clients_text(connected, requested),
        "connect_failures": merge_counts(line.get("failures", {}) for line in lines),
        "failed_handshakes": requested - connected,
        "error_codes": errors,
        "unavailable": errors.get("unavailable", 0),
        "all_live_s": _live_s(last, start_at) if connected == requested else None,
        "last_live_s": _live_s(last, start_at),
        "storm_concurrency": concurrency,
        "base_clients": base_clients,
        "lost": total(base_lines, "lost"),
        "p50_ms": percentile(hist, 0.50),
        "p99_ms": percentile(hist, 0.99),
        "max_ms": max((line.get("max_latency_ms", 0) for line in base_lines), default=None),
        "base_ticks": total(base_lines, "ticks"),
        "web_cpu_pct": round(usage.get(web, {}).get("cpu_pct", 0.0), 1),
        "web_rss_mib": round(usage.get(web, {}).get("rss_mib", 0.0), 1),
        "other_cpu_pct": other_cpu_pct,
        "client_cpu_text": client_cpu_text(sum(storm_pcts), procs, any(p >= CLIENT_SATURATED_PCT for p in storm_pcts)),
        "duration_s": round(max(line.get("seconds", 0.0) for line in base_lines), 2) if base_lines else None,
    }


def restart_figures(lines: Lines, connected: int, web_restart_s: float) -> dict[str, Any]:
    """A restart storm: how many came back, how soon, and how their symbols were answered."""
    back = total(lines, "back")
    errors = merge_counts(line.get("error_codes", {}) for line in lines)
    last = max((line.get("last_back_s", 0.0) for line in lines), default=None)
    return {
        "clients_text": clients_text(back, connected),
        "web_restart_s": round(web_restart_s, 2),
        "lost_socket": total(lines, "lost_socket"),
        "back": back,
        "all_live_s": last if back == connected and connected else None,
        "last_live_s": last,
        "resumed_symbols": total(lines, "resumed"),
        "resnapshot_symbols": total(lines, "resnapshots"),
        "reconnect_retries": total(lines, "retries"),
        "error_codes": errors,
        "unavailable": errors.get("unavailable", 0),
        "failed_handshakes": connected - back,
    }
