"""py-spy profiles of a server process during a scenario, summarised into where the time goes.

``py-spy record --format raw`` writes collapsed stacks (``frame;frame;... count``, one
line per distinct stack). ``summarize`` turns them into shares of samples: by the
package whose code was on top of the stack (self time), by function (inclusive and
self), and for a few named functions of interest on the streaming path.
"""

from __future__ import annotations

import re
import shutil
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from bench.procs import ManagedProcess

FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")

# Inclusive shares worth naming in the report: (label, substring of "function (file)").
MARKERS: list[tuple[str, str]] = [
    ("channels aclose_old_connections (per-message DB cleanup hop)", "aclose_old_connections"),
    ("asgiref sync_to_async / thread hop", "asgiref/sync.py"),
    ("channels consumer dispatch", "channels/consumer.py"),
    ("channels_redis pub/sub layer", "channels_redis/pubsub.py"),
    ("channels_redis core layer", "channels_redis/core.py"),
    ("msgpack (layer message (de)serialisation)", "msgpack"),
    ("redis-py client", "/redis/"),
    ("Ticker consumers (dashboard/consumers.py)", "dashboard/consumers.py"),
    ("Ticker protocol (select/ticks_frame)", "dashboard/protocol.py"),
    ("Daphne ASGI glue", "daphne/"),
    ("autobahn WebSocket framing", "autobahn/"),
    ("Twisted reactor and transport", "twisted/"),
    ("asyncio event loop", "asyncio/"),
]


def pyspy_path() -> str | None:
    """py-spy from the venv (next to this interpreter) or from PATH."""
    local = Path(sys.executable).parent / "py-spy"
    if local.exists():
        return str(local)
    return shutil.which("py-spy")


def recorder(pid: int, seconds: float, output: Path, log: Path, env: dict[str, str]) -> ManagedProcess:
    """A py-spy process sampling ``pid`` (without pausing it) for ``seconds`` into ``output``."""
    exe = pyspy_path()
    if exe is None:
        raise RuntimeError("py-spy is not installed (pip install -r requirements-dev.txt)")
    argv = [
        exe,
        "record",
        *("--pid", str(pid), "--duration", str(max(1, round(seconds))), "--rate", "200"),
        *("--format", "raw", "--nolineno", "--nonblocking", "--output", str(output)),
    ]
    return ManagedProcess("py-spy", argv, log, output.parent, env)


def parse_frame(frame: str) -> tuple[str, str]:
    match = FRAME.match(frame.strip())
    if match is None:
        return frame.strip(), ""
    return match.group("func"), match.group("file")


def package_of(path: str) -> str:
    """A short owner for a source path: the site-packages distribution, stdlib module or repo file."""
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
    if "/lib/python3" in path:
        rest = path.split("/lib/python3", 1)[1].split("/", 1)
        module = rest[1] if len(rest) > 1 else path
        return "stdlib " + module.split("/", 1)[0].removesuffix(".py")
    for part in ("dashboard/", "workers/", "ticker/"):
        if part in path:
            return "Ticker " + part + path.split(part, 1)[1]
    return path or "?"


def summarize(collapsed: Path, top: int = 40) -> dict[str, Any]:
    """Shares of samples from a py-spy raw (collapsed-stack) file."""
    self_by_func: Counter[str] = Counter()
    incl_by_func: Counter[str] = Counter()
    by_package: Counter[str] = Counter()
    markers: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if f]
        parsed = [parse_frame(f) for f in frames]
        parsed = [(func, file) for func, file in parsed if file]  # drop thread/process pseudo-frames
        if not parsed:
            continue
        total += count
        leaf_func, leaf_file = parsed[-1]
        self_by_func[f"{leaf_func} ({package_of(leaf_file)})"] += count
        by_package[package_of(leaf_file)] += count
        seen = {f"{func} ({package_of(file)})" for func, file in parsed}
        for name in seen:
            incl_by_func[name] += count
        joined = ";".join(f"{func} ({file})" for func, file in parsed)
        for label, needle in MARKERS:
            if needle in joined:
                markers[label] += count
    if total == 0:
        return {"samples": 0, "categories": [], "top": [], "packages": [], "markers": []}

    def pct(n: int) -> float:
        return round(100.0 * n / total, 1)

    return {
        "samples": total,
        "packages": [(name, pct(n)) for name, n in by_package.most_common(15)],
        "markers": [(label, pct(markers[label])) for label, _ in MARKERS],
        "categories": [(f"self time in {name}", pct(n)) for name, n in by_package.most_common(12)]
        + [(f"inclusive: {label}", pct(markers[label])) for label, _ in MARKERS if markers[label]],
        "top": [
            {"function": name, "inclusive_pct": pct(n), "self_pct": pct(self_by_func.get(name, 0))}
            for name, n in incl_by_func.most_common(top)
        ],
        "top_self": [{"function": name, "self_pct": pct(n)} for name, n in self_by_func.most_common(top)],
    }
