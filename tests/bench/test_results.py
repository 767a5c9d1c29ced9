"""The benchmark's results maths (``bench/results.py``): hand-computed examples and the edge cases.

Every figure is worked out by hand in the test's comment or literal, so a change to the
maths (a rounding, a threshold, a key that stops being summed) fails here rather than in
a ten-minute ``make bench``.
"""

from __future__ import annotations

import pytest

from bench import results

MIB = 2**20


# --- histograms ------------------------------------------------------------------------------


def test_merge_hist_sums_buckets_and_turns_keys_into_ints() -> None:
    merged = results.merge_hist([{"1": 2, "3": 1}, {"1": 1, "2": 5}])
    assert merged == {1: 3, 3: 1, 2: 5}


def test_merge_hist_of_nothing_is_empty() -> None:
    assert results.merge_hist([]) == {}
    assert results.merge_hist([{}, {}]) == {}


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        (0.0, 10),  # rank 0: the first bucket already covers it
        (0.25, 10),  # rank 1 of 4: the one sample at 10 ms
        (0.5, 20),  # rank 2: 10 ms holds 1, 20 ms brings it to 2
        (0.75, 30),  # rank 3: only 30 ms (2 samples) reaches 3
        (0.99, 30),  # rank 3.96
        (1.0, 30),
    ],
)
def test_percentile_is_the_smallest_latency_covering_the_rank(q: float, expected: int) -> None:
    assert results.percentile({30: 2, 10: 1, 20: 1}, q) == expected


def test_percentile_of_no_samples_is_none() -> None:
    assert results.percentile({}, 0.5) is None
    assert results.percentile({5: 0, 7: 0}, 0.99) is None


def test_percentile_of_a_single_sample_is_that_sample() -> None:
    assert results.percentile({42: 1}, 0.5) == 42
    assert results.percentile({42: 1}, 0.99) == 42


def test_percentile_beyond_one_is_the_largest_latency() -> None:
    assert results.percentile({3: 1, 9: 1}, 1.5) == 9


# --- summing the load clients' lines ---------------------------------------------------------


def test_total_counts_missing_keys_as_zero() -> None:
    assert results.total([{"ticks": 3}, {}, {"ticks": 4}], "ticks") == 7
    assert results.total([], "ticks") == 0


def test_merge_counts_sums_by_key() -> None:
    merged = results.merge_counts([{"1006": 2, "1000": 1}, {}, {"1006": 3}])
    assert merged == {"1006": 5, "1000": 1}


@pytest.mark.parametrize(("done", "of", "text"), [(300, 300, "300"), (290, 300, "290/300"), (0, 0, "0")])
def test_clients_text(done: int, of: int, text: str) -> None:
    assert results.clients_text(done, of) == text


def test_client_cpu_text_rounds_and_marks_saturation() -> None:
    assert results.client_cpu_text(36.4, 1, False) == "36/1p"
    assert results.client_cpu_text(148.6, 2, True) == "149/2p sat"
    assert results.client_cpu_text(0.0, 0, False) == "0/0p"


def test_connection_summary_sums_processes_and_notes_the_silent_ones() -> None:
    lines = [
        {"connected": 200, "failures": {"timeout": 2}, "retries": 3, "seconds": 4.5},
        {"connected": 100, "failures": {"timeout": 1, "refused": 4}, "seconds": 6.0},
    ]
    figures, notes = results.connection_summary(lines, procs=3)
    assert figures == {
        "clients_connected": 300,
        "connect_failures": {"timeout": 3, "refused": 4},
        "connect_retries": 3,
        "connect_seconds": 6.0,  # the slowest process
    }
    assert notes == ["1 load-client processes never reported"]


def test_connection_summary_of_no_lines() -> None:
    figures, notes = results.connection_summary([], procs=0)
    assert figures == {"clients_connected": 0, "connect_failures": {}, "connect_retries": 0, "connect_seconds": None}
    assert notes == []
    assert results.connection_summary([], procs=2)[1] == ["2 load-client processes never reported"]


def test_other_cpu_note_only_above_the_threshold() -> None:
    assert results.other_cpu_note(15.0, "window") == []
    assert results.other_cpu_note(15.6, "storm") == [
        "other processes on this machine used 16 % of a core during the storm"
    ]


# --- the sampler's figures -------------------------------------------------------------------


