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

# Where a sample's time goes: the first frame from the top of the stack that is not the
# standard library (asyncio, selectors, json...) names the component, by these rules in order.
# py-spy prints paths relative to their sys.path entry ("channels_redis/pubsub.py").
COMPONENTS: list[tuple[str, str]] = [
    ("channels/db.py", "channels: aclose_old_connections / database_sync_to_async (DB cleanup hop)"),
    ("channels_redis/serializers.py", "channels_redis: msgpack deserialise, once per consumer per message"),
    ("channels_redis/", "channels_redis: pub/sub layer (receive, queues)"),
    ("redis/", "redis-py client"),
    ("msgpack/", "msgpack"),
    ("asgiref/", "asgiref: sync_to_async / async_to_sync thread hops"),
    ("dashboard/streams/subscriptions.py", "Ticker: fan-out (Subscriptions.select/accept)"),
    ("dashboard/streams/feed.py", "Ticker: process feeds (shared frames, symbol feed)"),
    ("dashboard/market/store.py", "Ticker: market store reads (subscribe Lua)"),
    ("dashboard/market/protocol.py", "Ticker: protocol (ticks_frame, frame builders)"),
    ("dashboard/", "Ticker: consumers, feed, heartbeat"),
    ("workers/", "Ticker: workers"),
    ("ticker/", "Ticker: server glue"),
    ("autobahn/", "autobahn: WebSocket framing"),
    ("daphne/", "Daphne: ASGI <-> Twisted glue"),
    ("twisted/", "Twisted: transport writes and reactor"),
    ("channels/auth.py", "channels: AuthMiddleware (user load)"),
    ("channels/sessions.py", "channels: SessionMiddleware (session load)"),
    ("channels/", "channels: consumer dispatch, middleware, send wrappers"),
    ("django/contrib/sessions/", "Django: sessions"),
    ("django/db/", "Django: ORM and database"),
    ("django/", "Django"),
]
LOOP = "asyncio event loop itself (scheduling, selectors)"

# Named functions whose inclusive share is worth quoting.
MARKERS: list[tuple[str, str]] = [
    ("aclose_old_connections", "channels/db.py"),
    ("deserialize", "channels_redis/serializers.py"),
    ("receive", "channels_redis/pubsub.py"),
    ("_do_receiving", "channels_redis/pubsub.py"),
    ("dispatch", "channels/consumer.py"),
    ("await_many_dispatch", "channels/utils.py"),
    ("deliver", "dashboard/streams/consumers.py"),
    ("symbol_ticks", "dashboard/streams/consumers.py"),
    ("select", "dashboard/streams/subscriptions.py"),
    ("ticks_frame", "dashboard/market/protocol.py"),
    ("send", "channels/generic/websocket.py"),
    ("handle_reply", "daphne/server.py"),
    ("sendMessage", "autobahn/websocket/protocol.py"),
    ("doWrite", "twisted/internet/abstract.py"),
    ("thread_handler", "asgiref/sync.py"),
]


def is_stdlib(path: str) -> bool:
    top = path.split("/", 1)[0].removesuffix(".py")
    return top in sys.stdlib_module_names or path.startswith("<")


def component_of(stack: list[tuple[str, str]]) -> str:
    """The component a sample is charged to (``stack`` is root first)."""
    for _, path in reversed(stack):
        if is_stdlib(path):
            continue
        for prefix, label in COMPONENTS:
            if path.startswith(prefix):
                return label
        return LOOP if path.startswith("twisted/internet/asyncioreactor.py") else path
    return LOOP


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
        *("--pid", str(pid), "--duration", str(max(1, round(seconds))), "--rate", "250"),
        *("--format", "raw", "--nolineno", "--nonblocking", "--output", str(output)),
    ]
    return ManagedProcess("py-spy", argv, log, output.parent, env)


def parse_frame(frame: str) -> tuple[str, str]:
    match = FRAME.match(frame.strip())
    if match is None:
        return frame.strip(), ""
    return match.group("func"), match.group("file")


def summarize(collapsed: Path, top: int = 40) -> dict[str, Any]:
    """Shares of samples (percent) from a py-spy raw (collapsed-stack) file."""
    self_by_func: Counter[str] = Counter()
    incl_by_func: Counter[str] = Counter()
    by_component: Counter[str] = Counter()
    markers: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text(errors="replace").splitlines():
        stack_text, _, count_text = line.rpartition(" ")
        if not stack_text or not count_text.isdigit():
            continue
        count = int(count_text)
        stack = [parse_frame(f) for f in stack_text.split(";") if f]
        stack = [(func, path) for func, path in stack if path]  # drop thread/process pseudo-frames
        if not stack:
            continue
        total += count
        leaf_func, leaf_path = stack[-1]
        self_by_func[f"{leaf_func} ({leaf_path})"] += count
        by_component[component_of(stack)] += count
        for name in {f"{func} ({path})" for func, path in stack}:
            incl_by_func[name] += count
        frames = set(stack)
        for func, path in MARKERS:
            if (func, path) in frames:
                markers[f"{func} ({path})"] += count
    if total == 0:
        return {"samples": 0, "categories": [], "markers": [], "top": [], "top_self": []}

    def pct(n: int) -> float:
        return round(100.0 * n / total, 1)

    return {
        "samples": total,
        "categories": [(name, pct(n)) for name, n in by_component.most_common()],
        "markers": [(f"{func} ({path})", pct(markers[f"{func} ({path})"])) for func, path in MARKERS],
        "top": [
            {"function": name, "inclusive_pct": pct(n), "self_pct": pct(self_by_func.get(name, 0))}
            for name, n in incl_by_func.most_common(top)
        ],
        "top_self": [{"function": name, "self_pct": pct(n)} for name, n in self_by_func.most_common(top)],
    }
