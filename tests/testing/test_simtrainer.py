"""The simulated trainer of KWOK trial pods (hwtune.testing.simtrainer).

Cluster tests create by hand what the operator creates for a trial (a token Secret and a Job
whose pod follows the operator/trainer contract, on a KWOK GPU pool, held by
``hwtune.io/sim-outcome: hold``), serve the real report endpoint in-process with a sink that
decides from a script, and check what the simulated trainer sends and how the pod ends.
The helpers at the end need no cluster.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest

from hwtune.api.records import Decision, Hardware
from hwtune.backends.simulated.backend import seed_slot
from hwtune.bench.table import load_table
from hwtune.optimize.hardware import DEFAULT_CATALOG, HardwareModel
from hwtune.report.protocol import ReportPayload, ReportRejectedError, ReportReply, TrialFinishedError
from hwtune.report.server import ReplyMemo, ReportServer, new_token
from hwtune.testing.cluster import SIM_OUTCOME, LocalCluster
from hwtune.testing.simtrainer import (
    SimTrainer,
    SimTrainerError,
    _container_env,
    _local_checkpoint_location,
    _redirect,
    _secret_for_path,
    default_table_path,
)
from hwtune.trainer.checkpoint import CheckpointStore, read_checkpoint_meta
from hwtune.trainer.env import TrialEnv

WAIT = 60
TOKEN_DIR = "/var/run/hwtune/token"


@pytest.fixture(scope="module")
def table():
    return load_table(default_table_path())


# -- a report endpoint that decides from a script -------------------------------------------


class ScriptedSink:
    """Decides like a scheduler would, from a script: ``{trial: {level: decision}}``;
    everything else continues, and the trial's maximum level stops it (complete)."""

    def __init__(self, max_level: int) -> None:
        self.max_level = max_level
        self.tokens: dict[str, str] = {}
        self.script: dict[str, dict[int, Decision]] = {}
        self.received: list[tuple[str, int, dict[str, float]]] = []
        self.last: dict[str, int] = {}
        self.finished: set[str] = set()
        self.memo = ReplyMemo()
        self._lock = threading.Lock()

    def expected_token(self, trial: str) -> str | None:
        return self.tokens.get(trial)

    def submit_report(self, trial: str, payload: ReportPayload) -> ReportReply:
        replay = self.memo.replay(trial, payload)
        if replay is not None:
            return replay
        with self._lock:
            if trial in self.finished:
                raise TrialFinishedError(f"trial {trial} is finished")
            if payload.resource <= self.last.get(trial, 0):
                raise ReportRejectedError("resource does not advance", field="resource")
            self.last[trial] = payload.resource
            self.received.append((trial, payload.resource, dict(payload.metrics)))
            decision = self.script.get(trial, {}).get(payload.resource, Decision.CONTINUE)
            if payload.resource >= self.max_level:
                decision = Decision.STOP
            if decision is Decision.STOP:
                self.finished.add(trial)
            reply = ReportReply(decision, f"{decision.value} at {payload.resource}")
        self.memo.remember(trial, payload, reply)
        return reply

    def levels(self, trial: str) -> list[int]:
        with self._lock:
            return [level for t, level, _ in self.received if t == trial]


@pytest.fixture
def endpoint() -> Iterator[tuple[ScriptedSink, ReportServer]]:
    sink = ScriptedSink(max_level=6)
    with ReportServer(sink) as server:
        yield sink, server


# -- what the operator would create ----------------------------------------------------------


