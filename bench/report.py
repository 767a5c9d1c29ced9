"""Turning scenario results into the printed table, the ratios and the markdown summary."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

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
    ("web CPU%", "web_cpu_pct", ".0f"),
    ("web RSS MiB", "web_rss_mib", ".0f"),
    ("stack CPU%", "stack_cpu_pct", ".0f"),
    ("client CPU%", "client_cpu_text", "s"),
    ("ms CPU/frame", "cpu_per_frame_ms", ".3f"),
    ("KiB/conn", "kib_per_conn", ".1f"),
]


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
                }
            )
    return out


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
        )
    return "\n".join(lines)


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
        " | CPU/frame ratio | Ticker / ref ms CPU/frame |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in run.get("ratios", []):
        lines.append(
            f"| {r['load']} | {r['reference']} | {_fmt(r['delivered_ratio'], '.2f')} |"
            f" {_fmt(r['ticker_delivered_pct'], '.1f', '%')} / {_fmt(r['ref_delivered_pct'], '.1f', '%')} |"
            f" {_fmt(r['p99_ratio'], '.2f')} | {_fmt(r['ticker_p99_ms'], 'd')} / {_fmt(r['ref_p99_ms'], 'd')} |"
            f" {_fmt(r['cpu_per_frame_ratio'], '.1f')} |"
            f" {_fmt(r['ticker_cpu_per_frame_ms'], '.3f')} / {_fmt(r['ref_cpu_per_frame_ms'], '.3f')} |"
        )
    notes = [f"- **{r['target']} {r['scenario']}**: {'; '.join(r['notes'])}" for r in run["results"] if r.get("notes")]
    if notes:
        lines += ["", "## Notes", "", *notes]
    skipped = run.get("skipped", [])
    if skipped:
        lines += ["", "## Not run", "", *(f"- {s}" for s in skipped)]
    profile = run.get("profile")
    if profile:
        lines += ["", f"## Profile: {profile['scenario']} (py-spy, {profile['samples']} samples of Daphne)", ""]
        lines += ["| share of samples | where |", "|---|---|"]
        for name, pct in profile["categories"]:
            lines.append(f"| {pct:.1f} % | {name} |")
        lines += ["", "| inclusive | self | function |", "|---|---|---|"]
        for row in profile["top"][:25]:
            lines.append(f"| {row['inclusive_pct']:.1f} % | {row['self_pct']:.1f} % | `{row['function']}` |")
    lines.append("")
    return "\n".join(lines)
