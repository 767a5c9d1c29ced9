"""The host's Prometheus multiprocess directory: which processes write it, and what happens
to the files of processes that are gone.

prometheus_client keeps each writer's samples in ``<type>_<id>.db`` files (``gauge_livesum_<id>.db``
for the open-connections gauge) and ``/metrics`` adds them up. Left alone that lies after a
crash: only ``atexit`` removes a process's live gauge, so a ``kill -9`` leaves its open
connections in the sum forever, and every process that ever ran leaves its counter files.

Here:

* a writer's id is ``<pid>-<start time>-<boot>`` (``/proc``: clock ticks since boot, and the
  first 8 hex digits of the boot id), so a reused pid, in this boot or the next, is another
  process with other files, never an heir of the dead one's gauge;
* ``reap`` (run by ``/metrics`` under the directory's lock) finds writers that no longer
  exist on this host: their live-gauge files are deleted (what they had open is closed),
  their counter and histogram files are added into one ``<type>_dead.db`` archive and
  deleted, so counters never go backwards and the directory holds one file per live
  process and type plus the archives, however often processes restart;
* one-shot commands (``manage.py`` other than ``runserver``, ``celery`` other than
  ``worker`` and ``beat``) write nothing: their metrics stay in memory.

Without ``/proc`` (not Linux) an id is the bare pid and liveness is ``kill(pid, 0)``.
The directory belongs to one host (one PID namespace): files of writers this host cannot
see would be judged dead.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from prometheus_client import values
from prometheus_client.mmap_dict import MmapedDict

logger = logging.getLogger(__name__)

ENV = "PROMETHEUS_MULTIPROC_DIR"
ARCHIVE_ID = "dead"
# Types whose samples are sums across processes: a dead writer's part is kept, added up.
FOLDED_TYPES = ("counter", "histogram")
LOCK_NAME = ".lock"  # not *.db: the collector only reads *.db
BOOT_ID_FILE = "/proc/sys/kernel/random/boot_id"


def _read(path: str) -> str | None:
    try:
        with open(path) as handle:
            return handle.read()
    except OSError:
        return None


def boot_id() -> str:
    """This boot's id, shortened (``""`` without ``/proc``)."""
    text = _read(BOOT_ID_FILE)
    return text.strip().replace("-", "")[:8] if text else ""


def start_ticks(pid: int) -> str | None:
    """When ``pid`` started (clock ticks since boot), or None if it does not exist or is a zombie."""
    text = _read(f"/proc/{pid}/stat")
    if text is None:
        return None
    # The command name (2nd field) may hold spaces and parentheses: split after its last ')'.
    fields = text.rpartition(")")[2].split()
    if len(fields) < 20 or fields[0] in ("Z", "X"):
        return None
    return fields[19]  # field 22 of stat(5); fields[0] is field 3


def identity(pid: int) -> str:
    """The id a writer's files are named with."""
    start = start_ticks(pid)
    boot = boot_id()
    return f"{pid}-{start}-{boot}" if start and boot else str(pid)


class ProcessIdentity:
    """``identity(os.getpid())``, computed once per pid: prometheus_client calls it on every write."""

    def __init__(self) -> None:
        self._pid = -1
        self._value = ""

    def __call__(self) -> str:
        pid = os.getpid()
        if pid != self._pid:
            self._value = identity(pid)
            self._pid = pid
        return self._value


def alive(writer: str) -> bool:
    """Whether the writer named ``writer`` (a file's id) still runs on this host."""
    pid_text, _, rest = writer.partition("-")
    if not pid_text.isdigit():
        return True  # an archive, or a name we did not make: never ours to drop
    pid = int(pid_text)
    if rest:
        start, _, boot = rest.partition("-")
        return boot == boot_id() and start_ticks(pid) == start
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, another user's
    return True


def _parse(filename: str) -> tuple[str, str, str] | None:
    """``(type, gauge mode or "", writer id)`` of a ``*.db`` file name."""
    parts = Path(filename).name.removesuffix(".db").split("_")
    if parts[0] == "gauge" and len(parts) == 3:
        return parts[0], parts[1], parts[2]
    if parts[0] != "gauge" and len(parts) == 2:
        return parts[0], "", parts[1]
    return None


