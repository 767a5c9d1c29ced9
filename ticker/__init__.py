"""The Ticker project: settings, ASGI entry point, URLs and the Celery app.

Importing it first pins the process to the release it started from: the entries of
``sys.path`` are resolved through symlinks before any library is imported. A deployment
runs from a link to the current release (``/srv/ticker`` -> a release directory, with its
virtualenv, ``docs/upgrading.md``); without this, a process that started before the link
moved would import every module it had not needed yet (an admin page's, a task's), and
read every template, from the new release beside its old code.
"""

import os as _os
import sys as _sys

_sys.path[:] = [_os.path.realpath(entry) if entry else entry for entry in _sys.path]
__path__[:] = [_os.path.realpath(entry) for entry in __path__]

from ticker.celery import app as celery_app  # noqa: E402 - after the paths are pinned

__all__ = ["celery_app"]