def create_trial(kube: LocalCluster, namespace: str, *, study: str, trial: str, job: str,
                 params: dict[str, Any], token: str, pool: str = "t4", gpus: int = 1,
                 max_resource: int = 6, resume: bool = False, reported: int = 0,
                 checkpoint: str | None = None, secret_token: str | None = None) -> None:
    """The token Secret and the Job of one trial launch, as the operator/trainer contract says."""
    secret = f"{study}-{trial}-token"
    env = TrialEnv(trial_id=trial, study=study, params=params, hardware=Hardware(pool, gpus),
                   target_resource=2, max_resource=max_resource, resume=resume,
                   reported_resource=reported, report_url="http://hwtune-operator.invalid:8443",
                   checkpoint_uri=checkpoint).to_env()
    env["HWTUNE_REPORT_TOKEN_FILE"] = f"{TOKEN_DIR}/token"
    labels = {"hwtune.io/study": study, "hwtune.io/trial": trial, "hwtune.io/pool": pool}
    manifests = [
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": secret, "labels": labels},
         "stringData": {"token": secret_token or token}},
        {"apiVersion": "batch/v1", "kind": "Job",
         "metadata": {"name": job, "labels": labels},
         "spec": {
             "backoffLimit": 0,
             "podFailurePolicy": {"rules": [
                 {"action": "Ignore", "onExitCodes": {"operator": "In", "values": [75]}}]},
             "template": {
                 "metadata": {"labels": labels, "annotations": {SIM_OUTCOME: "hold"}},
                 "spec": {
                     "restartPolicy": "Never",
                     "nodeSelector": {"hwtune.io/pool": pool, "type": "kwok"},
                     "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists",
                                      "effect": "NoSchedule"}],
                     "containers": [{
                         "name": "trainer", "image": "registry.example.com/trainer:1",
                         "env": [{"name": k, "value": v} for k, v in sorted(env.items())],
                         "resources": {"limits": {"nvidia.com/gpu": str(gpus)}},
                         "volumeMounts": [{"name": "hwtune-token", "mountPath": TOKEN_DIR,
                                           "readOnly": True}],
                     }],
                     "volumes": [{"name": "hwtune-token", "secret": {"secretName": secret}}],
                 }}}},
    ]
    kube.apply(manifests, namespace=namespace)


def pods_of(kube: LocalCluster, namespace: str, job: str) -> list[dict[str, Any]]:
    return kube.get_json("pods", namespace=namespace, selector=f"job-name={job}")["items"]


def pod_terminated(pod: dict[str, Any]) -> dict[str, Any] | None:
    for status in pod.get("status", {}).get("containerStatuses") or []:
        if "terminated" in (status.get("state") or {}):
            return status["state"]["terminated"]
    return None


