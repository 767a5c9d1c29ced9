"""The depth and trades continuity checks of the load client (``bench/chains.py``), frame by frame."""

from __future__ import annotations

from bench.chains import ANCHORED, CONTINUES, DUPLICATE, GAP, Chains

# --- depth -------------------------------------------------------------------------------


def test_depth_frames_continue_the_snapshot_then_each_other() -> None:
    chains = Chains()
    assert chains.snapshot("S00", "e1", 10) is False  # the first snapshot: not a resnapshot
    assert chains.depth("S00", "e1", 11, 11) == CONTINUES  # U == snapshot's u + 1
    assert chains.depth("S00", "e1", 12, 14) == CONTINUES  # a frame may cover several updates
    assert chains.depth("S00", "e1", 15, 15) == CONTINUES


def test_a_skipped_update_is_one_gap_and_the_chain_goes_on_from_there() -> None:
    chains = Chains()
    chains.snapshot("S00", "e1", 10)
    assert chains.depth("S00", "e1", 13, 14) == GAP  # 11 and 12 never came
    assert chains.depth("S00", "e1", 15, 16) == CONTINUES  # re-anchored at 14: one hole, one gap


def test_a_frame_overlapping_the_last_one_is_a_gap_an_old_one_a_duplicate() -> None:
    chains = Chains()
    chains.snapshot("S00", "e1", 10)
    assert chains.depth("S00", "e1", 9, 12) == GAP  # starts inside what was applied, ends beyond
    assert chains.depth("S00", "e1", 11, 12) == DUPLICATE  # wholly at or below u 12
    assert chains.depth("S00", "e1", 13, 13) == CONTINUES  # a duplicate leaves the chain at 12


def test_a_new_epoch_without_a_snapshot_is_a_gap() -> None:
    chains = Chains()
    chains.snapshot("S00", "e1", 10)
    assert chains.depth("S00", "e2", 11, 11) == GAP
    assert chains.depth("S00", "e2", 12, 12) == CONTINUES


def test_a_depth_frame_before_any_snapshot_is_unanchored() -> None:
    chains = Chains()
    assert chains.depth("S00", "e1", 5, 6) == ANCHORED
    assert chains.depth("S00", "e1", 7, 7) == CONTINUES


def test_a_second_snapshot_is_a_resnapshot_and_restarts_the_chain() -> None:
    chains = Chains()
    chains.snapshot("S00", "e1", 10)
    chains.depth("S00", "e1", 11, 11)
    assert chains.snapshot("S00", "e1", 20) is True  # the server's recovery, reported apart
    assert chains.depth("S00", "e1", 21, 21) == CONTINUES


def test_symbols_have_their_own_chains() -> None:
    chains = Chains()
    chains.snapshot("S00", "e1", 10)
    assert chains.snapshot("S01", "e1", 500) is False
    assert chains.depth("S01", "e1", 501, 501) == CONTINUES
    assert chains.depth("S00", "e1", 11, 11) == CONTINUES


# --- trades ------------------------------------------------------------------------------


def test_trade_ids_rise_by_one_after_the_first() -> None:
    chains = Chains()
    assert chains.trade("S00", "e1", 41) == ANCHORED  # the first trade a connection sees
    assert chains.trade("S00", "e1", 42) == CONTINUES
    assert chains.trade("S00", "e1", 43) == CONTINUES


def test_a_missing_trade_is_a_gap_a_repeated_one_a_duplicate() -> None:
    chains = Chains()
    chains.trade("S00", "e1", 1)
    assert chains.trade("S00", "e1", 4) == GAP  # 2 and 3 missing: one gap
    assert chains.trade("S00", "e1", 5) == CONTINUES
    assert chains.trade("S00", "e1", 5) == DUPLICATE
    assert chains.trade("S00", "e1", 3) == DUPLICATE
    assert chains.trade("S00", "e1", 6) == CONTINUES  # duplicates leave the chain at 5


def test_a_trade_of_a_new_epoch_is_a_gap() -> None:
    chains = Chains()
    chains.trade("S00", "e1", 9)
    assert chains.trade("S00", "e2", 1) == GAP
    assert chains.trade("S00", "e2", 2) == CONTINUES


def test_trades_of_each_symbol_are_checked_apart() -> None:
    chains = Chains()
    chains.trade("S00", "e1", 7)
    assert chains.trade("S01", "e1", 100) == ANCHORED
    assert chains.trade("S00", "e1", 8) == CONTINUES
