"""``var/dev.env``: the settings ``make run`` gives its processes, for every other command.

``make run`` (``ticker/stack.py``) writes this file (0600) each time it starts: ``DEBUG``,
its ``SECRET_KEY`` and the embedded Valkey's ``REDIS_URL`` with its generated password,
plus whichever of the database and Redis URLs it was given. ``ticker/settings.py`` reads
it first thing, for the names the real environment does not set (the real environment
always wins), so ``manage.py createsuperuser``, ``ticker_status`` or ``celery`` in the same
checkout reach the same database and Redis as the running stack, with nothing exported.

A production host has no such file (nothing there runs ``make run``), so its settings stay
production's: ``DEBUG`` off, ``SECRET_KEY`` required. The test suite points
``TICKER_VAR_DIR`` at a temporary directory, so it never reads a developer's file.

The format is ``NAME=value`` lines, the value taken verbatim (no quotes, no ``$``
expansion: a generated password or a URL may hold any character but a newline), ``#``
comments. Only ``NAMES`` are accepted, and only from a file no other user can read or
write: anything else is refused with a clear error rather than silently applied.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from ticker.private_files import write_private

FILE_NAME = "dev.env"
# What decides whether a command runs as development and which data and servers it reaches.
NAMES = (
    "DEBUG",
    "SECRET_KEY",
    "REDIS_URL",
    "DATABASE_URL",
    "CACHE_URL",
    "CELERY_BROKER_URL",
    "CHANNEL_LAYER_REDIS_URLS",
)
HEADER = (
    "# Written by `make run` (ticker/stack.py) each time it starts: the settings it gave its\n"
    "# processes, read by ticker/settings.py for any name the environment does not set.\n"
)


def parse(text: str, origin: str = FILE_NAME) -> dict[str, str]:
    """The settings in ``text``; a line that is not ``NAME=value`` of a known name is refused."""
    values: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, sep, value = line.partition("=")
        if not sep or name not in NAMES:
            raise ImproperlyConfigured(
                f"{origin} line {number}: expected NAME=value with NAME one of {', '.join(NAMES)}"
            )
        values[name] = value
    return values


def read(var_dir: Path) -> dict[str, str]:
    """The settings of ``var_dir``'s file ({} when there is none), checked to be private."""
    path = Path(var_dir) / FILE_NAME
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return {}
    with os.fdopen(fd) as handle:
        status = os.fstat(handle.fileno())
        # It may name a database and hold passwords: only its owner's to read or change.
        if status.st_uid != os.geteuid() or status.st_mode & 0o077:
            raise ImproperlyConfigured(
                f"{path} must belong to this user with mode 0600 (it is {status.st_mode & 0o777:04o}): "
                "fix it or delete it (`make run` writes it again)"
            )
        return parse(handle.read(), str(path))


def load(var_dir: Path, environ: MutableMapping[str, str] = os.environ) -> dict[str, str]:
    """Apply ``var_dir``'s file to ``environ`` for the names it does not set; returns those applied."""
    applied = {name: value for name, value in read(var_dir).items() if name not in environ}
    environ.update(applied)
    return applied


def write(var_dir: Path, env: Mapping[str, str]) -> Path:
    """Record the ``NAMES`` that ``env`` sets, 0600 from the first byte; returns the file's path."""
    lines = []
    for name in NAMES:
        value = env.get(name)
        if value:
            if "\n" in value or "\r" in value:
                raise ValueError(f"{name} holds a line break: it cannot be written to {FILE_NAME}")
            lines.append(f"{name}={value}\n")
    path = Path(var_dir) / FILE_NAME
    write_private(path, HEADER + "".join(lines))
    return path
