"""End to end: the side-by-side runner on the bundled real table (benchmarks/tables/
digits-quick.jsonl, recorded by benchmarks/make_table.py --quick), the adapters, the plot."""

from __future__ import annotations

import json
import math
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hwtune.api.records import Hardware, Objective, Observation, TrialRecord
from hwtune.bench.adapters import OptunaScheduler, SyneTuneMOASHA, TableSearcher, _ranked_priority
from hwtune.bench.runners import (
    METHODS,
    BenchmarkSetup,
    compare,
    format_comparison,
    plot_comparison,
    run_method,
    table_bounds,
    to_json,
)
from hwtune.bench.table import load_table

REPO = Path(__file__).resolve().parents[2]
QUICK_TABLE = REPO / "benchmarks" / "tables" / "digits-quick.jsonl"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def table():
    return load_table(QUICK_TABLE)


def test_bundled_table_is_small_and_complete(table) -> None:
    assert QUICK_TABLE.stat().st_size < 200_000
    assert len(table) == 24 and table.seeds == (0, 1) and table.max_resource == 12
    assert {"val_error", "val_loss", "train_loss", "epoch_runtime"} <= set(table.metric_names)


def test_mo_asha_uses_fewer_resources_than_random_for_the_same_trials(table) -> None:
    setup = BenchmarkSetup(table, max_trials=30, max_parallel=4)
    random = run_method(setup, "random", seed=0)
    moasha = run_method(setup, "mo-asha", seed=0)
    # same searcher seed -> the same 30 (config, hardware) pairs; only the stopping differs
    assert random.trials == moasha.trials == 30
    assert moasha.epochs_trained < random.epochs_trained
    assert moasha.spent < random.spent
    assert moasha.trace.times[-1] < random.trace.times[-1]
    # random search runs every trial that fits to the maximum resource
    assert random.epochs_trained == (random.trials - random.failed) * table.max_resource


def test_every_method_produces_results_and_a_valid_png(table, tmp_path: Path) -> None:
    methods = tuple(METHODS)
    setup = BenchmarkSetup(table, max_duration_seconds=0.15, max_parallel=4)
    cmp = compare(setup, methods, seeds=(0, 1))
    assert set(cmp.stats) == set(methods)
    for method, stats in cmp.stats.items():
        assert len(stats.runs) == 2, method
        for run in stats.runs:
            assert run.trials > 0 and run.reports > 0 and len(run.trace) == run.reports, method
            assert run.elapsed <= 0.15 + 1e-9, method
            assert math.isfinite(run.decision_us) and run.decision_us > 0, method
        assert 0 < stats.final_hv.mean <= 1, method
        assert stats.time_curve.shape == (2, len(cmp.time_grid))
        # hypervolume never decreases over time
        assert np.all(np.diff(stats.time_curve, axis=1) >= -1e-12), method
    # the baseline reaches its own final hypervolume by definition
    assert cmp.stats["random"].time_speedup.mean == pytest.approx(1.0)
    text = format_comparison(cmp)
    for method in methods:
        assert method in text
    json.dumps(to_json(cmp))
    png = Path(plot_comparison(cmp, str(tmp_path / "hv.png")))
    data = png.read_bytes()
    assert data[:8] == PNG_MAGIC
    width, height = struct.unpack(">II", data[16:24])  # IHDR
    assert width > 500 and height > 200


def test_quality_only_variant_runs_on_one_pool(table) -> None:
    setup = BenchmarkSetup(table, objectives=("val_error",), pools=("t4",), gpu_counts=(1,),
                           max_duration_seconds=0.5, max_parallel=2)
    cmp = compare(setup, ("random", "asha"), seeds=(0,))
    assert cmp.normalizer.log == (False,)
    assert cmp.stats["asha"].runs[0].trials > cmp.stats["random"].runs[0].trials


def test_bounds_cover_every_point_a_run_can_report(table) -> None:
    setup = BenchmarkSetup(table, max_trials=20)
    config = setup.study_config(0)
    norm = table_bounds(table, config.objectives, list(config.hardware), config.hardware_model)
    run = run_method(setup, "random", seed=1)
    normalised = norm(run.trace.losses)
    assert normalised.min() >= -1e-9 and normalised.max() <= 1 + 1e-9


def test_setup_rejects_an_unknown_objective(table) -> None:
    with pytest.raises(ValueError, match="objectives: 'accuracy' is neither built in"):
        BenchmarkSetup(table, objectives=("accuracy",), max_trials=3)
    with pytest.raises(ValueError, match="needs a budget"):
        BenchmarkSetup(table)


def test_compare_cli_quick_writes_plot_and_json(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "compare.py"), "--table", str(QUICK_TABLE),
         "--seeds", "1", "--methods", "random,mo-asha", "--budget-trials", "5", "--out", str(out)],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "mo-asha" in proc.stdout and "speedup (time)" in proc.stdout
    assert (out / "hv.png").read_bytes()[:8] == PNG_MAGIC
    result = json.loads((out / "results.json").read_text())
    assert set(result["methods"]) == {"random", "mo-asha"}


