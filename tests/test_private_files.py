"""Private files: 0600 whatever the umask or the mode a file had, and never through a symlink."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ticker.private_files import write_private


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_a_new_file_is_0600_even_with_an_open_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        write_private(tmp_path / "secret", "s3cret\n")
    finally:
        os.umask(old)
    assert mode(tmp_path / "secret") == 0o600
    assert (tmp_path / "secret").read_text() == "s3cret\n"


def test_a_readable_file_is_restricted_and_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_text("an old, longer content")
    path.chmod(0o644)
    write_private(path, "new")
    assert (mode(path), path.read_text()) == (0o600, "new")


def test_a_symlink_at_the_path_is_not_followed(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("untouched")
    (tmp_path / "secret").symlink_to(target)
    with pytest.raises(OSError, match="symbolic link"):
        write_private(tmp_path / "secret", "s3cret")
    assert target.read_text() == "untouched"
