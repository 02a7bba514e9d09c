"""Adoption at start-up reconciles every logged trial with its cluster objects, tested by killing
the operator at the one point no other test reaches by chance: a trial's launch is in the log,
its TuningTrial (and so its Secret and Job) not created yet. The operator kills itself there
(``HWTUNE_TEST_KILL_BEFORE_TRIAL_CREATE=<study>/<trial>[:<seconds>]``, a test hook in
``hwtune.backends.kubernetes.runner``).

- still active at the restart: the re-run launch creates the TuningTrial and exactly one Job
  (deterministic names), and the trial runs to its end;
- halted while it was down (here a deadline stopped it before the kill): the restart recreates
  the TuningTrial from the log with its final phase, and no Secret or Job.
"""

from __future__ import annotations

import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from hwtune.engine import Study
from hwtune.testing.cluster import LocalCluster
from tests.cluster.test_operator_chaos import JobWatch
from tests.cluster.test_operator_studies import (
    SUFFIX,
    apply,
    cluster,  # noqa: F401 - the module fixture (CRDs and pools applied)
    delete_configurations,
    delete_studies,
    engine_config,
    free_port,
    get,
    logged_events,
    start_operator_process,
    stop_operator_processes,
    study_doc,
    study_status,
)
from tests.cluster.trial_driver import TrialDriver

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

HOOK = "HWTUNE_TEST_KILL_BEFORE_TRIAL_CREATE"


def trials_by_id(cluster: LocalCluster, namespace: str, name: str) -> dict[int, dict]:
    return {t["spec"]["trialId"]: t for t in get(cluster, "tuningtrials", namespace,
                                                  f"hwtune.io/study={name}")}


def run_killed_at(cluster: LocalCluster, namespace: str, tmp_path: Path, doc: dict, trial: int,
                  delay: float = 0.0) -> tuple[dict, list[dict], JobWatch, TrialDriver, dict]:
    """Run ``doc`` with an operator that kills itself before creating ``trial``'s TuningTrial;
    check the kill hit that point; restart (same pod identity) and run until Completed."""
    name = doc["metadata"]["name"]
    configuration = f"adopt-{SUFFIX}-{name}.hwtune.io"
    port = free_port()
    log_path = tmp_path / "operator.log"
    jobs = JobWatch(cluster.kubeconfig, namespace).start()
    driver = TrialDriver(cluster.kubeconfig, namespace, epoch_seconds=0.05,
                         report_url=f"http://127.0.0.1:{port}/studies/{namespace}/{name}").start()
    process = start_operator_process(cluster, namespace, configuration, port, log_path,
                                     lease_seconds=30, pod_name="op-0",
                                     extra_env={HOOK: f"{name}/{trial}:{delay:g}"})
    at_kill: dict = {}
    try:
        apply(cluster, doc, namespace)
        assert process.wait(timeout=180) == -signal.SIGKILL, \
            f"the operator did not kill itself at the hook (log {log_path})"
        events = logged_events(cluster, name, namespace)
        at_kill = {"events": events, "trials": trials_by_id(cluster, namespace, name)}
        assert any(e["kind"] == "created" and e["trialId"] == trial for e in events)
        assert trial not in at_kill["trials"]  # killed between the log and the create
        process = start_operator_process(cluster, namespace, configuration, port, log_path,
                                         lease_seconds=30, pod_name="op-0")
        deadline = time.monotonic() + 240
        while study_status(cluster, name, namespace).get("phase") != "Completed":
            assert process.poll() is None, f"the restarted operator died (log {log_path})"
            assert time.monotonic() < deadline, f"the study did not complete (log {log_path})"
            time.sleep(0.5)
        # Completed is written after every TuningTrial's final status.
        status = study_status(cluster, name, namespace)
        events = logged_events(cluster, name, namespace)
        trials = trials_by_id(cluster, namespace, name)
        time.sleep(1.0)  # let the watch see the last Jobs
    finally:
        driver.stop()
        jobs.stop()
        stop_operator_processes(cluster, namespace, process)
        delete_configurations(cluster, configuration)
    at_kill["final_trials"] = trials  # read before the study is deleted
    return status, events, jobs, driver, at_kill


def check_reconciled(cluster: LocalCluster, doc: dict, status: dict, events: list[dict],
                     trials: dict[int, dict], jobs: JobWatch) -> None:
    """Every logged trial has its TuningTrial with the log's phase; one Job per launch."""
    rebuilt = Study.rebuild(engine_config(cluster, doc), events, strict=True)
    assert sorted(trials) == [t.trial_id for t in rebuilt.trials]
    for record in rebuilt.trials:
        assert trials[record.trial_id]["status"]["phase"] == record.phase.value, record.trial_id
    assert status["trials"]["total"] == len(rebuilt.trials)
    per_launch = Counter(jobs.jobs.values())
    assert all(n == 1 for n in per_launch.values()), per_launch  # no duplicate Job
    launches = {(e["trialId"], n) for e, n in _launch_numbers(events)}
    assert set(per_launch) <= launches  # no Job of a launch the log does not hold


def _launch_numbers(events: list[dict]) -> list[tuple[dict, int]]:
    seen: Counter[int] = Counter()
    out = []
    for e in events:
        if e["kind"] in ("created", "resumed"):
            seen[e["trialId"]] += 1
            out.append((e, seen[e["trialId"]]))
    return out


def test_a_trial_whose_tuningtrial_create_was_lost_is_relaunched_once(
        cluster: LocalCluster, namespace: str, tmp_path: Path) -> None:  # noqa: F811
    doc = study_doc("lost-create", max_trials=8, parallel=3, seed=21)
    status, events, jobs, driver, at_kill = run_killed_at(cluster, namespace, tmp_path, doc,
                                                          trial=4)
    check_reconciled(cluster, doc, status, events, at_kill["final_trials"], jobs)
    assert sorted(e["trialId"] for e in events if e["kind"] == "created") == list(range(8))
    assert Counter(t for t, _ in jobs.jobs.values())[4] >= 1  # trial 4 got its Job ...
    assert any(p.trial == 4 and p.replies for p in driver.played.values())  # ... and ran
    assert not driver.errors, driver.errors


def test_a_trial_halted_while_its_tuningtrial_create_was_lost_gets_it_at_restart(
        cluster: LocalCluster, namespace: str, tmp_path: Path) -> None:  # noqa: F811
    doc = study_doc("halted-lost", max_trials=40, parallel=3, seed=22)
    doc["spec"]["budget"]["maxDurationSeconds"] = 6
    # Trial 0's launch effect waits 10 s, then the operator dies: meanwhile the 6 s deadline
    # stops every active trial (trial 0 too) and the log stores that.
    status, events, jobs, driver, at_kill = run_killed_at(cluster, namespace, tmp_path, doc,
                                                          trial=0, delay=10)
    assert any(e["kind"] == "stopped" and e["trialId"] == 0 for e in at_kill["events"]), \
        "the deadline did not stop trial 0 before the kill"
    trials = at_kill["final_trials"]
    check_reconciled(cluster, doc, status, events, trials, jobs)
    assert trials[0]["status"]["phase"] == "Stopped"
    assert trials[0]["status"]["reason"] == "BudgetExhausted"
    assert 0 not in {t for t, _ in jobs.jobs.values()}  # never a Job for it
    assert not get(cluster, "secrets", namespace, "hwtune.io/trial=0,hwtune.io/study=halted-lost")
