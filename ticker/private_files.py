"""Files only their owner may read: secrets that development writes under ``var/``.

``write_private`` restricts the file before its first byte is written (``os.open`` with
mode 0600, then ``fchmod`` for a file that already existed with a wider mode), so no
other local user can read a password in the gap a ``chmod`` after writing would leave;
and it refuses to follow a symbolic link planted at the path.
"""

from __future__ import annotations

import os
from pathlib import Path

PRIVATE_MODE = 0o600


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path``, readable and writable by its owner only, from the first byte."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, PRIVATE_MODE)
    # O_CREAT's mode applies to a new file only: one that existed keeps its mode otherwise.
    os.fchmod(fd, PRIVATE_MODE)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
