"""Admin: live prices in the list; halt, resume, shock and reset go through the services."""

from __future__ import annotations

import json
from decimal import Decimal

import orjson
import pytest

from dashboard.admin import SymbolAdmin
from dashboard.market import store as market_store
from dashboard.models import Symbol
from workers.specs import spec_of

CHANGELIST = "/admin/dashboard/symbol/"


@pytest.fixture
def listed(db, redis_client) -> list[Symbol]:
    rows = [
        Symbol.objects.create(symbol="AAA", name="Triple A", initial_price=Decimal("100")),
        Symbol.objects.create(symbol="BBB", name="Double B", initial_price=Decimal("20"), precision=3),
    ]
    quote = {"price": 101.25, "bid": 101.2, "ask": 101.3, "volume": 5, "ts": 1, "change_pct": 1.25}
    redis_client.hset(
        market_store.state_key("AAA"), mapping={"epoch": "e1", "seq": 3, "mid": 101.25, "quote": orjson.dumps(quote)}
    )
    return rows


def act(admin_client, action: str, symbols: list[Symbol], **extra):
    data = {"action": action, "_selected_action": [s.pk for s in symbols], **extra}
    return admin_client.post(CHANGELIST, data, follow=True)


def controls(redis_client, symbol: str) -> list[dict]:
    return [json.loads(raw) for raw in redis_client.lrange(market_store.control_key(symbol), 0, -1)]


def test_changelist_shows_live_price_and_status(admin_client, listed) -> None:
    page = admin_client.get(CHANGELIST).content.decode()
    assert "101.25" in page
    assert "+1.25 %" in page
    assert "trading" in page


def test_search_and_filters(admin_client, listed) -> None:
    page = admin_client.get(CHANGELIST, {"q": "Double"}).content.decode()
    assert "BBB" in page
    assert "Triple A" not in page
    assert admin_client.get(CHANGELIST, {"halted__exact": "1"}).status_code == 200


def test_halt_and_resume_reach_the_database_and_the_producers(
    admin_client, listed, redis_client, django_capture_on_commit_callbacks
) -> None:
    version = int(redis_client.get(market_store.CATALOG_VERSION_KEY) or 0)
    with django_capture_on_commit_callbacks(execute=True):
        response = act(admin_client, "halt", listed[:1])
    assert "Halted 1 symbol(s)." in response.content.decode()
    assert Symbol.objects.get(symbol="AAA").halted
    assert int(redis_client.get(market_store.CATALOG_VERSION_KEY)) > version
    act(admin_client, "resume", listed[:1])
    assert not Symbol.objects.get(symbol="AAA").halted


def test_shock_asks_for_a_percentage_then_queues_it(admin_client, listed, redis_client) -> None:
    form = act(admin_client, "shock", listed)
    assert "Move price by (%)" in form.content.decode()
    assert controls(redis_client, "AAA") == []
    done = act(admin_client, "shock", listed, apply="1", percent="-5")
    assert "Shock of -5 % sent to AAA, BBB." in done.content.decode()
    assert controls(redis_client, "AAA") == [{"op": "shock", "fraction": -0.05}]
    assert controls(redis_client, "BBB") == [{"op": "shock", "fraction": -0.05}]


@pytest.mark.parametrize(("percent", "message"), [("0", "changes nothing"), ("-95", "greater than or equal to -90")])
def test_invalid_shock_is_refused_with_a_message(admin_client, listed, redis_client, percent, message) -> None:
    response = act(admin_client, "shock", listed, apply="1", percent=percent)
    assert message in response.content.decode()
    assert controls(redis_client, "AAA") == []


def test_reset_queues_a_reset(admin_client, listed, redis_client) -> None:
    act(admin_client, "reset_price", listed[1:])
    assert controls(redis_client, "BBB") == [{"op": "reset"}]


def change_form(symbol: Symbol, **changes: object) -> dict[str, object]:
    """The admin change form's data for ``symbol`` as it stands, with ``changes``."""
    fields = [f for _, options in SymbolAdmin.fieldsets for f in options["fields"]]
    data = {f: getattr(symbol, f) for f in fields}
    return {**{f: v for f, v in data.items() if v is not False}, **changes}


def test_order_book_parameters_are_edited_in_their_own_section(admin_client, listed) -> None:
    url = f"{CHANGELIST}{listed[0].pk}/change/"
    page = admin_client.get(url).content.decode()
    assert "Order book" in page
    assert "Price levels per side of the order book" in page
    response = admin_client.post(url, change_form(listed[0], book_levels=5, book_size=250, liquidity=0.5))
    assert response.status_code == 302
    saved = Symbol.objects.get(pk=listed[0].pk)
    assert (saved.book_levels, saved.book_size, saved.liquidity) == (5, 250.0, 0.5)
    spec = spec_of(saved)
    assert (spec.book_levels, spec.book_size, spec.liquidity) == (5, 250.0, 0.5)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("book_levels", 0, "greater than or equal to 1"),
        ("book_levels", 51, "less than or equal to 50"),
        ("book_size", -5, "greater than or equal to 0.0"),
        ("liquidity", 0.05, "greater than or equal to 0.1"),
        ("liquidity", 11, "less than or equal to 10.0"),
    ],
)
def test_out_of_range_order_book_parameters_are_refused(admin_client, listed, field, value, message) -> None:
    url = f"{CHANGELIST}{listed[0].pk}/change/"
    response = admin_client.post(url, change_form(listed[0], **{field: value}))
    assert response.status_code == 200, "the form is shown again"
    assert message in response.content.decode()
    saved = Symbol.objects.get(pk=listed[0].pk)
    assert (saved.book_levels, saved.book_size, saved.liquidity) == (20, 0.0, 1.0)


def test_admin_is_for_staff_only(client, django_user_model, listed) -> None:
    trader = django_user_model.objects.create_user(username="trader1", password="pw-for-test-1")
    client.force_login(trader)
    response = client.get(CHANGELIST)
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


@pytest.mark.parametrize("action", ["halt", "resume", "shock", "reset_price"])
def test_staff_who_can_only_view_symbols_cannot_run_actions(
    client, django_user_model, listed, redis_client, action
) -> None:
    from django.contrib.auth.models import Permission

    viewer = django_user_model.objects.create_user(username="viewer", password="pw-for-test-1", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_symbol"))
    client.force_login(viewer)
    page = client.get(CHANGELIST)
    assert page.status_code == 200
    assert f'value="{action}"' not in page.content.decode(), "the action is not even offered"
    act(client, action, listed, percent="50", apply="1")
    assert Symbol.objects.filter(halted=True).count() == 0
    assert controls(redis_client, "AAA") == []
