"""The package layering, checked on every import statement of the source tree.

| package              | may import (besides the standard library and third parties)        |
|----------------------|--------------------------------------------------------------------|
| dashboard.market     | itself, ticker.metrics; of Django/Channels only settings, layers and setting_changed |
| dashboard.streams    | dashboard (not workers)                                             |
| rest of dashboard    | dashboard except dashboard.streams; never workers                   |
| workers              | dashboard, ticker.metrics, itself                                   |
| ticker               | anything: it wires the others                                       |

The pure modules (protocol, candles, simulator, backfill, alert rules) import neither Django nor Channels;
the stream session (``dashboard/streams/session.py``) imports no I/O library at all.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PURE = {
    "dashboard/market/protocol.py",
    "dashboard/market/candles.py",
    "workers/simulator.py",
    "workers/backfill.py",
    "workers/alert_rules.py",
    "workers/order_book.py",
    "dashboard/market/depth.py",
}
# Settings, the layer API, and the signal that says settings changed (``loop_services``).
# Sans-I/O: driven by events, returning actions; it waits for nothing and touches no socket.
SANS_IO = {"dashboard/streams/session.py", "dashboard/streams/book_channels.py"}
SANS_IO_FORBIDDEN = ("asyncio", "threading", "socket", "redis", "channels", "asgiref", "django")
CORE_FRAMEWORK = ("django.conf", "django.core.signals", "channels.layers", "asgiref.sync")


def imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names += [f"{node.module}.{alias.name}" for alias in node.names]
    return names


def violation(module: str, name: str) -> str | None:
    def within(*prefixes: str) -> bool:
        return any(name == p or name.startswith(p + ".") for p in prefixes)

    if module in PURE and within("django", "channels", "asgiref", "dashboard.models", "ticker"):
        return "a pure module imports a framework"
    if module in SANS_IO and within(*SANS_IO_FORBIDDEN):
        return "the sans-I/O session imports I/O"
    if module.startswith("dashboard/") and within("workers"):
        return "dashboard imports workers"
    if module.startswith("dashboard/market/"):
        if within("dashboard") and not within("dashboard.market"):
            return "the market core imports the rest of dashboard"
        if within("ticker") and not within("ticker.metrics"):
            return "the market core imports ticker"
        if within("django", "channels", "asgiref") and not within(*CORE_FRAMEWORK):
            return "the market core imports Django or Channels beyond settings and the layer API"
    elif (
        module.startswith("dashboard/") and not module.startswith("dashboard/streams/") and within("dashboard.streams")
    ):
        return "dashboard imports its streaming side"
    if module.startswith("workers/") and within("ticker") and not within("ticker.metrics"):
        return "workers import ticker"
    return None


SOURCES = sorted(
    p for pkg in ("dashboard", "workers") for p in (ROOT / pkg).rglob("*.py") if "migrations" not in p.parts
)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_follow_the_layers(path: Path) -> None:
    module = str(path.relative_to(ROOT))
    broken = [(name, why) for name in imports(path) if (why := violation(module, name))]
    assert broken == []


def test_the_checker_sees_a_cycle() -> None:
    assert violation("dashboard/api/market.py", "workers.specs") == "dashboard imports workers"
    assert violation("dashboard/market/store.py", "dashboard.models") is not None
    assert violation("dashboard/admin.py", "dashboard.streams.consumers") is not None
    assert violation("dashboard/market/protocol.py", "django.conf") is not None
    assert violation("dashboard/streams/session.py", "asyncio") is not None
    assert violation("workers/producer.py", "dashboard.market.store") is None
