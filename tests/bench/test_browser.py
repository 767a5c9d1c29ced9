"""The browser benchmark's figures (``bench/browser.py``) from what the page recorded."""

from __future__ import annotations

from bench.browser import render, summary


def test_the_targets_hold_only_with_a_first_price_within_a_second_and_no_task_over_50_ms() -> None:
    calm = summary({"firstPrice": 436.0, "firstTick": 491.0}, [], ticks=12_000, seconds=60.0)
    assert (calm["first_price_ok"], calm["long_tasks_ok"], calm["longest_task_ms"]) == (True, True, 0)
    assert calm["ticks_per_s"] == 200.0
    janky = summary(
        {"firstPrice": 1200.0, "firstTick": 1300.0}, [{"at": 357, "ms": 59}, {"at": 9000, "ms": 51}], 600, 60.0
    )
    assert (janky["first_price_ok"], janky["long_tasks_ok"]) == (False, False)
    assert (janky["long_tasks"], janky["longest_task_ms"]) == (2, 59)
    assert janky["worst_long_tasks"][0] == {"at": 357, "ms": 59}
    never = summary({"firstPrice": None, "firstTick": None}, [], 0, 60.0)
    assert never["first_price_ok"] is False


def test_the_table_says_which_target_is_missed() -> None:
    result = {
        "dashboards_connected": 500,
        "symbols": 50,
        "rate": 200.0,
        **summary({"firstPrice": 436.0, "firstTick": 491.0}, [{"at": 357, "ms": 59}], 12_000, 60.0),
    }
    text = render(result)
    assert "| 500 | 50 | 200 | 436 | 491 | 1 | 59 | 200 | yes | NO |" in text
    assert "59@357" in text
