"""Charts of a benchmark run, as hand-written SVG (no plotting dependency).

``write_charts(doc, directory)`` writes, next to the run's JSON:

* ``<stamp>-p99.svg``: tick-to-client p99 against dashboards, one line per target and rate;
* ``<stamp>-cpu.svg``: web CPU per frame against dashboards, same lines (log scale);
* ``<stamp>-storms.svg``: time to all-live in the connect and restart storms, against the 15 s target.

``python -m bench.charts RESULTS.json`` redraws them from a saved run.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Mapping, Sequence
from html import escape
from pathlib import Path
from typing import Any

WIDTH, HEIGHT = 640, 380
LEFT, RIGHT, TOP, BOTTOM = 70, 170, 40, 50
COLOURS = {"ticker": "#1f77b4", "floor": "#2ca02c", "naive": "#d62728"}
DASHES = {200.0: "", 1000.0: "6 4"}
STORM_TARGET_S = 15.0
P99_TARGET_MS = 250


def _series(results: Sequence[Mapping[str, Any]], key: str) -> dict[tuple[str, float], list[tuple[float, float]]]:
    """(target, rate) -> [(dashboards, value)] for the one-process fan-out scenarios."""
    out: dict[tuple[str, float], list[tuple[float, float]]] = {}
    for r in results:
        if r.get("kind") != "stream" or r.get("web_procs", 1) != 1 or r.get("profiled") or r.get(key) is None:
            continue
        out.setdefault((r["target"], float(r["rate"])), []).append((float(r["clients_requested"]), float(r[key])))
    return {k: sorted(v) for k, v in out.items()}


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    exp = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * exp:
            return step * exp
    return 10 * exp


def _frame(title: str, x_label: str, y_label: str) -> list[str]:
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}"'
        ' font-family="sans-serif" font-size="12">',
        f"<title>{escape(title)}</title>",
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
        f'<text x="{LEFT}" y="22" font-size="14" font-weight="bold">{escape(title)}</text>',
        f'<text x="{LEFT + (WIDTH - LEFT - RIGHT) / 2}" y="{HEIGHT - 10}"'
        f' text-anchor="middle">{escape(x_label)}</text>',
        f'<text transform="translate(16 {TOP + (HEIGHT - TOP - BOTTOM) / 2}) rotate(-90)"'
        f' text-anchor="middle">{escape(y_label)}</text>',
    ]


def line_chart(
    series: Mapping[tuple[str, float], list[tuple[float, float]]],
    title: str,
    y_label: str,
    *,
    log: bool = False,
    target: float | None = None,
    target_label: str = "",
) -> str:
    """Lines of value against dashboards, one per (target, rate)."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    xs = [x for points in series.values() for x, _ in points] or [1.0]
    ys = [y for points in series.values() for _, y in points if y > 0] or [1.0]
    x_max = _nice_max(max(xs))
    if log:
        y_lo = 10 ** math.floor(math.log10(min(ys)))
        y_hi = 10 ** math.ceil(math.log10(max(ys + ([target] if target else []))))
        if y_hi <= y_lo:
            y_hi = y_lo * 10

        def sy(y: float) -> float:
            y = max(y, y_lo)
            return TOP + plot_h - (math.log10(y) - math.log10(y_lo)) / (math.log10(y_hi) - math.log10(y_lo)) * plot_h

        ticks = [10**e for e in range(round(math.log10(y_lo)), round(math.log10(y_hi)) + 1)]
    else:
        y_hi = _nice_max(max(ys + ([target] if target else [])) * 1.05)

        def sy(y: float) -> float:
            return TOP + plot_h - y / y_hi * plot_h

        ticks = [y_hi * i / 5 for i in range(6)]

    def sx(x: float) -> float:
        return LEFT + x / x_max * plot_w

    out = _frame(title, "dashboards on one process", y_label)
    out.append('<g stroke="#ccc">')
    for t in ticks:
        out.append(f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{sy(t):.1f}" y2="{sy(t):.1f}"/>')
    out.append("</g>")
    for t in ticks:
        label = f"{t:g}"
        out.append(f'<text x="{LEFT - 6}" y="{sy(t) + 4:.1f}" text-anchor="end">{label}</text>')
    for i in range(6):
        x = x_max * i / 5
        out.append(f'<text x="{sx(x):.1f}" y="{TOP + plot_h + 18}" text-anchor="middle">{x:g}</text>')
    out.append(
        f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#333" stroke-width="1"/>'
    )
    if target is not None:
        out.append(
            f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{sy(target):.1f}" y2="{sy(target):.1f}"'
            ' stroke="#999" stroke-dasharray="2 3"/>'
            f'<text x="{LEFT + plot_w - 4}" y="{sy(target) - 4:.1f}" text-anchor="end" fill="#666">'
            f"{escape(target_label)}</text>"
        )
    legend_y = TOP + 10
    for (name, rate), points in sorted(series.items()):
        colour = COLOURS.get(name, "#555")
        dash = DASHES.get(rate, "2 2")
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in points)
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"{dash_attr}/>')
        for x, y in points:
            out.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3" fill="{colour}"/>')
        lx = LEFT + plot_w + 12
        out.append(
            f'<line x1="{lx}" x2="{lx + 24}" y1="{legend_y}" y2="{legend_y}" stroke="{colour}" stroke-width="2"'
            f"{dash_attr}/>"
            f'<text x="{lx + 30}" y="{legend_y + 4}">{escape(name)} @{rate:.0f} t/s</text>'
        )
        legend_y += 18
    out.append("</svg>")
    return "\n".join(out) + "\n"