def test_process_usage() -> None:
    # 1.5 CPU seconds over 2 s is 75 % of a core; RSS in MiB.
    assert results.process_usage(1.5, 2.0, 3 * MIB, 5 * MIB) == {
        "cpu_s": 1.5,
        "cpu_pct": 75.0,
        "rss_mib": 3.0,
        "peak_rss_mib": 5.0,
    }


def test_process_usage_with_zero_cpu_and_a_gone_process() -> None:
    assert results.process_usage(0.0, 2.0, 0, 0) == {"cpu_s": 0.0, "cpu_pct": 0.0, "rss_mib": 0.0, "peak_rss_mib": 0.0}


def test_busy_pct_is_never_negative() -> None:
    assert results.busy_pct(0.5, 0.5) == 100.0
    assert results.busy_pct(0.3, 2.0) == 15.0
    # Our processes' CPU above the host's (sampling skew): nothing else ran, not -10 %.
    assert results.busy_pct(-0.2, 2.0) == 0.0


def test_host_breakdown_leaves_out_idle_and_guest_time() -> None:
    before = {"user": 1.0, "system": 2.0, "idle": 10.0, "guest": 0.0, "guest_nice": 0.0, "softirq": 0.1}
    after = {"user": 1.5, "system": 2.25, "idle": 20.0, "guest": 5.0, "guest_nice": 1.0, "softirq": 0.1}
    assert results.host_breakdown(before, after, 1.0) == {"user": 50.0, "system": 25.0, "softirq": 0.0}


# --- the producer's rate ---------------------------------------------------------------------


def test_symbol_rates() -> None:
    rates = results.symbol_rates(["A", "B"], ({"A": 0, "B": 10}, 100.0), ({"A": 20, "B": 15}, 110.0))
    assert rates == {"A": 2.0, "B": 0.5}


def test_symbol_rates_over_an_empty_span_are_zero() -> None:
    assert results.symbol_rates(["A"], ({"A": 0}, 5.0), ({"A": 9}, 5.0)) == {"A": 0.0}


def test_producer_rates_use_the_long_span_when_it_agrees() -> None:
    long_start = ({"A": 0, "B": 0}, 0.0)
    end = ({"A": 600, "B": 300}, 300.0)  # long run: A 2.0/s, B 1.0/s, 3.0 in all
    start = ({"A": 580, "B": 291}, 290.0)  # this scenario: A 2.0/s, B 0.9/s, 2.9 in all (within 10 %)
    producer_tps, per_symbol = results.producer_rates(["A", "B"], start, long_start, end)
    assert producer_tps == pytest.approx(2.9)  # the scenario's own total is what is reported
    assert per_symbol == {"A": 2.0, "B": 1.0}  # the precise long-run rates feed "expected"


def test_producer_rates_keep_the_scenario_span_when_the_producer_slowed() -> None:
    long_start = ({"A": 0, "B": 0}, 0.0)
    end = ({"A": 600, "B": 300}, 300.0)  # 3.0/s over the long run
    start = ({"A": 595, "B": 298}, 290.0)  # 0.7/s now: far from 3.0
    producer_tps, per_symbol = results.producer_rates(["A", "B"], start, long_start, end)
    assert producer_tps == pytest.approx(0.7)
    assert per_symbol == pytest.approx({"A": 0.5, "B": 0.2})


def test_producer_rates_just_outside_the_agreement() -> None:
    long_start = ({"A": 0, "B": 0}, 0.0)
    end = ({"A": 600, "B": 300}, 300.0)  # 3.0/s over the long run
    start = ({"A": 587, "B": 287}, 290.0)  # 2.6/s now: 0.4 apart, more than 10 % of 2.6
    _, per_symbol = results.producer_rates(["A", "B"], start, long_start, end)
    assert per_symbol == pytest.approx({"A": 1.3, "B": 1.3})


def test_expected_tps_counts_only_the_subscribed_symbols() -> None:
    assert results.expected_tps({"A": 2.0, "B": 1.0, "C": 4.0}, ["A", "B"], 10) == 30.0
    assert results.expected_tps({"A": 2.0}, [], 10) == 0.0


# --- a fan-out window ------------------------------------------------------------------------

