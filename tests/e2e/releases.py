"""The previous release, from git, for the upgrade tests (docs/upgrading.md).

The previous release is the one the newest migration must still run against: the parent of
the commit that added the newest migration of ``dashboard/migrations`` (``HEAD`` itself while
that migration is not committed yet). ``TICKER_UPGRADE_FROM=<commit>`` names another one, to
rehearse an upgrade from further back.

``extract`` writes its tree with ``git archive``; it runs in this virtualenv, so
``missing_requirements`` tells what it needs that is not installed. ``model_columns`` asks the
old code which columns its models read and write; ``schema_problems`` compares them with a
migrated PostgreSQL database.
"""

from __future__ import annotations

import importlib.metadata
import io
import json
import logging
import os
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

import psycopg
from packaging.requirements import InvalidRequirement, Requirement

from tests.e2e.stack import ROOT

logger = logging.getLogger(__name__)

MIGRATIONS = Path("dashboard") / "migrations"

# Printed as JSON by the old release's manage.py shell: every concrete table its models map,
# with the columns its ORM names in SELECTs and INSERTs (auto-created many-to-many tables too).
MODEL_COLUMNS_SCRIPT = """
import json
from django.apps import apps
tables = {}
for model in apps.get_models(include_auto_created=True):
    meta = model._meta
    if meta.managed and not meta.proxy and not meta.swapped:
        tables[meta.db_table] = sorted(f.column for f in meta.concrete_fields)
print("MODEL-COLUMNS " + json.dumps(tables))
"""


@dataclass(frozen=True)
class Release:
    """A commit to upgrade from, and why it was chosen."""

    commit: str
    why: str


def git(*args: str) -> str:
    """``git args`` at the repository root; a failure says that the history is needed."""
    try:
        done = subprocess.run(["git", *args], cwd=ROOT, check=True, capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        stderr = getattr(exc, "stderr", "") or ""
        raise AssertionError(
            f"git {' '.join(args)} failed ({stderr.strip() or exc}): the upgrade tests need the "
            "repository's history (a full `git clone`; in a shallow one, `git fetch --unshallow`)"
        ) from exc
    return done.stdout.strip()


def newest_migration() -> Path:
    """The highest-numbered migration file of ``dashboard/migrations``, relative to the root."""
    files = sorted(p for p in (ROOT / MIGRATIONS).glob("[0-9][0-9][0-9][0-9]_*.py"))
    assert files, f"no migrations under {MIGRATIONS}"
    return files[-1].relative_to(ROOT)


def previous_release() -> Release:
    """The release the newest migration must still run against (see the module docstring)."""
    override = os.environ.get("TICKER_UPGRADE_FROM")
    if override:
        return Release(git("rev-parse", "--verify", f"{override}^{{commit}}"), "TICKER_UPGRADE_FROM")
    if git("rev-parse", "--is-shallow-repository") == "true":
        raise AssertionError("a shallow clone: the upgrade tests need the history (git fetch --unshallow)")
    migration = newest_migration()
    added = git("log", "-1", "--diff-filter=A", "--format=%H", "HEAD", "--", str(migration))
    if not added:
        # Not committed yet: the release running today is HEAD.
        return Release(git("rev-parse", "HEAD"), f"{migration.name} is not committed: HEAD")
    parent = git("rev-parse", "--verify", f"{added}^")
    return Release(parent, f"the parent of {added[:10]}, which added {migration.name}")


def extract(commit: str, dest: Path) -> Path:
    """The tree of ``commit`` written under ``dest`` (``git archive``); returns ``dest``."""
    archive = subprocess.run(["git", "archive", "--format=tar", commit], cwd=ROOT, check=True, capture_output=True)
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(dest, filter="data")
    return dest


def missing_requirements(root: Path) -> list[str]:
    """The requirements of the release in ``root`` that this virtualenv does not provide.

    Another pinned version of an installed distribution is logged, not refused: adjacent
    releases differ in a pin now and then and the old code usually runs on the new one; a
    distribution that is not installed at all is what stops it.
    """
    missing = []
    for line in (root / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        try:
            requirement = Requirement(line)
        except InvalidRequirement:
            missing.append(f"{line} (unparsable)")
            continue
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        try:
            installed = importlib.metadata.version(requirement.name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(str(requirement))
            continue
        if not requirement.specifier.contains(installed, prereleases=True):
            logger.info("the previous release pins %s; %s is installed", requirement, installed)
    return missing


def manage(root: Path, env: dict[str, str], *args: str, timeout: float = 120) -> str:
    """``manage.py args`` of the release in ``root``, from its own tree; its output."""
    done = subprocess.run(
        [sys.executable, str(root / "manage.py"), *args],
        env=env,
        cwd=root,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, f"manage.py {' '.join(args)} ({root}) failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def model_columns(root: Path, env: dict[str, str]) -> dict[str, list[str]]:
    """The tables and columns the models of the release in ``root`` use."""
    out = manage(root, env, "shell", "-c", MODEL_COLUMNS_SCRIPT)
    line = next(line for line in out.splitlines() if line.startswith("MODEL-COLUMNS "))
    return json.loads(line.removeprefix("MODEL-COLUMNS "))


def schema_columns(database_url: str) -> dict[str, dict[str, bool]]:
    """``table -> column -> whether an INSERT may leave it out`` (nullable, or a database default)."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT table_name, column_name, is_nullable = 'YES' OR column_default IS NOT NULL"
            " OR is_identity = 'YES' OR is_generated = 'ALWAYS'"
            " FROM information_schema.columns WHERE table_schema = 'public'"
        ).fetchall()
    tables: dict[str, dict[str, bool]] = {}
    for table, column, optional in rows:
        tables.setdefault(table, {})[column] = optional
    return tables


def schema_problems(models: dict[str, list[str]], schema: dict[str, dict[str, bool]]) -> list[str]:
    """What would fail when code with these ``models`` runs against this ``schema``.

    A table or a column the models use that the schema lacks (dropped or renamed: their
    SELECTs fail), and a column the models do not know that an INSERT may not leave out
    (NOT NULL with no database default: every INSERT of theirs fails).
    """
    problems = []
    for table, columns in sorted(models.items()):
        present = schema.get(table)
        if present is None:
            problems.append(f"table {table} is gone (the previous release still reads it)")
            continue
        gone = [c for c in columns if c not in present]
        problems += [f"column {table}.{c} is gone (the previous release still reads it)" for c in gone]
        problems += [
            f"column {table}.{c} is NOT NULL with no database default: the previous release's INSERTs "
            "leave it out and fail (give the field db_default=..., or null=True)"
            for c, optional in sorted(present.items())
            if c not in columns and not optional
        ]
    return problems