def wait_pod_phase(kube: LocalCluster, namespace: str, job: str, phase: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        pods = pods_of(kube, namespace, job)
        return next((p for p in pods if p["status"].get("phase") == phase), None)

    return kube.wait_for(done, WAIT, f"a pod of job {job} to be {phase}")


def job_condition(kube: LocalCluster, namespace: str, job: str, condition: str) -> bool:
    body = kube.get_json("job", job, namespace=namespace)
    return any(c["type"] == condition and c["status"] == "True"
               for c in body.get("status", {}).get("conditions") or [])


def table_metrics(table, index: int, level: int, seed: int) -> dict[str, float]:
    values = table.lookup(index, level, seed)
    return {k: v for k, v in values.items() if k not in ("epoch_runtime", "memory_gib")}


def scale_for(table, index: int, seconds_per_level: float, pool: str = "t4") -> float:
    """The time scale that makes level 1 of config ``index`` take about ``seconds_per_level``."""
    reference = table.lookup(index, 1, table.seeds[0])["epoch_runtime"]
    runtime = HardwareModel(DEFAULT_CATALOG).runtime(reference, Hardware(pool, 1))
    return runtime / seconds_per_level


# -- on the cluster ----------------------------------------------------------------------------


def test_replays_the_tables_curve_with_the_trials_token_and_obeys_stop(
        kube: LocalCluster, namespace: str, endpoint, table, tmp_path: Path) -> None:
    sink, server = endpoint
    index = 3
    params = table.config(index)
    token = new_token()
    sink.tokens["7"] = token
    sink.script["7"] = {3: Decision.STOP}
    with SimTrainer(table, kubeconfig=kube.kubeconfig, namespace=namespace,
                    time_scale=scale_for(table, index, 0.2), report_url=server.url) as sim:
        create_trial(kube, namespace, study="demo", trial="7", job="demo-7", params=params,
                     token=token, checkpoint=str(tmp_path / "ckpt-7"))
        run = sim.wait_for(lambda runs: next((r for r in runs if r.ended), None), WAIT,
                           "the trial pod to end")
        pod = wait_pod_phase(kube, namespace, "demo-7", "Succeeded")
    assert run.exact_match and run.config_index == index and run.study == "demo"
    assert (run.outcome, run.exit_code) == ("stopped", 0)
    assert run.reports == [(1, "continue"), (2, "continue"), (3, "stop")]
    # Exactly the table's curve for the trial's recorded seed, level by level, nothing else.
    seed = table.seeds[seed_slot(0, 7, len(table.seeds))]
    assert run.table_seed == seed
    assert sink.received == [("7", level, table_metrics(table, index, level, seed))
                             for level in (1, 2, 3)]
    assert pod["spec"]["nodeName"].startswith("kwok-t4-")
    assert pod_terminated(pod)["exitCode"] == 0
    assert read_checkpoint_meta(str(tmp_path / "ckpt-7"))["resource"] == 3
    kube.wait_for(lambda: job_condition(kube, namespace, "demo-7", "Complete"), WAIT,
                  "job demo-7 to complete")


def test_pause_writes_a_checkpoint_and_a_second_pod_resumes_from_it(
        kube: LocalCluster, namespace: str, endpoint, table, tmp_path: Path) -> None:
    sink, server = endpoint
    params = dict(table.config(5), extra_param="ignored by the table")
    token = new_token()
    sink.tokens["2"] = token
    sink.script["2"] = {2: Decision.PAUSE}
    checkpoint = tmp_path / "ckpt-2"
    with SimTrainer(table, kubeconfig=kube.kubeconfig, namespace=namespace,
                    time_scale=scale_for(table, 5, 0.2), report_url=server.url) as sim:
        create_trial(kube, namespace, study="demo", trial="2", job="demo-2", params=params,
                     token=token, checkpoint=str(checkpoint))
        first = sim.wait_for(lambda runs: next((r for r in runs if r.ended), None), WAIT,
                             "the first pod to pause")
        pod = wait_pod_phase(kube, namespace, "demo-2", "Succeeded")
        assert (first.outcome, first.exit_code) == ("paused", 0)
        assert first.reports == [(1, "continue"), (2, "pause")]
        assert pod_terminated(pod)["exitCode"] == 0
        assert CheckpointStore(str(checkpoint)).load().resource == 2
        # The resumed launch is told nothing of level 2 (reported 0): only the checkpoint
        # can make it continue at 3 instead of starting over.
        sink.tokens["2"] = token = new_token()  # a new token per launch
        create_trial(kube, namespace, study="demo", trial="2", job="demo-2-r1", params=params,
                     token=token, checkpoint=str(checkpoint), resume=True, reported=0)
        second = sim.wait_for(
            lambda runs: next((r for r in runs if r.ended and r.pod != first.pod), None), WAIT,
            "the resumed pod to end")
        wait_pod_phase(kube, namespace, "demo-2-r1", "Succeeded")
    assert second.resumed_from == 2 and second.start_level == 3
    assert second.levels == [3, 4, 5, 6] and second.outcome == "stopped"
    assert sink.levels("2") == [1, 2, 3, 4, 5, 6]
    assert second.exact_match and second.config_index == 5
    assert CheckpointStore(str(checkpoint)).load().state["level"] == 6


def test_resumed_pod_retrains_levels_the_study_holds_without_sending_them(
        kube: LocalCluster, namespace: str, endpoint, table, tmp_path: Path) -> None:
    sink, server = endpoint
    token = new_token()
    sink.tokens["4"] = token
    sink.last["4"] = 3  # the study already holds levels 1-3 of this trial
    checkpoint = tmp_path / "ckpt-4"
    CheckpointStore(str(checkpoint)).save({"simulated": True, "level": 1}, 1)
    with SimTrainer(table, kubeconfig=kube.kubeconfig, namespace=namespace,
                    time_scale=scale_for(table, 0, 0.1), report_url=server.url) as sim:
        create_trial(kube, namespace, study="demo", trial="4", job="demo-4",
                     params=table.config(0), token=token, checkpoint=str(checkpoint),
                     resume=True, reported=3)
        run = sim.wait_for(lambda runs: next((r for r in runs if r.ended), None), WAIT,
                           "the pod to end")
    assert (run.resumed_from, run.start_level) == (1, 2)
    assert run.levels == [4, 5, 6] and sink.levels("4") == [4, 5, 6]


def test_deleted_pod_keeps_its_checkpoint_and_exits_75(
        kube: LocalCluster, namespace: str, endpoint, table, tmp_path: Path) -> None:
    sink, server = endpoint
    token = new_token()
    sink.tokens["9"] = token
    checkpoint = tmp_path / "ckpt-9"
    # Level 1 quick, then slow enough that the deletion lands mid-level 2.
    with SimTrainer(table, kubeconfig=kube.kubeconfig, namespace=namespace,
                    time_scale=scale_for(table, 1, 3.0), report_url=server.url) as sim:
        create_trial(kube, namespace, study="demo", trial="9", job="demo-9",
                     params=table.config(1), token=token, checkpoint=str(checkpoint))
        kube.wait_for(lambda: sink.levels("9") == [1], WAIT, "level 1 of trial 9")
        pod = pods_of(kube, namespace, "demo-9")[0]
        kube.kubectl("-n", namespace, "delete", "pod", pod["metadata"]["name"], "--wait=false")
        run = sim.wait_for(lambda runs: next((r for r in runs if r.ended), None), WAIT,
                           "the deleted pod to end")
        assert (run.outcome, run.exit_code) == ("preempted", 75)
        assert run.levels == [1] and sink.levels("9") == [1]
        assert read_checkpoint_meta(str(checkpoint))["resource"] == 1
        # The pod ends Failed with exit 75: the Job's podFailurePolicy ignores it (no failure
        # counted with backoffLimit 0), so the Job makes a new pod instead of failing.
        kube.wait_for(lambda: not any(p["metadata"]["uid"] == pod["metadata"]["uid"]
                                      for p in pods_of(kube, namespace, "demo-9")), WAIT,
                      "the deleted pod to go")
        assert not job_condition(kube, namespace, "demo-9", "Failed")
        kube.wait_for(lambda: any(p["metadata"]["uid"] != pod["metadata"]["uid"]
                                  for p in pods_of(kube, namespace, "demo-9")), WAIT,
                      "the Job to replace the preempted pod")
        kube.kubectl("-n", namespace, "delete", "job", "demo-9", "--wait=false")


def test_held_pod_nobody_ends_is_killed_after_the_grace_period(
        kube: LocalCluster, namespace: str, table) -> None:
    # No simulated trainer: KWOK kills the deleted held pod (exit 137, as SIGKILL) within ~5 s,
    # and the Job counts that as a failure (its podFailurePolicy ignores only 75).
    create_trial(kube, namespace, study="demo", trial="5", job="demo-5",
                 params=table.config(0), token=new_token())
    pod = wait_pod_phase(kube, namespace, "demo-5", "Running")
    kube.kubectl("-n", namespace, "delete", "pod", pod["metadata"]["name"], "--wait=false")
    kube.wait_for(lambda: job_condition(kube, namespace, "demo-5", "Failed"), 20,
                  "job demo-5 to fail after its pod was killed")
    kube.wait_for(lambda: not pods_of(kube, namespace, "demo-5"), 20, "the killed pod to go")


def test_wrong_token_fails_the_pod_and_nothing_is_recorded(
        kube: LocalCluster, namespace: str, endpoint, table) -> None:
    sink, server = endpoint
    sink.tokens["3"] = new_token()
    with SimTrainer(table, kubeconfig=kube.kubeconfig, namespace=namespace,
                    time_scale=scale_for(table, 0, 0.1), report_url=server.url) as sim:
        create_trial(kube, namespace, study="demo", trial="3", job="demo-3",
                     params=table.config(0), token="unused", secret_token=new_token())
        run = sim.wait_for(lambda runs: next((r for r in runs if r.ended), None), WAIT,
                           "the pod to fail")
        pod = wait_pod_phase(kube, namespace, "demo-3", "Failed")
    assert (run.outcome, run.exit_code) == ("failed", 1)
    assert "401" in run.reason
    assert pod_terminated(pod)["exitCode"] == 1
    assert sink.received == []


def test_pods_without_hold_or_off_kwok_are_left_alone(
        kube: LocalCluster, namespace: str, table) -> None:
    # A Job pod with no outcome annotation: KWOK itself ends it; the trainer must not report.
    kube.apply({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "plain"},
                "spec": {"backoffLimit": 0, "template": {
                    "metadata": {"labels": {"hwtune.io/study": "demo", "hwtune.io/trial": "1"}},
                    "spec": {"restartPolicy": "Never", "nodeSelector": {"type": "kwok"},
                             "tolerations": [{"operator": "Exists"}],
                             "containers": [{"name": "c", "image": "x",
                                             "env": [{"name": "HWTUNE_TRIAL_ID",
                                                      "value": "1"}]}]}}}},
               namespace=namespace)
    with SimTrainer(table, kubeconfig=kube.kubeconfig, namespace=namespace) as sim:
        wait_pod_phase(kube, namespace, "plain", "Succeeded")
        assert sim.runs() == []