LINES = [
    {
        "ticks": 300,
        "frames": 30,
        "tick_frames": 20,
        "bytes": 2_000_000,
        "lost": 1,
        "duplicates": 0,
        "latency_hist": {"10": 2, "50": 1},
        "max_latency_ms": 70,
        "closed_codes": {"1006": 1},
        "frame_types": {"ticks": 20, "heartbeat": 10},
        "errors": 0,
        "alive": 9,
    },
    {
        "ticks": 100,
        "frames": 10,
        "tick_frames": 5,
        "bytes": 1_000_000,
        "lost": 2,
        "duplicates": 1,
        "latency_hist": {"50": 1},
        "max_latency_ms": 90,
        "frame_types": {"ticks": 5, "heartbeat": 5},
        "errors": 1,
        "alive": 10,
    },
]
USAGE = {
    "web1": {"cpu_s": 0.2, "cpu_pct": 5.0, "rss_mib": 100.0},
    "worker": {"cpu_s": 0.4, "cpu_pct": 10.0, "rss_mib": 50.0},
    "client0": {"cpu_s": 1.0, "cpu_pct": 25.0, "rss_mib": 30.0},
    "client1": {"cpu_s": 1.2, "cpu_pct": 30.0, "rss_mib": 30.0},
}


def test_fanout_figures_by_hand() -> None:
    figures = results.fanout_figures(LINES, USAGE, ["web1"], duration=4.0, producer_tps=250.04, expected=125.0)
    assert figures == {
        "duration_s": 4.0,
        "producer_tps": 250.0,
        "expected_tps": 125.0,
        "delivered_tps": 100.0,  # 400 ticks / 4 s
        "delivered_pct": 80.0,  # 100 of 125
        "lost": 3,
        "duplicates": 1,
        "p50_ms": 10,  # {10: 2, 50: 2}: rank 2 is reached at 10 ms
        "p99_ms": 50,
        "max_ms": 90,
        "frames_per_s": 10.0,  # 40 frames / 4 s
        "frames_per_dashboard_s": 0.53,  # 40 frames / (19 dashboards x 4 s)
        "ticks_per_frame": 16.0,  # 400 ticks / 25 tick frames (heartbeats do not count)
        "mbytes_per_s": 0.75,  # 3 MB / 4 s
        "web_cpu_pct": 5.0,
        "web_rss_mib": 100.0,
        "stack_cpu_pct": 15.0,  # web1 + worker: every process that is not a load client
        "client_cpu_pct": 55.0,
        "client_cpu_max_pct": 30.0,
        "client_procs": 2,
        "cpu_per_frame_ms": 5.0,  # 0.2 s of web CPU / 40 frames
        "stack_cpu_per_frame_ms": 15.0,  # 0.6 s / 40 frames
        "cpu_us_per_tick": 500.0,  # 0.2 s / 400 ticks
        "cpu_us_per_dashboard_s": 2631.6,  # 0.2 s / (19 dashboards x 4 s)
        "processes": USAGE,
        "closed_codes": {"1006": 1},
        "frame_types": {"ticks": 25, "heartbeat": 15},
        "errors": 1,
        "alive_at_end": 19,
    }


def test_fanout_figures_sum_several_web_processes() -> None:
    usage = {**USAGE, "web2": {"cpu_s": 0.6, "cpu_pct": 15.0, "rss_mib": 80.0}}
    figures = results.fanout_figures(LINES, usage, ["web1", "web2"], duration=4.0, producer_tps=0, expected=0)
    assert figures["web_cpu_pct"] == 20.0
    assert figures["web_rss_mib"] == 180.0
    assert figures["cpu_per_frame_ms"] == 20.0  # 0.8 s / 40 frames
    assert figures["stack_cpu_pct"] == 30.0


def test_fanout_figures_with_nothing_received() -> None:
    figures = results.fanout_figures([], {}, ["web1"], duration=4.0, producer_tps=0.0, expected=0.0)
    assert figures["delivered_tps"] == 0.0
    assert figures["delivered_pct"] is None  # nothing expected (idle): no percentage
    assert figures["p50_ms"] is None
    assert figures["p99_ms"] is None
    assert figures["max_ms"] is None
    assert figures["ticks_per_frame"] == 0.0
    assert figures["cpu_per_frame_ms"] is None
    assert figures["stack_cpu_per_frame_ms"] is None
    assert figures["cpu_us_per_tick"] is None
    assert figures["client_cpu_max_pct"] == 0.0
    assert figures["client_procs"] == 0
    assert figures["web_cpu_pct"] == 0.0


def test_fanout_figures_when_expected_but_nothing_arrived() -> None:
    figures = results.fanout_figures([], {}, ["web1"], duration=4.0, producer_tps=200.0, expected=100.0)
    assert figures["delivered_pct"] == 0.0