def storm_chart(results: Sequence[Mapping[str, Any]], title: str) -> str:
    """Horizontal bars: time to all-live per storm (the last dashboard's time when some never made it)."""
    rows = [r for r in results if r.get("kind") in ("storm", "restart")]
    plot_w = WIDTH - LEFT - 60 - 150
    height = TOP + 50 + 44 * max(1, len(rows))
    values = [r.get("all_live_s") or r.get("last_live_s") or 0.0 for r in rows]
    x_max = _nice_max(max([*values, STORM_TARGET_S]) * 1.1)
    left = LEFT + 150

    def sx(x: float) -> float:
        return left + x / x_max * plot_w

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}"'
        ' font-family="sans-serif" font-size="12">',
        f"<title>{escape(title)}</title>",
        f'<rect width="{WIDTH}" height="{height}" fill="white"/>',
        f'<text x="{LEFT}" y="22" font-size="14" font-weight="bold">{escape(title)}</text>',
    ]
    y = TOP + 10
    for r, value in zip(rows, values, strict=True):
        done = r.get("all_live_s") is not None
        colour = "#1f77b4" if done else "#d62728"
        label = r["scenario"].replace(" @", "\n@").split("\n")[0]
        detail = (
            f"{value:.1f} s"
            + ("" if done else " (not all)")
            + f", {r.get('failed_handshakes', 0)} failed, {r.get('unavailable', 0)} unavailable"
        )
        if r.get("kind") == "storm" and r.get("p99_ms") is not None:
            detail += f", connected p99 {r['p99_ms']} ms"
        if r.get("kind") == "restart":
            detail += f", {r.get('resnapshot_symbols', 0)} snapshots"
        out.append(f'<text x="{left - 8}" y="{y + 16}" text-anchor="end">{escape(label)}</text>')
        out.append(f'<rect x="{left}" y="{y}" width="{max(1.0, sx(value) - left):.1f}" height="22" fill="{colour}"/>')
        out.append(f'<text x="{left}" y="{y + 36}" fill="#333">{escape(detail)}</text>')
        y += 44
    out.append(
        f'<line x1="{sx(STORM_TARGET_S):.1f}" x2="{sx(STORM_TARGET_S):.1f}" y1="{TOP}" y2="{y}"'
        ' stroke="#999" stroke-dasharray="2 3"/>'
        f'<text x="{sx(STORM_TARGET_S) + 4:.1f}" y="{TOP + 4}" fill="#666">target {STORM_TARGET_S:g} s</text>'
    )
    for i in range(6):
        x = x_max * i / 5
        out.append(f'<text x="{sx(x):.1f}" y="{y + 16}" text-anchor="middle">{x:g} s</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def write_charts(doc: Mapping[str, Any], directory: Path) -> list[Path]:
    """The run's charts, written next to its JSON; returns their paths."""
    results = doc.get("results", [])
    stamp = doc["stamp"]
    written = []
    p99 = _series(results, "p99_ms")
    if p99:
        path = directory / f"{stamp}-p99.svg"
        path.write_text(
            line_chart(
                p99,
                f"p99 tick to client, 50 symbols per dashboard ({stamp})",
                "p99 ms (log)",
                log=True,
                target=P99_TARGET_MS,
                target_label=f"{P99_TARGET_MS} ms",
            )
        )
        written.append(path)
    cpu = _series(results, "cpu_per_frame_ms")
    if cpu:
        path = directory / f"{stamp}-cpu.svg"
        path.write_text(line_chart(cpu, f"Web CPU per frame ({stamp})", "ms CPU per frame (log)", log=True))
        written.append(path)
    if any(r.get("kind") in ("storm", "restart") for r in results):
        path = directory / f"{stamp}-storms.svg"
        path.write_text(storm_chart(results, f"Storms on one Daphne: time to all live ({stamp})"))
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.charts RESULTS.json...``: (re)draw the charts of saved runs."""
    for name in sys.argv[1:] if argv is None else argv:
        path = Path(name)
        for written in write_charts(json.loads(path.read_text()), path.parent):
            sys.stdout.write(f"{written}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
