"""Every label value the code counts under is in ``ticker.metrics.KNOWN_LABELS`` (so it has a
zero series from the start), and every known value is one the code uses.

Literal label values are read from the source (``metrics.X.labels("...")``, both arms of a
conditional); a value computed at run time has a check of its own below, where it comes from.
"""

from __future__ import annotations

import ast
from pathlib import Path

from prometheus_client.metrics import MetricWrapperBase

from dashboard.market.protocol import CloseCode
from dashboard.streams.admission import StreamAdmission
from dashboard.streams.routing import websocket_urlpatterns
from ticker import metrics

ROOT = Path(__file__).resolve().parent.parent
SOURCES = [p for d in ("dashboard", "workers", "ticker") for p in sorted((ROOT / d).rglob("*.py"))]
# (module, family) whose label is computed: each is checked by a test of this module.
COMPUTED = {
    ("dashboard/streams/admission.py", "CONNECTIONS_OPEN"): "test_endpoints_are_the_routes_kinds",
    ("dashboard/streams/consumers.py", "PROTOCOL_CLOSES"): "test_close_codes_are_what_a_client_frame_earns",
    ("dashboard/market/broadcast.py", "CHANNEL_LAYER_ERRORS"): "test_channel_layer_operations_are_the_broadcasts",
    ("ticker/celery.py", "TASK_FAILURES"): "test_task_names_are_the_registered_tasks",
}


def known(family: str) -> set[str]:
    metric = getattr(metrics, family)
    for candidate, label_values in metrics.KNOWN_LABELS:
        if candidate is metric:
            return set(label_values)
    raise AssertionError(f"{family} has no entry in KNOWN_LABELS")


def label_calls() -> list[tuple[str, str, ast.expr]]:
    """``(module, family, label argument)`` of every ``metrics.FAMILY.labels(arg)`` in the source."""
    calls = []
    for path in SOURCES:
        module = str(path.relative_to(ROOT))
        if module == "ticker/metrics.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "labels"):
                continue
            target = node.func.value
            if (
                isinstance(target, ast.Attribute)
                and isinstance(target.value, ast.Name)
                and target.value.id == "metrics"
            ):
                calls += [(module, target.attr, arg) for arg in node.args]
    return calls


def literals(node: ast.expr) -> list[str] | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.IfExp):
        body, orelse = literals(node.body), literals(node.orelse)
        return body + orelse if body is not None and orelse is not None else None
    return None


def test_the_scan_finds_the_code_that_counts() -> None:
    families = {family for _, family, _ in label_calls()}
    assert {"FRAMES_SENT", "TICKS_SENT", "FRAMES_DROPPED", "CONNECTIONS_OPEN", "TASK_FAILURES"} <= families


def test_every_literal_label_value_is_known() -> None:
    computed = set()
    used: dict[str, set[str]] = {}
    for module, family, arg in label_calls():
        values = literals(arg)
        if values is None:
            computed.add((module, family))
            continue
        used.setdefault(family, set()).update(values)
        unknown = set(values) - known(family)
        assert not unknown, f"{module}: {family} labelled {sorted(unknown)}: add them to ticker.metrics KNOWN_LABELS"
    unchecked = computed - set(COMPUTED)
    assert not unchecked, f"computed label values with no check of where they come from: {sorted(unchecked)}"
    # A family labelled by literals only: every known value is one the code still uses.
    for family, values in used.items():
        if not any(family == f for _, f in computed):
            assert values == known(family), f"{family}: known but never used: {sorted(known(family) - values)}"


def test_every_labelled_family_has_known_values() -> None:
    labelled = [
        name for name, value in vars(metrics).items() if isinstance(value, MetricWrapperBase) and value._labelnames
    ]
    assert labelled
    for name in labelled:
        assert known(name), name


def test_endpoints_are_the_routes_kinds() -> None:
    kinds = {p.callback.kind for p in websocket_urlpatterns if isinstance(p.callback, StreamAdmission)}
    assert len(kinds) == len(websocket_urlpatterns)
    assert kinds == set(metrics.ENDPOINTS)
    # The other endpoint-labelled families are counted with literals, checked above.


def _close_codes_in(tree: ast.AST) -> set[str]:
    return {
        str(int(CloseCode[node.attr]))
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "CloseCode"
    }


def test_close_codes_are_what_a_client_frame_earns() -> None:
    # consumers._log_close counts the code StreamSession.client_frame returns: its own, or screen()'s.
    guard = ast.parse((ROOT / "dashboard/streams/guard.py").read_text())
    [screen] = [n for n in ast.walk(guard) if isinstance(n, ast.FunctionDef) and n.name == "screen"]
    session = ast.parse((ROOT / "dashboard/streams/session.py").read_text())
    [client_frame] = [n for n in ast.walk(session) if isinstance(n, ast.FunctionDef) and n.name == "client_frame"]
    assert _close_codes_in(screen) | _close_codes_in(client_frame) == set(metrics.CLOSE_CODES)
    consumers = (ROOT / "dashboard/streams/consumers.py").read_text()
    assert consumers.count("_log_close(self.scope") == consumers.count("session.client_frame(") == 2


def test_channel_layer_operations_are_the_broadcasts() -> None:
    tree = ast.parse((ROOT / "dashboard/market/broadcast.py").read_text())
    operations = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "_send_from_sync":
            [operation] = literals(node.args[2]) or [None]
            assert operation is not None, "a _send_from_sync operation that is not a literal"
            operations.add(operation)
    assert operations == set(metrics.CHANNEL_LAYER_OPERATIONS)


def test_task_names_are_the_registered_tasks() -> None:
    import workers.tasks  # noqa: F401 - registers the tasks
    from ticker.celery import app

    assert {name for name in app.tasks if name.startswith("workers.")} == set(metrics.TASKS)
