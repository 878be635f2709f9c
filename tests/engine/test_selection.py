"""best.pt with a guard metric and the plateau rule (engine/selection.py), driven by metric values."""

from __future__ import annotations

import copy

import pytest

from medgen_cli.engine.selection import BestSelection


def _run(sel: BestSelection, evals: list[tuple[float, float | None]], start: int = 1) -> list[int]:
    """Feed (fid, coverage) pairs at steps start, start+1, ...; return the steps that became best."""
    bests = []
    for i, (fid, cov) in enumerate(evals, start):
        metrics = {"val/fid": fid} if cov is None else {"val/fid": fid, "val/coverage": cov}
        if sel.judge(metrics, i).new_best:
            bests.append(i)
    return bests


def test_lower_fid_under_the_coverage_floor_is_not_best() -> None:
    sel = BestSelection("fid", "min", guard="coverage", guard_fraction=0.6)
    # step 2 has the lowest FID so far but coverage 0.1 < 0.6 × 0.5: a dropped mode, not best.pt
    assert _run(sel, [(100.0, 0.5), (80.0, 0.1), (90.0, 0.45)]) == [1, 3]
    assert (sel.value, sel.step, sel.best_guard, sel.guard_max) == (90.0, 3, 0.45, 0.5)


def test_without_a_guard_the_lowest_fid_is_best() -> None:
    sel = BestSelection("fid", "min")
    assert _run(sel, [(100.0, 0.5), (80.0, 0.1), (90.0, 0.45)]) == [1, 2]


def test_floor_is_relative_to_the_highest_coverage_seen_and_absolute_minimum() -> None:
    sel = BestSelection("val/fid", "min", guard="val/coverage", guard_fraction=0.5, guard_min=0.3)
    sel.judge({"val/fid": 100.0, "val/coverage": 0.2}, 1)  # under the absolute floor: not best
    assert sel.value is None and sel.floor() == pytest.approx(0.3)
    assert sel.judge({"val/fid": 120.0, "val/coverage": 0.9}, 2).new_best
    verdict = sel.judge({"val/fid": 60.0, "val/coverage": 0.44}, 3)
    assert verdict.floor == pytest.approx(0.45) and not verdict.new_best
    assert any("under the floor 0.45" in n for n in verdict.notes), verdict.notes


def test_best_below_a_risen_floor_is_replaced_by_the_next_that_clears_it() -> None:
    sel = BestSelection("fid", "min", guard="coverage", guard_fraction=0.6)
    # step 1 was best with coverage 0.2; step 2 shows the run can cover 0.6 (floor 0.36): step 1
    # dropped modes after all, and step 2 replaces it although its FID is higher.
    bests = _run(sel, [(100.0, 0.2), (110.0, 0.6), (105.0, 0.5)])
    assert bests == [1, 2, 3]


def test_missing_guard_judges_on_the_key_alone() -> None:
    sel = BestSelection("fid", "min", guard="coverage", guard_fraction=0.6)
    assert _run(sel, [(100.0, None), (90.0, None), (95.0, None)]) == [1, 2]
    assert sel.judge({"val/fid": float("nan"), "val/coverage": 1.0}, 9).new_best is False  # never a candidate


def test_max_mode_key() -> None:
    sel = BestSelection("psnr", "max")
    assert [sel.judge({"val/psnr": v}, i).new_best for i, v in enumerate([20.0, 19.0, 21.0])] == [True, False, True]


def test_plateau_lowers_the_lr_after_patience_evaluations_and_not_before() -> None:
    sel = BestSelection("fid", "min", plateau_patience=2, plateau_factor=0.5, plateau_min_factor=0.2)
    fids = [100.0, 101.0, 102.0, 103.0, 104.0, 90.0, 95.0, 96.0, 97.0, 98.0, 99.0, 99.5]
    factors, changed = [], []
    for step, fid in enumerate(fids, 1):
        verdict = sel.judge({"val/fid": fid}, step)
        factors.append(sel.lr_factor)
        changed.append(verdict.lr_changed)
        assert not verdict.stop
    # 1 best; 2 bad; 3 second bad → ×0.5; 4, 5 → ×0.25; 6 new best (factor kept, counters reset);
    # 7, 8 → 0.2 (the minimum); no change after that.
    assert factors == [1.0, 1.0, 0.5, 0.5, 0.25, 0.25, 0.25, 0.2, 0.2, 0.2, 0.2, 0.2]
    assert [i + 1 for i, c in enumerate(changed) if c] == [3, 5, 8]


def test_early_stop_after_patience_evaluations_without_a_new_best() -> None:
    sel = BestSelection("fid", "min", stop_patience=3)
    stops = [sel.judge({"val/fid": fid}, step).stop for step, fid in enumerate([100.0, 99.0, 101.0, 99.5, 100.0], 1)]
    assert stops == [False, False, False, False, True] and sel.stopped
    # empty validations (FID not due) count for nothing
    assert not BestSelection("fid", "min", stop_patience=1).judge({}, 1).stop


def test_state_round_trip_continues_exactly() -> None:
    evals = [(100.0, 0.5), (80.0, 0.1), (90.0, 0.45), (95.0, 0.5), (96.0, 0.5), (97.0, 0.6), (94.0, 0.2),
             (89.0, 0.55), (99.0, 0.5), (98.0, 0.5)]
    kw = dict(guard="coverage", guard_fraction=0.6, plateau_patience=2, plateau_factor=0.5, stop_patience=4)
    whole = BestSelection("fid", "min", **kw)
    verdicts = [whole.judge({"val/fid": f, "val/coverage": c}, i) for i, (f, c) in enumerate(evals)]
    first = BestSelection("fid", "min", **kw)
    for i, (f, c) in enumerate(evals[:5]):
        first.judge({"val/fid": f, "val/coverage": c}, i)
    resumed = BestSelection("fid", "min", **kw)
    resumed.load_state_dict(copy.deepcopy(first.state_dict()))
    assert resumed.state_dict() == first.state_dict()
    again = [resumed.judge({"val/fid": f, "val/coverage": c}, i) for i, (f, c) in enumerate(evals[5:], 5)]
    assert [(v.new_best, v.lr_changed, v.stop, v.floor) for v in again] == \
        [(v.new_best, v.lr_changed, v.stop, v.floor) for v in verdicts[5:]]
    assert resumed.state_dict() == whole.state_dict()
    assert whole.lr_factor < 1.0  # the sequence exercised the plateau


def test_old_best_record_loads_with_fresh_guard_and_plateau_state() -> None:
    sel = BestSelection("fid", "min", guard="coverage", guard_fraction=0.6, plateau_patience=2)
    sel.load_state_dict({"metric": "val/fid", "value": 70.0, "step": 400, "mode": "min"})  # medgen < 0.4
    assert (sel.value, sel.step, sel.best_guard, sel.guard_max, sel.since_best, sel.lr_factor) == \
        (70.0, 400, None, None, 0, 1.0)
    # best.pt's coverage is unknown: it is kept until a lower FID that clears the floor comes
    assert not sel.judge({"val/fid": 75.0, "val/coverage": 0.9}, 600).new_best
    assert sel.judge({"val/fid": 69.0, "val/coverage": 0.6}, 800).new_best
