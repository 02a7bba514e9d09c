"""benchmarks/operator_large.py at CI size, on a real cluster: both modes run end to end and
measure what they print (the numbers themselves depend on the machine and are not asserted,
except the bounds the issue sets: the study object under 100 KiB)."""

from __future__ import annotations

from benchmarks.operator_large import POLL_S, QUICK, format_result, run_seeded, run_study
from hwtune.testing.cluster import LocalCluster


def test_seeded_quick_rebuilds_a_stored_study_and_decides(kube: LocalCluster, tmp_path) -> None:
    result = run_seeded(QUICK, kube, log_dir=tmp_path, progress=False)
    text = format_result(result)
    assert not result.errors, text
    assert result.trials == QUICK.trials
    # The cold operator loaded every stored event and trial, then made a new decision.
    assert result.load_split["trials"] == QUICK.trials, text
    assert result.load_split["events"] > 2 * QUICK.trials
    assert result.loaded_seconds is not None and result.first_decision_seconds is not None
    # The loaded line is noticed by polling (a decision right after it can be seen first).
    assert result.first_decision_seconds >= result.loaded_seconds - 2 * POLL_S, text
    assert result.loads == 1 and result.replay_differences == 0, text  # decided the same
    assert result.status_trials >= QUICK.trials
    assert 0 < result.study_object_bytes < 100 * 1024
    assert result.log_chunks >= 1 and result.log_bytes > 0 and result.tuningtrial_bytes > 0
    assert result.operator_peak_rss_mib is not None
    assert "restart -> first decision" in text


def test_run_quick_completes_a_study_through_a_sigkill(kube: LocalCluster, tmp_path) -> None:
    result = run_study(QUICK, kube, log_dir=tmp_path, progress=False)
    text = format_result(result)
    assert not result.errors and result.phase == "Completed", text
    assert result.trials >= QUICK.trials and result.status_trials == result.trials
    assert result.first_decision_seconds is not None, text
    assert result.load_split.get("events", 0) > 0, text
    assert 0 < result.study_object_bytes < 100 * 1024
    assert result.log_chunks >= 1
