"""benchmarks/operator_scale.py at CI size: the harness measures what it says on a real cluster.

The benchmark's numbers are not asserted (they depend on the machine); what is checked is that
the harness runs end to end and measures: every pod or trial accounted for, latencies taken
from real reports, the study driven to completion by the operator.
"""

from __future__ import annotations

from dataclasses import replace

from benchmarks.operator_scale import (
    QUICK,
    Result,
    format_result,
    format_summary,
    run,
    run_trainer_only,
)
from hwtune.testing.cluster import LocalCluster


def test_trainer_only_quick_trains_every_pod_and_measures_reports(kube: LocalCluster,
                                                                   tmp_path) -> None:
    cfg = replace(QUICK, parallel=16, max_level=2, level_seconds=0.3, timeout=60)
    result = run_trainer_only(cfg, kube, log_dir=tmp_path, progress=False)
    assert result.phase == "Completed", format_result(result)
    assert sum(result.trials_by_phase.values()) == 16
    # Only a config too big for one GPU's memory may fail (out of memory), never a report.
    assert set(result.trials_by_phase) <= {"stopped", "failed"}
    assert result.reports >= 2 * result.trials_by_phase["stopped"]
    assert result.p50_ms is not None and result.p99_ms >= result.p50_ms
    assert "report round trip p99" in format_result(result)


def test_operator_quick_runs_a_study_to_completion_through_a_restart(kube: LocalCluster,
                                                                      tmp_path) -> None:
    result = run(QUICK, kube, log_dir=tmp_path, progress=False)
    assert not result.errors and result.phase == "Completed", format_result(result)
    assert result.jobs_created >= QUICK.trials
    assert result.rebuild_seconds is not None and result.trials_at_restart is not None
    assert result.reports > 0 and result.p99_ms is not None
    assert 0 < result.study_object_bytes < 100 * 1024
    assert result.operator_peak_rss_mib is not None
    # The CPU account: every control-plane component and the operator used some CPU, the
    # shares are of the machine's busy time, and the per-10 s rows cover the run.
    cpu = result.process_cpu_seconds
    for name in ("kube-apiserver", "etcd", "kube-controller-manager", "kube-scheduler",
                 "kwok-controller", "operator", "simulated trainer"):
        assert cpu.get(name, 0) > 0, (name, cpu)
    named = sum(v for k, v in cpu.items() if k not in ("machine", "other"))
    assert named <= cpu["machine"] + 1.0  # /proc's ticks: a little rounding
    assert len(result.intervals) >= int(result.wall_seconds // 10)
    # reports by the time they were sent: one sent after the last sample is in no row
    assert 0 < sum(r["reports"] for r in result.intervals) <= result.reports
    assert "CPU by process" in format_result(result) and "apisrv" in format_result(result)


def test_repeated_runs_print_each_goals_median_and_how_many_runs_reached_it() -> None:
    runs = [Result(config={}, cpus=2, launches_per_second_ramp=lps, p99_ms=p99,
                   at_load_p99_ms=at_load, p50_ms=20.0, peak_concurrent=peak)
            for lps, p99, at_load, peak in ((39.7, 254.9, 184.4, 1000), (18.0, 150.0, 170.0, 1000),
                                             (30.0, 300.0, 250.0, 990))]
    rows = {line[:46].strip(): line.split() for line in format_summary(runs).splitlines()[2:]}
    assert rows["launches/s while ramping"][-4:] == ["30.0", ">", "20", "2/3"]  # median, goal
    assert rows["report-to-decision p99, whole window (ms)"][-1] == "1/3"
    assert rows["report p99 at >= 90% of parallel (ms)"][-1] == "2/3"
    assert rows["peak concurrent trials"][-1] == "2/3"
    assert "API server write p99 (ms)" not in rows  # measured in no run: no row
