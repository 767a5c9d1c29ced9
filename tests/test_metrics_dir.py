"""The multiprocess directory with real writer processes: dead ones leave the open-connections
sum, their counts stay (folded into one archive), a reused pid inherits nothing, and
one-shot commands write no files."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest, multiprocess
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.parser import text_string_to_metric_families

from ticker import metrics, metrics_dir

ROOT = Path(__file__).resolve().parent.parent
# A writer like a web process: counts, then waits for a line on stdin (or dies first).
WRITER = """
import os, sys
import django
django.setup()
from ticker import metrics, metrics_dir
metrics.CONNECTIONS_OPEN.labels("stream").inc({open})
metrics.FRAMES_SENT.labels("stream").inc({frames})
metrics.PRODUCER_LAG.observe(0.02)
print(metrics_dir.identity(os.getpid()), flush=True)
sys.stdin.readline()
"""


def writer_env(directory: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env.update({"DJANGO_SETTINGS_MODULE": "ticker.settings", "PROMETHEUS_MULTIPROC_DIR": str(directory)})
    return env


def start_writer(directory: Path, open_streams: int, frames: int) -> tuple[subprocess.Popen[str], str]:
    """A live writer process and its id, once its samples are written."""
    process = subprocess.Popen(
        [sys.executable, "-c", WRITER.format(open=open_streams, frames=frames)],
        env=writer_env(directory),
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    writer = process.stdout.readline().strip()  # blocks until it has counted
    assert writer, "the writer printed its id"
    return process, writer


def kill9(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(10)


def scrape(directory: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """What /metrics reports for ``directory``: reaped first, as the view does."""
    with metrics_dir.locked(directory):
        metrics_dir.reap(directory)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=str(directory))
        text = generate_latest(registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


OPEN = ("ticker_connections_open", (("endpoint", "stream"),))
FRAMES = ("ticker_frames_sent_total", (("endpoint", "stream"),))
LAG_COUNT = ("ticker_producer_window_lag_seconds_count", ())


def test_a_killed_writer_leaves_the_gauge_and_keeps_its_counts(tmp_path: Path) -> None:
    first, first_id = start_writer(tmp_path, open_streams=6, frames=100)
    second, _ = start_writer(tmp_path, open_streams=2, frames=10)
    try:
        seen = scrape(tmp_path)
        assert (seen[OPEN], seen[FRAMES], seen[LAG_COUNT]) == (8, 110, 2)
        kill9(first)  # no atexit: its gauge file stays behind, as after a crash
        assert any(first_id in name for name in os.listdir(tmp_path))
        seen = scrape(tmp_path)
        assert seen[OPEN] == 2, "the dead writer's open streams left the sum"
        assert (seen[FRAMES], seen[LAG_COUNT]) == (110, 2), "its counts stayed: no counter went backwards"
        assert not any(first_id in name for name in os.listdir(tmp_path)), "its files were folded away"
        # Every further dead writer is added into the same archive: the directory does not grow.
        for _ in range(2):
            process, _ = start_writer(tmp_path, open_streams=1, frames=5)
            kill9(process)
        seen = scrape(tmp_path)
        assert (seen[OPEN], seen[FRAMES], seen[LAG_COUNT]) == (2, 120, 4)
        dead = sorted(name for name in os.listdir(tmp_path) if name.endswith(".db") and "_dead" in name)
        assert dead == ["counter_dead.db", "histogram_dead.db"]
        live = [name for name in os.listdir(tmp_path) if name.endswith(".db") and "_dead" not in name]
        assert len(live) == 3, live  # the second writer's counter, histogram and gauge files
    finally:
        for process in (first, second):
            if process.poll() is None:
                kill9(process)


def test_a_clean_exit_drops_the_gauge_at_once(tmp_path: Path) -> None:
    process, writer = start_writer(tmp_path, open_streams=4, frames=1)
    assert process.stdin is not None
    process.stdin.write("\n")
    process.stdin.close()
    assert process.wait(10) == 0
    assert not (tmp_path / f"gauge_livesum_{writer}.db").exists(), "atexit removed its live gauge"
    assert (tmp_path / f"counter_{writer}.db").exists(), "its counts wait for the next scrape's fold"
    assert scrape(tmp_path)[FRAMES] == 1


def _fake_gauge(directory: Path, writer: str, value: float) -> Path:
    path = directory / f"gauge_livesum_{writer}.db"
    handle = MmapedDict(str(path))
    key = mmap_key("ticker_connections_open", "ticker_connections_open", ["endpoint"], ["stream"], "x")
    handle.write_value(key, value, 0.0)
    handle.close()
    return path


def test_a_reused_pid_is_another_writer(tmp_path: Path) -> None:
    pid = os.getpid()
    me = metrics_dir.identity(pid)
    assert metrics_dir.alive(me)
    start, boot = me.split("-")[1:]
    # Files of an earlier owner of this very pid: started at another time, or in another boot.
    earlier = _fake_gauge(tmp_path, f"{pid}-{int(start) - 1}-{boot}", 5)
    previous_boot = _fake_gauge(tmp_path, f"{pid}-{start}-00000000", 7)
    mine = _fake_gauge(tmp_path, me, 1)
    assert scrape(tmp_path)[OPEN] == 1
    assert not earlier.exists()
    assert not previous_boot.exists()
    assert mine.exists()


def test_plain_pid_files_are_judged_by_the_pid(tmp_path: Path) -> None:
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(gone.stdout)
    assert not metrics_dir.alive(str(dead_pid))
    assert metrics_dir.alive(str(os.getpid()))
    _fake_gauge(tmp_path, str(dead_pid), 3)
    _fake_gauge(tmp_path, str(os.getpid()), 2)
    assert scrape(tmp_path)[OPEN] == 2


@pytest.mark.parametrize(
    ("argv", "one_shot"),
    [
        (["manage.py", "ticker_status", "--json"], True),
        (["/srv/ticker/manage.py", "migrate", "--noinput"], True),
        (["manage.py", "runserver"], False),
        (["/usr/lib/python3/site-packages/django/__main__.py", "shell"], True),
        (["/srv/ticker/.venv/bin/celery", "-A", "ticker", "worker", "--pool=threads"], False),
        (["celery", "-A", "ticker", "beat"], False),
        (["celery", "-A", "ticker", "inspect", "ping"], True),
        (["/srv/ticker/ticker/server.py", "-b", "127.0.0.1", "ticker.asgi:application"], False),
        (["daphne", "ticker.asgi:application"], False),
        ([], False),
    ],
)
def test_one_shot_commands(argv: list[str], one_shot: bool) -> None:
    assert metrics_dir.one_shot(argv) is one_shot


def test_manage_py_writes_no_metric_files(tmp_path: Path) -> None:
    directory = tmp_path / "prometheus"
    count = "from ticker import metrics; metrics.FRAMES_SENT.labels('stream').inc(); print(metrics.FILES_DIR)"
    env = writer_env(directory)
    done = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", count], env=env, cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "None"
    assert not directory.exists(), "a manage.py command made the metrics directory"
    # The same count from a long-running kind of process (not manage.py) is written.
    script = f"import django; django.setup(); {count}"
    done = subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert any(name.startswith("counter_") for name in os.listdir(directory))


def test_this_process_writes_under_its_identity() -> None:
    assert metrics.FILES_DIR is not None
    writer = metrics_dir.identity(os.getpid())
    assert (metrics.FILES_DIR / f"counter_{writer}.db").exists()
