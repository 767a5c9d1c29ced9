"""Every symbol bound is refused twice: by validation with a clear message, and by the database."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.db import DataError, IntegrityError, transaction
from django.forms import modelform_factory

from dashboard.models import Candle, Symbol

VALID = {
    "symbol": "GOOD",
    "name": "Good Corp",
    "asset_class": "equity",
    "initial_price": Decimal("10"),
    "drift": 0.0,
    "volatility": 0.3,
    "jump_intensity": 0.0,
    "tick_interval_ms": 250,
    "spread_bps": 5.0,
    "precision": 2,
    "book_levels": 20,
    "book_size": 0.0,
    "liquidity": 1.0,
}

# field, invalid value, words the message must contain
INVALID = [
    ("symbol", "aapl", "upper-case"),
    ("symbol", "-X", "starting with a letter or digit"),
    ("symbol", "TOO-LONG-SYMBOL-CODE-X", "at most 20"),
    ("initial_price", Decimal("0"), "greater than or equal to"),
    ("initial_price", Decimal("-1"), "greater than or equal to"),
    ("drift", 2.5, "less than or equal to 2.0"),
    ("drift", -2.5, "greater than or equal to -2.0"),
    ("volatility", -0.1, "greater than or equal to 0.0"),
    ("volatility", 5.1, "less than or equal to 5.0"),
    ("jump_intensity", -1.0, "greater than or equal to 0.0"),
    ("jump_intensity", 101.0, "less than or equal to 100.0"),
    ("tick_interval_ms", 49, "greater than or equal to 50"),
    ("tick_interval_ms", 10_001, "less than or equal to 10000"),
    ("spread_bps", -1.0, "greater than or equal to 0.0"),
    ("spread_bps", 1001.0, "less than or equal to 1000"),
    ("precision", 9, "less than or equal to 8"),
    ("book_levels", 0, "greater than or equal to 1"),
    ("book_levels", 51, "less than or equal to 50"),
    ("book_size", -1.0, "greater than or equal to 0.0"),
    ("book_size", 2e9, "less than or equal to 1000000000.0"),
    ("liquidity", 0.0, "greater than or equal to 0.1"),
    ("liquidity", 10.5, "less than or equal to 10.0"),
]

SymbolForm = modelform_factory(Symbol, fields=list(VALID))


@pytest.mark.django_db
@pytest.mark.parametrize(("field", "value", "message"), INVALID)
def test_form_refuses_with_a_clear_message(field, value, message) -> None:
    form = SymbolForm(data={**VALID, field: value})
    assert not form.is_valid()
    assert message in " ".join(form.errors[field])


@pytest.mark.django_db
@pytest.mark.parametrize(("field", "value", "message"), INVALID)
def test_database_refuses_what_validation_would(field, value, message) -> None:
    symbol = Symbol.objects.create(**VALID)
    # DataError: PostgreSQL enforces varchar lengths itself, before the CHECK constraint.
    with pytest.raises((IntegrityError, DataError)), transaction.atomic():
        # update() skips model validation: only the database stands in the way.
        Symbol.objects.filter(pk=symbol.pk).update(**{field: value})


@pytest.mark.django_db
def test_valid_symbol_passes_both() -> None:
    symbol = Symbol(**VALID)
    symbol.full_clean()
    symbol.save()
    assert SymbolForm(data={**VALID, "symbol": "OTHER"}).is_valid()


@pytest.mark.django_db
def test_a_trailing_newline_is_no_symbol_code() -> None:
    # Forms strip it; model validation and the database must refuse it on every other path.
    with pytest.raises(ValidationError, match="upper-case"):
        Symbol(**{**VALID, "symbol": "GOOD\n"}).full_clean()
    symbol = Symbol.objects.create(**VALID)
    with pytest.raises(IntegrityError), transaction.atomic():
        Symbol.objects.filter(pk=symbol.pk).update(symbol="GOOD\n")


@pytest.mark.django_db
def test_symbol_code_is_unique() -> None:
    Symbol.objects.create(**VALID)
    with pytest.raises(ValidationError):
        Symbol(**VALID).full_clean()


@pytest.mark.django_db
def test_database_refuses_inconsistent_candles() -> None:
    symbol = Symbol.objects.create(**VALID)
    with pytest.raises(IntegrityError), transaction.atomic():
        Candle.objects.create(symbol=symbol, interval="1m", start_ms=0, open=10, high=9, low=8, close=9, volume=1)
