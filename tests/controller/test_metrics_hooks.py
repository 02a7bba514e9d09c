"""The operator's metrics hooks on a real StudyRunner driven against the in-memory API of
tests/backends (the real control plane: tests/observe/test_operator_prometheus.py): the loaded
study is exported, report handling and tuner steps are timed, preempted pods are counted once,
and a finished daemon leaves no series."""

from __future__ import annotations

import asyncio

from prometheus_client.parser import text_string_to_metric_families

from hwtune.controller.metrics import forget_study, instrument_runner, preempted_trial
from hwtune.observe import StudyMetrics
from tests.backends.kube_fakes import FakeKube, FakeTrainers
from tests.backends.test_kubernetes_runner import make_runner


def scrape(metrics: StudyMetrics) -> dict[tuple[str, tuple], float]:
    text = metrics.exposition().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def total(samples: dict, name: str) -> float:
    return sum(v for (n, _), v in samples.items() if n == name)


def disrupted_pod(trial: int, uid: str) -> dict:
    return {"metadata": {"uid": uid, "labels": {"hwtune.io/trial": str(trial), "hwtune.io/study": "st"}},
            "status": {"phase": "Running",
                       "conditions": [{"type": "DisruptionTarget", "status": "True"}]}}


def test_runner_is_exported_timed_and_forgotten():
    kube = FakeKube()
    trainers = FakeTrainers(kube)
    runner = make_runner(kube)
    metrics = StudyMetrics()
    instrument_runner(runner, metrics)

    async def main() -> str:
        await runner.load()
        task = asyncio.create_task(runner.run())
        n = 0
        while not task.done():
            await asyncio.sleep(0.01)
            await trainers.step(runner)
            n += 1
            assert n < 5000
        await runner.flush_status()
        return task.result()

    asyncio.run(main())
    samples = scrape(metrics)
    status = kube.study_status
    phases = {dict(k)["phase"]: v for (n, k), v in samples.items() if n == "hwtune_study_trials"}
    assert sum(phases.values()) == status["trials"]["total"] == 12
    assert phases["Completed"] == status["trials"]["completed"]
    assert total(samples, "hwtune_study_spent_usd") == __import__("pytest").approx(
        status["spentCostUSD"], abs=1e-5)
    reports = total(samples, "hwtune_trial_reports_total")
    assert reports > 0
    # every report the runner answered was timed, the log write included
    assert total(samples, "hwtune_report_decision_seconds_count") == reports
    assert total(samples, "hwtune_reconcile_seconds_count") >= 1
    # a pod being preempted counts once, however many events it gets
    runner.pod_event(disrupted_pod(0, "pod-a"))
    runner.pod_event(disrupted_pod(0, "pod-a"))
    runner.pod_event({"metadata": {"uid": "pod-b", "labels": {"hwtune.io/trial": "1"}},
                      "status": {"conditions": [{"type": "Ready", "status": "True"}]}})
    assert total(scrape(metrics), "hwtune_trial_preemptions_total") == 1
    forget_study(metrics, "ns", "st")
    assert not [k for k in scrape(metrics) if dict(k[1]).get("study") == "st"]


def test_preempted_trial_reads_the_disruption_condition():
    assert preempted_trial(disrupted_pod(7, "u")) == 7
    assert preempted_trial({"metadata": {"labels": {"hwtune.io/trial": "7"}}, "status": {}}) is None
    assert preempted_trial({"metadata": {}, "status": {"conditions": [
        {"type": "DisruptionTarget", "status": "True"}]}}) is None


def test_no_metrics_no_hooks():
    runner = make_runner(FakeKube())
    load = runner.load
    instrument_runner(runner, None)
    assert runner.load == load