@contextlib.contextmanager
def locked(directory: Path) -> Iterator[None]:
    """The directory's lock: one reaper at a time, and no collection sees a fold half done."""
    with open(directory / LOCK_NAME, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _fold(directory: Path, kind: str, files: Sequence[str]) -> None:
    """Add ``files`` into ``<kind>_dead.db`` (sample by sample: counters, buckets and sums all add) and delete them."""
    archive = directory / f"{kind}_{ARCHIVE_ID}.db"
    totals: dict[str, float] = {}
    sources = [str(archive), *files] if archive.exists() else list(files)
    for source in sources:
        for key, value, _timestamp, _pos in MmapedDict.read_all_values_from_file(source):
            totals[key] = totals.get(key, 0.0) + value
    scratch = directory / f".{kind}_{ARCHIVE_ID}.tmp"
    scratch.unlink(missing_ok=True)
    merged = MmapedDict(str(scratch))
    try:
        for key, value in totals.items():
            merged.write_value(key, value, 0.0)
    finally:
        merged.close()
    # The archive changes in one rename; only then do the folded files go (a crash between
    # the two would count them twice: a jump up, never a counter going backwards).
    os.replace(scratch, archive)
    for name in files:
        os.remove(name)


def reap(directory: Path) -> int:
    """Drop the writers of ``directory`` that no longer exist; returns how many. Call under ``locked``."""
    dead: dict[str, list[tuple[str, str, str]]] = {}
    for name in glob.glob(str(directory / "*.db")):
        parsed = _parse(name)
        if parsed is not None and parsed[2] != ARCHIVE_ID:
            dead.setdefault(parsed[2], []).append((name, parsed[0], parsed[1]))
    dead = {writer: files for writer, files in dead.items() if not alive(writer)}
    folds: dict[str, list[str]] = {}
    for files in dead.values():
        for name, kind, mode in files:
            if kind == "gauge" and mode.startswith("live"):
                os.remove(name)  # a live gauge is what the process held: nothing once it is gone
            elif kind in FOLDED_TYPES:
                folds.setdefault(kind, []).append(name)
    for kind, names in folds.items():
        _fold(directory, kind, names)
    if dead:
        logger.info("metrics of %d exited processes folded: %s", len(dead), ", ".join(sorted(dead)))
    return len(dead)


def one_shot(argv: Sequence[str]) -> bool:
    """Whether ``argv`` is a command that runs and exits (its metrics would only leave files behind)."""
    if not argv:
        return False
    program = Path(argv[0])
    words = [arg for arg in argv[1:] if not arg.startswith("-")]
    if program.name in ("manage.py", "django-admin") or (program.parent.name, program.name) == (
        "django",
        "__main__.py",
    ):
        return words[:1] != ["runserver"]
    if program.name == "celery" or (program.parent.name, program.name) == ("celery", "__main__.py"):
        return not {"worker", "beat"} & set(words)
    return False


def forget_live_gauges(directory: Path, writer: str) -> None:
    """Delete ``writer``'s live-gauge files (at a clean exit: its streams are closed)."""
    for name in glob.glob(str(directory / f"gauge_live*_{writer}.db")):
        with contextlib.suppress(FileNotFoundError):
            os.remove(name)


def configure(writes: bool, default: Path) -> Path | None:
    """Choose how this process keeps metrics, before any is created; returns the directory it writes.

    A writer keeps them in ``PROMETHEUS_MULTIPROC_DIR`` (``default`` when unset, created); any
    other process in memory, the variable removed so nothing it starts inherits it by mistake.
    """
    if not writes:
        os.environ.pop(ENV, None)
        values.ValueClass = values.MutexValue
        return None
    directory = Path(os.environ.get(ENV) or default)
    directory.mkdir(parents=True, exist_ok=True)
    os.environ[ENV] = str(directory)
    values.ValueClass = values.MultiProcessValue(ProcessIdentity())
    return directory
