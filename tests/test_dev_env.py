"""``var/dev.env``: written private by ``make run``, read for what the environment leaves unset,
refused when others could read or change it or when it names anything but its settings."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from ticker import dev_env

URL = "redis://:p@ss#w$rd=@127.0.0.1:6399/0"


def test_what_make_run_writes_is_read_back_verbatim_and_private(tmp_path: Path) -> None:
    env = {"DEBUG": "1", "REDIS_URL": URL, "SECRET_KEY": "k" * 60, "PATH": "/bin", "DATABASE_URL": ""}
    path = dev_env.write(tmp_path, env)
    assert path.stat().st_mode & 0o777 == 0o600
    assert dev_env.read(tmp_path) == {"DEBUG": "1", "SECRET_KEY": "k" * 60, "REDIS_URL": URL}


def test_the_real_environment_wins(tmp_path: Path) -> None:
    dev_env.write(tmp_path, {"DEBUG": "1", "REDIS_URL": URL})
    environ = {"DEBUG": "0"}
    assert dev_env.load(tmp_path, environ) == {"REDIS_URL": URL}
    assert environ == {"DEBUG": "0", "REDIS_URL": URL}


def test_no_file_changes_nothing(tmp_path: Path) -> None:
    environ: dict[str, str] = {}
    assert dev_env.load(tmp_path, environ) == {}
    assert environ == {}


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660])
def test_a_file_others_may_read_or_change_is_refused(tmp_path: Path, mode: int) -> None:
    dev_env.write(tmp_path, {"DEBUG": "1"})
    (tmp_path / dev_env.FILE_NAME).chmod(mode)
    with pytest.raises(ImproperlyConfigured, match="mode 0600"):
        dev_env.load(tmp_path, {})


@pytest.mark.parametrize("line", ["PATH=/tmp/evil", "DEBUG", "TICKER_VAR_DIR=/elsewhere"])
def test_anything_but_its_settings_is_refused_with_the_line(tmp_path: Path, line: str) -> None:
    dev_env.write(tmp_path, {"DEBUG": "1"})
    with (tmp_path / dev_env.FILE_NAME).open("a") as handle:
        handle.write(line + "\n")
    with pytest.raises(ImproperlyConfigured, match="line 4: expected NAME=value"):
        dev_env.load(tmp_path, {})


def test_a_value_with_a_line_break_is_not_written(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="line break"):
        dev_env.write(tmp_path, {"DATABASE_URL": "sqlite:///x\nDEBUG=1"})
    assert not (tmp_path / dev_env.FILE_NAME).exists()
