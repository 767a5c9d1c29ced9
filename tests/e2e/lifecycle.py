"""Start a group of processes for a test module, and always stop it, with its logs on failure."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Protocol, TypeVar

logger = logging.getLogger(__name__)


class ProcessGroup(Protocol):
    def start(self) -> None: ...
    def stop(self) -> None: ...
    def logs(self) -> str: ...


G = TypeVar("G", bound=ProcessGroup)


@contextlib.contextmanager
def started(group: G) -> Iterator[G]:
    try:
        group.start()
    except BaseException:
        # The process logs are the only trace of why one of them did not come up.
        logger.error("a process did not come up:\n%s", group.logs())
        group.stop()
        raise
    try:
        yield group
    finally:
        group.stop()
