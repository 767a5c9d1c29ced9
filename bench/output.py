"""A run's record: the machine and versions, the results JSON, the markdown summary, the charts, the printout.

``document`` gathers what ``bench.run`` measured into the results JSON (its keys are what
``bench.report`` and ``bench.charts`` read back); ``write`` writes it, the markdown and
the charts into the results directory; ``print_summary`` prints the tables at the end.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import subprocess
from dataclasses import asdict
from importlib import metadata
from pathlib import Path
from typing import Any

from bench import charts, report
from bench.plan import Config
from bench.procs import REPO, raise_nofile_limit

logger = logging.getLogger("bench")

# The distributions whose versions go with every run.
VERSIONS = ("Django", "channels", "channels-redis", "daphne", "redis", "websockets", "Twisted", "orjson")
# Seconds a ``git`` query may take before the run goes on without its answer.
GIT_TIMEOUT_S = 10


def git(*args: str) -> str:
    """The output of ``git -C REPO ARGS`` ("" when git fails)."""
    try:
        return subprocess.run(  # noqa: S603
            ["git", "-C", str(REPO), *args],  # noqa: S607
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_S,
            check=True,
        ).stdout.strip()
    except (subprocess.SubprocessError, OSError):
        return ""


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo ("" elsewhere)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return ""


def environment(commit: str, dirty: bool, busy_before: float | None) -> dict[str, Any]:
    """The commit measured, the machine and the versions of the stack."""
    versions = {}
    for dist in VERSIONS:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[dist] = metadata.version(dist)
    return {
        "commit": commit,
        "dirty": dirty,
        "cpus": os.cpu_count(),
        "cpu_model": cpu_model(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
        "nofile": raise_nofile_limit(),
        "busy_before_pct": busy_before,
    }


def document(
    *,
    stamp: str,
    elapsed_s: float,
    config: Config,
    env: dict[str, Any],
    results: list[dict[str, Any]],
    skipped: list[str],
    profiles: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    """The results JSON of a run."""
    return {
        "stamp": stamp,
        "elapsed_s": round(elapsed_s, 1),
        "config": asdict(config),
        "environment": env,
        "results": results,
        "ratios": report.ratios(results),
        "depth_ratios": report.depth_ratios(results),
        "skipped": skipped,
        "profile": profiles.get("profile"),
        "depth_profile": profiles.get("depth_profile"),
        "storm_profile": profiles.get("storm_profile"),
    }


def write(doc: dict[str, Any], out: Path) -> tuple[Path, Path]:
    """Write ``<stamp>.json``, ``<stamp>.md`` (atomically) and the charts (their names in ``doc["charts"]``)."""
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / f"{doc['stamp']}.json", out / f"{doc['stamp']}.md"
    for path, text in ((json_path, json.dumps(doc, indent=1) + "\n"), (md_path, report.render_markdown(doc))):
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(text)
        tmp.replace(path)
    try:
        doc["charts"] = [p.name for p in charts.write_charts(doc, out)]
    except Exception:
        logger.exception("charts not drawn")
    return json_path, md_path


def print_summary(doc: dict[str, Any], json_path: Path, md_path: Path) -> None:
    """The tables at the end of a run: every scenario, the storms, the ratios, what was not run."""
    print(report.render_table(doc["results"]))
    depth = report.render_depth(doc["results"])
    if depth:
        print("\nDepth and trades (every symbol's ticks + one symbol's depth and trades per dashboard):")
        print(depth)
        if doc.get("depth_ratios"):
            print(report.render_depth_ratios(doc["depth_ratios"]))
    storms = report.render_storms(doc["results"])
    if storms:
        print("\nStorms (Ticker, one Daphne):")
        print(storms)
    if doc["ratios"]:
        print("\nTicker against the references (same run):")
        print(report.render_ratios(doc["ratios"]))
    if doc["skipped"]:
        print("\nNot run: " + "; ".join(doc["skipped"]))
    shown = json_path.relative_to(REPO) if json_path.is_relative_to(REPO) else json_path
    print(f"\nWritten: {shown} and {md_path.name}" + "".join(f", {name}" for name in doc.get("charts", [])))