# -- adapters ------------------------------------------------------------------------------------


def test_table_searcher_draws_every_pair_once(table) -> None:
    small = table.subset([0, 1, 2])
    hw = [Hardware("t4", 1), Hardware("a100", 2)]
    searcher = TableSearcher(small, hw, seed=3)
    drawn = []
    while (pair := searcher.suggest()) is not None:
        drawn.append((small.index_of(pair[0]), pair[1]))
    assert sorted(drawn, key=str) == sorted(((i, h) for i in range(3) for h in hw), key=str)


def _record(tid: int, suggestion) -> TrialRecord:
    return TrialRecord(trial_id=tid, config=suggestion.config, hardware=suggestion.hardware)


def test_optuna_adapter_suggests_table_configs_and_learns_results(table) -> None:
    objectives = [Objective("val_error"), Objective("runtime")]
    hw = [Hardware("t4", 1), Hardware("h100", 8)]
    sched = OptunaScheduler(table, hw, objectives, seed=0, population_size=4)
    for tid in range(6):
        sug = sched.suggest()
        assert sug.hardware in hw
        assert table.index_of(sug.config) >= 0  # exactly a table config
        rec = _record(tid, sug)
        sched.on_trial_add(rec)
        obs = Observation(tid, 12, {"val_error": 0.1 * tid, "runtime": 1.0 + tid}, time=float(tid))
        rec.observations.append(obs)
        assert sched.on_trial_result(rec, obs).value == "continue"
        sched.on_trial_complete(rec)
    assert len(sched._study.trials) == 6
    assert all(t.values == [0.1 * i, 1.0 + i] for i, t in enumerate(sched._study.trials))


def test_syne_tune_adapter_runs_its_rungs_and_is_repeatable(table) -> None:
    objectives = [Objective("val_error"), Objective("cost")]
    hw = [Hardware("t4", 1), Hardware("a100", 1)]

    def decisions(seed: int) -> list[str]:
        sched = SyneTuneMOASHA(table, hw, objectives, resource_max=12, seed=seed, rank_fix=True)
        out = []
        for tid in range(9):
            sug = sched.suggest()
            rec = _record(tid, sug)
            sched.on_trial_add(rec)
            obs = Observation(tid, 1, {"val_error": 1.0 - 0.1 * tid, "cost": 1.0 - 0.1 * tid})
            rec.observations.append(obs)
            out.append(sched.on_trial_result(rec, obs).value)
            out.append(str(sug.config) + str(sug.hardware))
        return out

    first = decisions(0)
    assert first == decisions(0)
    # each new trial dominates all earlier ones at the rung, so the repaired ranking keeps it
    assert [d for d in first if d in ("continue", "stop")] == ["continue"] * 9


def test_ranked_priority_turns_the_sort_into_ranks() -> None:
    points = np.array([[0.5, 0.5], [0.9, 0.9], [0.1, 0.1], [0.7, 0.2]])
    ranks = _ranked_priority()(points)
    assert ranks[2] == 0  # dominates everything
    assert ranks[1] == 3  # dominated by everything
    assert sorted(ranks) == [0, 1, 2, 3]


def test_promotion_scheduler_runs_through_the_timing_wrapper(table) -> None:
    setup = BenchmarkSetup(table, max_trials=9, max_parallel=3)
    run = run_method(setup, "asha-promotion", seed=0)
    assert run.trials == 9
    assert run.epochs_trained > run.trials - run.failed  # someone was promoted past rung 1


def test_timing_wrapper_forwards_every_contract_call() -> None:
    from hwtune.api.records import Decision
    from hwtune.bench.adapters import TimedScheduler
    from hwtune.optimize.schedulers.base import Scheduler, TrialSuggestion

    calls = []

    class Recorder(Scheduler):
        objectives = (Objective("val_error"),)

        def suggest(self):
            calls.append("suggest")
            return TrialSuggestion.new({"x": 1})

        def suggest_resume(self):
            calls.append("suggest_resume")
            return TrialSuggestion.resume(7)

        def on_trial_add(self, trial):
            calls.append("add")

        def on_trial_result(self, trial, observation):
            calls.append("result")
            return Decision.PAUSE

        def on_trial_error(self, trial):
            calls.append("error")

        def on_trial_complete(self, trial):
            calls.append("complete")

        def on_trial_remove(self, trial):
            calls.append("remove")

    timed = TimedScheduler(Recorder())
    rec = TrialRecord(0, {"x": 1})
    assert timed.suggest().config == {"x": 1}
    assert timed.suggest_resume().resume_trial_id == 7  # promotions after maxTrials depend on it
    timed.on_trial_add(rec)
    assert timed.on_trial_result(rec, Observation(0, 1, {"val_error": 0.5})) is Decision.PAUSE
    timed.on_trial_error(rec)
    timed.on_trial_complete(rec)
    timed.on_trial_remove(rec)
    assert calls == ["suggest", "suggest_resume", "add", "result", "error", "complete", "remove"]
    assert len(timed.result_seconds) == 1 and len(timed.suggest_seconds) == 2