def test_cpu_per_frame_needs_ticks_not_only_heartbeats() -> None:
    lines = [{"frames": 8, "ticks": 0}]
    figures = results.fanout_figures(lines, USAGE, ["web1"], duration=4.0, producer_tps=0, expected=0)
    assert figures["cpu_per_frame_ms"] is None
    assert figures["cpu_us_per_tick"] is None
    assert figures["max_ms"] is None  # no tick: no latency at all


def test_zero_cpu_is_zero_per_frame() -> None:
    usage = {"web1": {"cpu_s": 0.0, "cpu_pct": 0.0, "rss_mib": 90.0}}
    figures = results.fanout_figures(LINES, usage, ["web1"], duration=4.0, producer_tps=0, expected=0)
    assert figures["cpu_per_frame_ms"] == 0.0
    assert figures["cpu_us_per_tick"] == 0.0


def test_a_web_process_missing_from_the_sample_counts_nothing() -> None:
    usage = {k: v for k, v in USAGE.items() if k != "web1"}
    figures = results.fanout_figures(LINES, usage, ["web1"], duration=4.0, producer_tps=0, expected=0)
    assert figures["web_cpu_pct"] == 0.0
    assert figures["cpu_per_frame_ms"] == 0.0
    assert figures["stack_cpu_pct"] == 10.0


def test_fanout_texts() -> None:
    result = {
        "publish_lag_p50_ms": 6,
        "publish_lag_p99_ms": 56,
        "clients_connected": 290,
        "client_cpu_pct": 90.4,
        "client_cpu_max_pct": 90.0,  # at the threshold: saturated
        "client_procs": 1,
    }
    assert results.fanout_texts(result, 300) == {
        "publish_lag_text": "6/56",
        "clients_text": "290/300",
        "client_cpu_text": "90/1p sat",
    }


def test_fanout_texts_without_a_probe_or_saturation() -> None:
    result = {"clients_connected": 100, "client_cpu_pct": 4.0, "client_cpu_max_pct": 89.9, "client_procs": 1}
    assert results.fanout_texts(result, 100) == {"clients_text": "100", "client_cpu_text": "4/1p"}


def _notes(**changes: object) -> list[str]:
    result = {"clients_connected": 100, "alive_at_end": 100, "closed_codes": {}, "connect_failures": {}}
    result["client_cpu_max_pct"] = 10.0
    kwargs = {"kind": "stream", "rate": 200.0, "profiled": False, "producer_tps": 200.0}
    for key, value in changes.items():
        if key in kwargs:
            kwargs[key] = value
        else:
            result[key] = value
    return results.fanout_notes(result, **kwargs)  # type: ignore[arg-type]


def test_fanout_notes_none_for_a_clean_window() -> None:
    assert _notes() == []


def test_fanout_notes_each_case() -> None:
    assert _notes(alive_at_end=97, closed_codes={"1006": 3}) == ["3 connections closed during the run: {'1006': 3}"]
    assert _notes(connect_failures={"timeout": 2}) == [
        "failed handshake attempts (retried with backoff within the connect budget): {'timeout': 2}"
    ]
    assert _notes(profiled=True)[0].startswith("a repeat for the profile")
    assert _notes(client_cpu_max_pct=90.0) == [
        "a load-client process was CPU-saturated: figures are bounded by the client"
    ]


def test_fanout_notes_a_producer_off_by_more_than_15_percent() -> None:
    assert _notes(producer_tps=170.0) == []  # exactly 15 % short: within tolerance
    assert _notes(producer_tps=169.0) == ["producer reached 169 of 200 ticks/s"]
    assert _notes(producer_tps=231.0) == ["producer reached 231 of 200 ticks/s"]
    assert _notes(kind="idle", producer_tps=0.0) == []  # idle scenarios do not care


def test_idle_figures() -> None:
    # 10 MiB more for 1,000 more connections: 10.24 KiB each.
    assert results.idle_figures(100 * MIB, 110 * MIB, 1000) == {
        "web_rss_before_mib": 100.0,
        "web_rss_after_mib": 110.0,
        "kib_per_conn": 10.2,
    }


def test_idle_figures_without_a_second_batch_have_no_slope() -> None:
    assert "kib_per_conn" not in results.idle_figures(100 * MIB, 100 * MIB, 0)


def test_idle_figures_can_shrink() -> None:
    assert results.idle_figures(110 * MIB, 100 * MIB, 1024)["kib_per_conn"] == -10.0