# -- without a cluster -----------------------------------------------------------------------


def test_curve_choice_exact_nearest_and_seed_as_the_simulated_backend(table) -> None:
    sim = SimTrainer(table)
    exact = sim.choose_curve(dict(table.config(4), unrelated=1), "11")
    assert (exact.index, exact.exact) == (4, True)
    assert exact.seed == table.seeds[seed_slot(0, 11, len(table.seeds))]
    near = dict(table.config(4))
    near["lr"] = near["lr"] * 1.01
    choice = sim.choose_curve(near, "11")
    assert (choice.index, choice.exact) == (4, False)
    metrics, runtime, memory = sim.level_metrics(choice, 2)
    assert set(metrics) == {"val_error", "val_loss", "train_loss"}
    assert runtime == table.lookup(4, 2, choice.seed)["epoch_runtime"] and memory > 0


def test_token_secret_and_checkpoint_paths_from_the_pod_spec() -> None:
    pod = {"spec": {
        "containers": [
            {"name": "sidecar", "env": [{"name": "X", "value": "1"}]},
            {"name": "trainer",
             "env": [{"name": "HWTUNE_TRIAL_ID", "value": "5"},
                     {"name": "OTHER", "valueFrom": {"fieldRef": {"fieldPath": "x"}}}],
             "volumeMounts": [{"name": "data", "mountPath": "/var/run"},
                              {"name": "tok", "mountPath": "/var/run/hwtune/token"}]}],
        "volumes": [{"name": "data", "emptyDir": {}},
                    {"name": "tok", "secret": {"secretName": "s-5-token",
                                               "items": [{"key": "token", "path": "t"}]}}]}}
    container, env = _container_env(pod)
    assert container["name"] == "trainer" and env == {"HWTUNE_TRIAL_ID": "5"}
    assert _secret_for_path(pod, container, "/var/run/hwtune/token/t") == ("s-5-token", "token")
    with pytest.raises(SimTrainerError, match="is not a Secret"):
        _secret_for_path(pod, container, "/var/run/other/token")
    with pytest.raises(SimTrainerError, match="no volume"):
        _secret_for_path(pod, container, "/etc/token")
    bad = {"spec": {"containers": [{"name": "c", "env": [
        {"name": "HWTUNE_TRIAL_ID", "value": "1"},
        {"name": "HWTUNE_PARAMS", "valueFrom": {"configMapKeyRef": {"name": "x", "key": "y"}}}]}]}}
    with pytest.raises(SimTrainerError, match="HWTUNE_PARAMS .*plain"):
        _container_env(bad)
    assert _local_checkpoint_location("/ckpt/s/1", None) == "/ckpt/s/1"
    assert _local_checkpoint_location("file:///ckpt/s/1", Path("/host")) == "/host/ckpt/s/1"
    assert _local_checkpoint_location("s3://bucket/s/1", None) is None
    assert _local_checkpoint_location(None, None) is None
    # The operator's study-scoped path survives the move onto the host's endpoint.
    assert (_redirect("http://op.hwtune.svc:8443/studies/ns/s1", "http://127.0.0.1:5000/")
            == "http://127.0.0.1:5000/studies/ns/s1")
    assert _redirect("http://op:8443", "http://127.0.0.1:5000") == "http://127.0.0.1:5000"
    assert _redirect(None, "http://127.0.0.1:5000/x") == "http://127.0.0.1:5000/x"


def test_command_line_refuses_bad_input_with_a_clear_message(tmp_path: Path) -> None:
    bad = tmp_path / "table.jsonl"
    bad.write_text("{}\n")
    cases = [
        (["--namespace", "x", "--table", str(bad)], f"--table {bad}"),
        (["--namespace", "x", "--time-scale", "0"], "--time-scale: must be > 0"),
        (["--namespace", "x", "--kubeconfig", str(tmp_path / "nope")], "no such file"),
    ]
    for args, message in cases:
        result = subprocess.run([sys.executable, "-m", "hwtune.testing.simtrainer", *args],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 2, result.stderr
        assert message in result.stderr and "Traceback" not in result.stderr
    result = subprocess.run([sys.executable, "-m", "hwtune.testing.simtrainer"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "--namespace" in result.stderr
