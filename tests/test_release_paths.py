"""A process imports from the release it started in, not through the link that names it."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = """
import sys
sys.path[:0] = [{release!r}, {site!r}]
import ticker, dashboard, django
print(dashboard.__file__)
print(django.__file__)
"""


def test_modules_are_imported_from_the_resolved_release(tmp_path: Path) -> None:
    # /srv/ticker -> the release, and its virtualenv's site-packages reached through it.
    release = tmp_path / "ticker"
    release.symlink_to(ROOT)
    site = tmp_path / "site-packages"
    site.symlink_to(sysconfig.get_paths()["purelib"])
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "DJANGO_SETTINGS_MODULE"}}
    script = SCRIPT.format(release=str(release), site=str(site))
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    dashboard_file, django_file = done.stdout.split()
    assert dashboard_file.startswith(str(ROOT)), dashboard_file
    assert str(tmp_path) not in django_file, django_file
