"""The per-connection abuse budget: frame rate and bad frames."""

from __future__ import annotations

import pytest

from dashboard.market.protocol import Limits
from dashboard.streams.guard import ClientGuard, ReadBudget, Verdict


def test_guard_admits_the_rate_refuses_over_it_and_closes_a_flood() -> None:
    guard = ClientGuard(Limits(max_client_frames_per_second=5))
    verdicts = [guard.admit(0.0) for _ in range(5)]
    assert verdicts == [Verdict.ACCEPT] * 5
    assert guard.admit(0.01) == Verdict.REFUSE
    assert guard.should_report_refusal()
    assert guard.admit(0.02) == Verdict.REFUSE
    assert not guard.should_report_refusal()
    assert guard.admit(0.25) == Verdict.ACCEPT, "tokens refill at the rate"
    verdicts = [guard.admit(0.3) for _ in range(6)]
    assert verdicts[-1] == Verdict.CLOSE


def test_guard_closes_after_too_many_bad_frames_in_the_window() -> None:
    guard = ClientGuard(Limits(), max_bad_frames=3, bad_window=10.0)
    assert [guard.bad_frame(t) for t in (0, 1, 2)] == [Verdict.REFUSE] * 3
    assert guard.bad_frame(20.0) == Verdict.REFUSE, "old bad frames age out"
    assert guard.bad_frame(21.0) == Verdict.REFUSE
    assert guard.bad_frame(22.0) == Verdict.REFUSE
    assert guard.bad_frame(23.0) == Verdict.CLOSE


def test_the_read_budget_charges_what_is_there_and_says_when_the_rest_will_be() -> None:
    budget = ReadBudget(per_second=10, burst=20)
    assert budget.charge(15, now=budget.updated) == 0.0
    assert budget.charge(10, now=budget.updated) == pytest.approx(0.5), "5 left, 5 more take half a second"
    assert budget.charge(10, now=budget.updated + 0.5) == 0.0, "nothing was taken by the refused charge"
    assert budget.charge(21, now=budget.updated + 100) == float("inf"), "never fits"
