"""`load_demo` creates what is missing and never touches an account that exists."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from dashboard.models import Symbol


@pytest.fixture
def var_dir(settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    settings.VAR_DIR = tmp_path
    for name in ("DEMO_TRADER_USERNAME", "DEMO_TRADER_PASSWORD", "DEMO_ADMIN_USERNAME", "DEMO_ADMIN_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def load_demo() -> str:
    out = StringIO()
    call_command("load_demo", stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_a_fresh_run_creates_the_accounts_with_the_passwords_it_prints_and_keeps_0600(var_dir: Path) -> None:
    printed = load_demo()
    stored = json.loads((var_dir / "demo-credentials.json").read_text())
    assert (var_dir / "demo-credentials.json").stat().st_mode & 0o777 == 0o600
    assert f"password {stored['admin']!r}" in printed
    admin, trader = (get_user_model().objects.get(username=name) for name in ("admin", "trader"))
    assert admin.check_password(stored["admin"])
    assert trader.check_password(stored["trader"])
    assert (admin.is_staff, admin.is_superuser, trader.is_staff, trader.is_superuser) == (True, True, False, False)
    assert Symbol.objects.filter(symbol="BTC-USD").exists()


@pytest.mark.django_db
def test_an_existing_admin_and_trader_keep_their_password_and_flags(var_dir: Path) -> None:
    users = get_user_model().objects
    users.create_user("admin", password="the-owners-own-pass-1", is_staff=False, is_superuser=False)
    users.create_user("trader", password="the-traders-own-pass-1", is_staff=True)
    (var_dir / "demo-credentials.json").write_text(json.dumps({"admin": "old-generated", "trader": "old-gen"}))
    printed = load_demo()
    printed += load_demo()
    admin, trader = users.get(username="admin"), users.get(username="trader")
    assert admin.check_password("the-owners-own-pass-1")
    assert trader.check_password("the-traders-own-pass-1")
    assert (admin.is_staff, admin.is_superuser, trader.is_staff) == (False, False, True)
    assert "'admin' already exists, left as it is" in printed
    assert "old-generated" not in printed, "no password printed for an account it did not make"


@pytest.mark.django_db
def test_a_second_run_keeps_the_first_runs_passwords(var_dir: Path) -> None:
    load_demo()
    first = (var_dir / "demo-credentials.json").read_text()
    get_user_model().objects.filter(username="trader").delete()
    load_demo()
    assert (var_dir / "demo-credentials.json").read_text() == first
    assert get_user_model().objects.get(username="trader").check_password(json.loads(first)["trader"])
