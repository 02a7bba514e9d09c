"""The operator runs studies on the real local control plane: TuningTrials and Jobs on the pools
the optimizer picks, MO-ASHA stops, a deleted study leaves nothing, a SIGKILLed operator loses
nothing, and reports need the trial's own token. Trainers are played by ``TrialDriver``."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hwtune.api.crd import RESOURCES
from hwtune.backends.kubernetes.log import parse_chunks
from hwtune.controller import OperatorSettings
from hwtune.controller.operator import EmbeddedOperator
from hwtune.engine import Study, StudyConfig
from hwtune.engine.config import pool_catalog
from hwtune.testing.cluster import LocalCluster
from tests.cluster.trial_driver import TrialDriver

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]
SUFFIX = secrets.token_hex(3)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def study_doc(name: str, *, scheduler: str = "mo-asha", max_trials: int = 12,
              parallel: int = 4, max_epoch: int = 9, seed: int = 3) -> dict[str, Any]:
    return {
        "apiVersion": "hwtune.io/v1alpha1", "kind": "TuningStudy", "metadata": {"name": name},
        "spec": {
            "objectives": [{"metric": "val_error", "goal": "minimize"},
                           {"metric": "cost", "goal": "minimize"}],
            "parameters": {"lr": {"type": "float", "min": 1e-4, "max": 1e-1, "scale": "log"},
                           "width": {"type": "int", "values": [16, 32, 64]}},
            "hardware": {"pools": ["t4", "a100"], "gpuCounts": [1, 2]},
            "fidelity": {"resource": "epoch", "min": 1, "max": max_epoch, "reductionFactor": 3},
            "algorithm": {"scheduler": scheduler, "searcher": "random", "seed": seed},
            "budget": {"maxTrials": max_trials, "maxParallelTrials": parallel},
            "trialTemplate": {
                "metadata": {"annotations": {"hwtune.io/sim-outcome": "hold",
                                             "hwtune.io/sim-duration": "100ms"}},
                "spec": {"containers": [{"name": "trainer", "image": "trainer:1",
                                         "args": ["--lr=$(HWTUNE_PARAM_LR)"]}]}},
        },
    }


@pytest.fixture(scope="module")
def cluster(kube: LocalCluster) -> LocalCluster:
    kube.kubectl("apply", "-f", str(ROOT / "crds"))
    kube.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                 *[f"crd/{r.__crd__.crd_name}" for r in RESOURCES])
    kube.kubectl("apply", "-f", str(ROOT / "examples" / "pools.yaml"))
    return kube


def operator_settings(cluster: LocalCluster, namespace: str, configuration: str,
                      report_port: int | None = None) -> OperatorSettings:
    return OperatorSettings(kubeconfig=cluster.kubeconfig, namespaces=(namespace,),
                            webhook_host="127.0.0.1", webhook_port=None,
                            webhook_configuration=configuration, standalone=True,
                            shutdown_timeout_s=15, report_listen="127.0.0.1",
                            report_port=report_port)


def delete_configurations(kube: LocalCluster, name: str) -> None:
    for kind in ("validatingwebhookconfiguration", "mutatingwebhookconfiguration"):
        kube.kubectl("delete", kind, name, "--ignore-not-found", check=False)


def delete_studies(kube: LocalCluster, namespace: str) -> None:
    """While the operator still runs: its finalizer must not outlive it (the namespace could not
    be deleted, and the next operator would find the study)."""
    kube.kubectl("-n", namespace, "delete", "tuningstudies", "--all", "--timeout=60s", check=False)


@pytest.fixture
def operator(cluster: LocalCluster, namespace: str) -> Iterator[EmbeddedOperator]:
    configuration = f"op-{SUFFIX}-{secrets.token_hex(2)}.hwtune.io"
    embedded = EmbeddedOperator(operator_settings(cluster, namespace, configuration))
    try:
        embedded.start(timeout=60)
        yield embedded
    finally:
        try:
            delete_studies(cluster, namespace)
            embedded.stop(check=False)
        finally:
            delete_configurations(cluster, configuration)


def apply(kube: LocalCluster, doc: dict[str, Any], namespace: str) -> None:
    kube.kubectl("-n", namespace, "apply", "-f", "-", input=json.dumps(doc))


def get(kube: LocalCluster, kind: str, namespace: str, selector: str | None = None) -> list[dict]:
    args = ["-l", selector] if selector else []
    return json.loads(kube.kubectl("-n", namespace, "get", kind, *args, "-o", "json").stdout)[
        "items"]


def study_status(kube: LocalCluster, name: str, namespace: str) -> dict[str, Any]:
    result = kube.kubectl("-n", namespace, "get", "tuningstudy", name, "-o", "json", check=False)
    if result.returncode != 0:
        return {}
    return json.loads(result.stdout).get("status") or {}


def logged_events(kube: LocalCluster, name: str, namespace: str) -> list[dict]:
    cms = get(kube, "configmaps", namespace, f"hwtune.io/study={name},hwtune.io/log=true")
    return parse_chunks((int(c["metadata"]["labels"]["hwtune.io/log-chunk"]), c.get("data") or {})
                        for c in cms).events


def engine_config(kube: LocalCluster, doc: dict[str, Any]) -> StudyConfig:
    pools = {p["metadata"]["name"]: p["spec"] for p in kube.get_json("hardwarepools")["items"]}
    return StudyConfig.from_spec(doc["spec"], catalog=pool_catalog(pools))


def wait_completed(kube: LocalCluster, name: str, namespace: str, driver: TrialDriver,
                   timeout: float = 300) -> dict[str, Any]:
    kube.wait_for(lambda: study_status(kube, name, namespace).get("phase") == "Completed",
                  timeout=timeout, what=f"study {name} to complete (driver errors: "
                                        f"{driver.errors[-3:]})")
    return study_status(kube, name, namespace)


def check_front(kube: LocalCluster, status: dict[str, Any], namespace: str, name: str) -> None:
    trials = get(kube, "tuningtrials", namespace, f"hwtune.io/study={name}")
    points = {t["spec"]["trialId"]: t["status"]["learningCurve"][-1]["metrics"] for t in trials
              if (t.get("status") or {}).get("learningCurve")}
    front = {t for t, m in points.items()
             if not any(o["val_error"] <= m["val_error"] and o["cost"] <= m["cost"]
                        and (o["val_error"], o["cost"]) != (m["val_error"], m["cost"])
                        for o in points.values())}
    assert {p["trialId"] for p in status["paretoFront"]} == front


def test_study_runs_to_completion_on_the_pools_it_names(
        cluster: LocalCluster, namespace: str, operator: EmbeddedOperator) -> None:
    name = "mo-asha"
    doc = study_doc(name)
    driver = TrialDriver(cluster.kubeconfig, namespace).start()
    try:
        apply(cluster, doc, namespace)
        status = wait_completed(cluster, name, namespace, driver)
    finally:
        driver.stop()
    assert not driver.errors, driver.errors
    assert status["trials"]["total"] == 12
    assert status["trials"]["running"] == status["trials"]["pending"] == 0
    trials = {t["spec"]["trialId"]: t for t in get(cluster, "tuningtrials", namespace,
                                                   f"hwtune.io/study={name}")}
    assert sorted(trials) == list(range(12))
    nodes = {n["metadata"]["name"]: n["metadata"]["labels"]
             for n in cluster.get_json("nodes")["items"]}
    for played in driver.played.values():  # every pod ran where its TuningTrial says
        hardware = trials[played.trial]["spec"]["hardware"]
        assert nodes[played.node]["hwtune.io/pool"] == hardware["pool"]
        assert played.gpu_limit == str(hardware["gpuCount"])
        assert played.env["HWTUNE_POOL"] == hardware["pool"]
    stopped = [t for t, o in trials.items() if o["status"]["phase"] == "Stopped"]
    assert stopped, "MO-ASHA stopped no trial"
    jobs = {j["metadata"]["name"] for j in get(cluster, "jobs", namespace, "hwtune.io/study")}
    assert not {f"{name}-{t}" for t in stopped} & jobs  # stopped trials' Jobs are gone
    # Finished trials leave their TuningTrial only: completed trials' Jobs are deleted too
    # (before the study says Completed), and the GC takes their pods and the token Secrets
    # the Jobs own.
    assert not {j["metadata"]["name"]
                for j in get(cluster, "jobs", namespace, f"hwtune.io/study={name}")}
    cluster.wait_for(lambda: not get(cluster, "pods", namespace, f"hwtune.io/study={name}")
                     and not get(cluster, "secrets", namespace, f"hwtune.io/study={name}"),
                     timeout=60, what="the finished trials' pods and Secrets to be collected")
    check_front(cluster, status, namespace, name)
    assert status["spentCostUSD"] > 0 and status["frontSize"] == len(status["paretoFront"])
    # One engine: the cluster's log replays to the same decisions through a fresh scheduler.
    events = logged_events(cluster, name, namespace)
    Study.rebuild(engine_config(cluster, doc), events, strict=True)
    answered = sorted((p.trial, r, d) for p in driver.played.values() for r, d in p.replies)
    logged = sorted((e["trialId"], e["resource"], e["decision"]) for e in events
                    if e["kind"] == "observed")
    assert answered == logged  # every answer a trainer got is in the log, once
    # Raising maxTrials on the finished study resumes it from its log.
    driver = TrialDriver(cluster.kubeconfig, namespace).start()
    try:
        cluster.kubectl("-n", namespace, "patch", "tuningstudy", name, "--type=merge",
                        "-p", json.dumps({"spec": {"budget": {"maxTrials": 15}}}))
        cluster.wait_for(lambda: (study_status(cluster, name, namespace).get("trials") or {})
                         .get("total") == 15, timeout=120, what="3 more trials")
        status = wait_completed(cluster, name, namespace, driver)
    finally:
        driver.stop()
    assert status["trials"]["total"] == 15 and not driver.errors
    refused = cluster.kubectl("-n", namespace, "patch", "tuningstudy", name, "--type=merge",
                              "-p", json.dumps({"spec": {"algorithm": {"seed": 4}}}), check=False)
    assert refused.returncode != 0 and "spec.algorithm: Forbidden" in refused.stderr


def test_deleted_study_leaves_no_job_pod_or_secret(
        cluster: LocalCluster, namespace: str, operator: EmbeddedOperator) -> None:
    name = "doomed"
    apply(cluster, study_doc(name, max_trials=8), namespace)
    cluster.wait_for(lambda: len(get(cluster, "pods", namespace, f"hwtune.io/study={name}")) >= 3,
                     timeout=90, what="the study's pods")
    started = time.monotonic()
    cluster.kubectl("-n", namespace, "delete", "tuningstudy", name, "--wait=false")

    def leftovers() -> list[str]:
        return [f"{kind}/{o['metadata']['name']}" for kind in ("jobs", "pods", "secrets")
                for o in get(cluster, kind, namespace, f"hwtune.io/study={name}")]

    cluster.wait_for(lambda: not leftovers(), timeout=30,
                     what="no Job, pod or Secret of the deleted study")
    assert time.monotonic() - started < 30
    cluster.wait_for(lambda: cluster.kubectl("-n", namespace, "get", "tuningstudy", name,
                                             check=False).returncode != 0,
                     timeout=30, what="the study object to go (finalizer removed)")


def test_reports_need_the_trials_own_token(
        cluster: LocalCluster, namespace: str, operator: EmbeddedOperator) -> None:
    name = "tokens"
    apply(cluster, study_doc(name, max_trials=2, parallel=2), namespace)
    cluster.wait_for(lambda: len(get(cluster, "secrets", namespace,
                                     f"hwtune.io/study={name},hwtune.io/trial")) >= 2,
                     timeout=90, what="two trials' token Secrets")
    secrets_ = {int(s["metadata"]["labels"]["hwtune.io/trial"]): s
                for s in get(cluster, "secrets", namespace,
                             f"hwtune.io/study={name},hwtune.io/trial")}
    import base64
    token = {t: base64.b64decode(s["data"]["token"]).decode() for t, s in secrets_.items()}
    base = f"{operator.report_url}/studies/{namespace}/{name}"

    def post(trial: int | str, bearer: str | None) -> int:
        body = json.dumps({"protocolVersion": 1, "resource": 1,
                           "metrics": {"val_error": 0.5}}).encode()
        request = urllib.request.Request(f"{base}/v1/trials/{trial}/reports", data=body,
                                         method="POST",
                                         headers={"Content-Type": "application/json"})
        if bearer is not None:
            request.add_header("Authorization", f"Bearer {bearer}")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status
        except urllib.error.HTTPError as exc:
            return exc.code

    assert post(0, None) == 401
    assert post(0, "not-the-token") == 401
    assert post(0, token[1]) == 401  # another trial's token
    assert post(99, token[0]) == 401  # an unknown trial is answered like a wrong token
    assert post(0, token[0]) == 200  # the right one is accepted
    # The token is never in the pod's env nor in any status.
    for job in get(cluster, "jobs", namespace, f"hwtune.io/study={name}"):
        text = json.dumps(job)
        assert token[0] not in text and token[1] not in text
    assert token[0] not in json.dumps(study_status(cluster, name, namespace))


def test_failed_pods_resume_until_the_retry_limit_then_the_trial_fails(
        cluster: LocalCluster, namespace: str) -> None:
    name = "retries"
    configuration = f"retry-{SUFFIX}.hwtune.io"
    settings = operator_settings(cluster, namespace, configuration)
    settings = OperatorSettings(**{**settings.__dict__, "trial_retry_limit": 1})
    driver = TrialDriver(cluster.kubeconfig, namespace)
    driver.fail_plan = {0: 1, 1: 2}  # trial 0 is preempted once, trial 1 twice
    driver.start()
    embedded = EmbeddedOperator(settings)
    try:
        embedded.start(timeout=60)
        apply(cluster, study_doc(name, scheduler="fifo", max_trials=3, parallel=3, max_epoch=3),
              namespace)
        status = wait_completed(cluster, name, namespace, driver, timeout=240)
        trials = {t["spec"]["trialId"]: t["status"]
                  for t in get(cluster, "tuningtrials", namespace, f"hwtune.io/study={name}")}
    finally:
        driver.stop()
        try:
            delete_studies(cluster, namespace)
            embedded.stop(check=False)
        finally:
            delete_configurations(cluster, configuration)
    assert trials[0]["phase"] == "Completed" and trials[0]["resource"] == 3  # resumed, finished
    assert trials[1]["phase"] == "Failed"
    assert "BackoffLimitExceeded" in trials[1]["message"], trials[1]
    # Its two pods failed at once; the Job waited >= 10 s (back-off) between them. Only what
    # the pods ran is charged.
    assert trials[1]["runtimeSeconds"] < 10, trials[1]
    assert trials[2]["phase"] == "Completed"  # the study went on
    assert status["trials"]["failed"] == 1 and status["trials"]["completed"] == 2
    pods = [p for p in driver.played.values() if p.trial == 0]
    assert len(pods) == 2 and len({p.job_uid for p in pods}) == 1  # the same Job, a new pod


def _process(pid_file: Path) -> dict[str, Any]:
    """How a control-plane component was started: argv, env, cwd and log (from /proc)."""
    proc = Path(f"/proc/{int(pid_file.read_text().strip())}")
    return {"pid": int(proc.name),
            "argv": [a for a in (proc / "cmdline").read_bytes().decode().split("\0") if a],
            "env": dict(line.split("=", 1) for line in (proc / "environ").read_bytes().decode()
                        .split("\0") if "=" in line),
            "cwd": os.readlink(proc / "cwd"), "log": os.readlink(proc / "fd" / "1")}


def _relaunch(pid_file: Path, how: dict[str, Any]) -> None:
    with open(how["log"], "ab") as log:
        started = subprocess.Popen(how["argv"], cwd=how["cwd"], env=how["env"],
                                   stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    pid_file.write_text(f"{started.pid}\n")  # so the cluster's down() stops this one


def restart_api_server(cluster: LocalCluster) -> None:
    """Stop the session cluster's kube-apiserver and start it again with the same command line,
    environment and log (etcd keeps the state). Components that exit when they lose their
    leader lease meanwhile are restarted by ``_supervise``, as a kubelet or systemd would."""
    pids = cluster.kubeconfig.parent / "pids"
    apiserver = _process(pids / "kube-apiserver.pid")
    os.kill(apiserver["pid"], signal.SIGTERM)
    # A graceful shutdown waits for open watches; late in a long session that can outlast 30 s,
    # and a relaunch while the old one still holds the port dies at once: kill it, as a crash.
    _wait_gone(apiserver["pid"], 30) or (os.kill(apiserver["pid"], signal.SIGKILL),
                                          _wait_gone(apiserver["pid"], 30))
    _relaunch(pids / "kube-apiserver.pid", apiserver)

    def ready() -> bool:
        pid = int((pids / "kube-apiserver.pid").read_text().strip())
        if not _alive(pid):  # it exited at start-up (the port not yet free): start it again
            _relaunch(pids / "kube-apiserver.pid", apiserver)
            return False
        return cluster.kubectl("get", "--raw", "/readyz", check=False).returncode == 0

    cluster.wait_for(ready, timeout=180, what="the API server to come back", interval=1.0)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"  # a zombie (exited, not yet reaped) is gone too


def _wait_gone(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while _alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True


def _supervise(cluster: LocalCluster, stop: threading.Event) -> None:
    """Restart controller-manager and scheduler whenever they exit (lost lease)."""
    pids = cluster.kubeconfig.parent / "pids"
    known = {c: _process(pids / f"{c}.pid") for c in ("kube-controller-manager", "kube-scheduler")}
    while not stop.wait(0.5):
        for component, how in known.items():
            pid = int((pids / f"{component}.pid").read_text().strip())
            if not Path(f"/proc/{pid}").exists():
                _relaunch(pids / f"{component}.pid", how)


@pytest.mark.disruptive
@pytest.mark.skipif(bool(os.environ.get("HWTUNE_TEST_KUBECONFIG")),
                    reason="restarts the local control plane's API server process")
def test_study_completes_across_an_api_server_restart(
        cluster: LocalCluster, namespace: str, operator: EmbeddedOperator) -> None:
    name = "apiserver"
    driver = TrialDriver(cluster.kubeconfig, namespace, epoch_seconds=0.05).start()
    stop_supervisor = threading.Event()
    supervisor = threading.Thread(target=_supervise, args=(cluster, stop_supervisor), daemon=True)
    supervisor.start()
    try:
        apply(cluster, study_doc(name, max_trials=10, seed=7), namespace)
        cluster.wait_for(lambda: (study_status(cluster, name, namespace).get("trials") or {})
                         .get("total", 0) >= 5, timeout=120, what="five trials")
        restart_api_server(cluster)
        status = wait_completed(cluster, name, namespace, driver)
        events = logged_events(cluster, name, namespace)
    finally:
        driver.stop()
        stop_supervisor.set()
        supervisor.join(timeout=10)
    assert status["trials"]["total"] == 10
    assert not driver.errors, driver.errors
    answered = sorted((p.trial, r, d) for p in driver.played.values() for r, d in p.replies)
    assert answered == sorted((e["trialId"], e["resource"], e["decision"]) for e in events
                              if e["kind"] == "observed")


def start_operator_process(cluster: LocalCluster, namespace: str, configuration: str,
                           report_port: int, log_path: Path, *,
                           lease_seconds: float = 4.0,
                           pod_name: str | None = None,
                           extra_env: dict[str, str] | None = None,
                           extra_args: tuple[str, ...] = ()) -> subprocess.Popen:
    # A short Lease: a restarted operator (a new identity) waits that long for the killed one's.
    command = [sys.executable, "-m", "hwtune.cli.main", "operator", "--kubeconfig",
               str(cluster.kubeconfig), "--namespace", namespace,
               "--webhook-port", str(free_port()), "--webhook-configuration", configuration,
               "--standalone", "--report-port", str(report_port), "--report-listen",
               "127.0.0.1", "--log-format", "json", "--lease-seconds", str(lease_seconds),
               "--metrics-port", "0",  # no fixed port 9090: several operators run at once
               *extra_args]
    log = log_path.open("a")
    # One master key across restarts, as the chart's Secret gives the operator's pods: tokens
    # are derived from it, never read back.
    env = {**cluster.env(), "HWTUNE_OPERATOR_KEY": f"test-operator-key-{SUFFIX}",
           **(extra_env or {})}
    if pod_name is not None:  # a pod's stable identity (the chart's downward API)
        env["HWTUNE_POD_NAME"] = pod_name
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env,
                            cwd=ROOT)


def stop_operator_processes(cluster: LocalCluster, namespace: str,
                            *processes: subprocess.Popen | None) -> None:
    """A test's clean-up: the studies deleted while an operator still runs (their finalizer
    needs one), then every live operator process stopped (SIGTERM, SIGKILL after 30 s)."""
    live = [p for p in processes if p is not None and p.poll() is None]
    if live:
        delete_studies(cluster, namespace)
    for process in live:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def test_operator_killed_mid_study_loses_nothing_and_duplicates_nothing(
        cluster: LocalCluster, namespace: str, tmp_path: Path) -> None:
    name = "sigkill"
    doc = study_doc(name, scheduler="mo-asha-promotion", max_trials=16, parallel=4, seed=5)
    configuration = f"kill-{SUFFIX}.hwtune.io"
    port = free_port()
    log_path = tmp_path / "operator.log"
    driver = TrialDriver(cluster.kubeconfig, namespace, epoch_seconds=0.05).start()
    process = start_operator_process(cluster, namespace, configuration, port, log_path)
    kills = 0
    try:
        apply(cluster, doc, namespace)
        while kills < 4:
            cluster.wait_for(lambda: study_status(cluster, name, namespace).get("trials"),
                             timeout=120, what=f"the operator to run the study (log {log_path})")
            time.sleep(1.0 + kills * 0.7)
            if study_status(cluster, name, namespace).get("phase") == "Completed":
                break
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)
            kills += 1
            time.sleep(0.5)
            process = start_operator_process(cluster, namespace, configuration, port, log_path)
        status = wait_completed(cluster, name, namespace, driver)
        events = logged_events(cluster, name, namespace)
    finally:
        driver.stop()
        stop_operator_processes(cluster, namespace, process)
        delete_configurations(cluster, configuration)
    assert kills >= 2, "the study ended before the operator could be killed twice"
    assert not driver.errors, driver.errors
    Study.rebuild(engine_config(cluster, doc), events, strict=True)
    assert status["trials"]["total"] == 16
    # No duplicate Job: each (trial, launch) ran in exactly one Job.
    jobs_per_launch: dict[tuple[int, int], set[str]] = {}
    for played in driver.played.values():
        jobs_per_launch.setdefault((played.trial, played.launch), set()).add(played.job_uid)
    assert all(len(uids) == 1 for uids in jobs_per_launch.values()), jobs_per_launch
    launches = {(e["trialId"], n) for e in events if e["kind"] in ("created", "resumed")
                for n in [sum(1 for f in events if f["trialId"] == e["trialId"]
                              and f["kind"] in ("created", "resumed") and f["seq"] <= e["seq"])]}
    assert set(jobs_per_launch) <= launches
    # No report lost, no answer contradicted: what trainers were told is what the log holds.
    answered = sorted((p.trial, r, d) for p in driver.played.values() for r, d in p.replies)
    logged = sorted((e["trialId"], e["resource"], e["decision"]) for e in events
                    if e["kind"] == "observed")
    assert answered == logged
    assert any(e["kind"] == "resumed" for e in events), "no paused trial was promoted"


def readyz(base_url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"{base_url}/readyz", timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_a_starting_replica_is_ready_once_every_study_it_serves_has_a_daemon(
        cluster: LocalCluster, namespace: str) -> None:
    """/readyz (the chart's readiness probe) waits for the studies that exist when the operator
    starts, in the namespaces it serves, not being deleted; then stays ready."""
    other = f"{namespace[:50]}-other"
    cluster.kubectl("create", "namespace", other)
    configuration = f"ready-{SUFFIX}.hwtune.io"
    served = ["first", "second"]
    for name in served:
        apply(cluster, study_doc(name, max_trials=2, parallel=1), namespace)
    apply(cluster, study_doc("elsewhere", max_trials=2, parallel=1), other)  # not served here
    # Being deleted (a finalizer of someone else's holds it): never waited for.
    leaving = study_doc("leaving", max_trials=2, parallel=1)
    leaving["metadata"]["finalizers"] = ["example.com/hold"]
    apply(cluster, leaving, namespace)
    cluster.kubectl("-n", namespace, "delete", "tuningstudy", "leaving", "--wait=false")
    embedded = EmbeddedOperator(operator_settings(cluster, namespace, configuration))
    answers: list[tuple[int, dict[str, Any]]] = []
    try:
        embedded.start(timeout=60)
        assert embedded.report_url is not None

        def ready() -> bool:
            answers.append(readyz(embedded.report_url))
            return answers[-1][0] == 200
        cluster.wait_for(ready, timeout=60, what=f"/readyz to answer 200 (last {answers[-1:]})")
        assert answers[-1][1] == {"status": "ready"}
        waited_for = {s for code, a in answers if code == 503 for s in a.get("waitingFor", [])}
        assert waited_for <= {f"{namespace}/{name}" for name in served}, answers
        time.sleep(1.0)
        assert readyz(embedded.report_url)[0] == 200  # stays ready
    finally:
        cluster.kubectl("-n", namespace, "patch", "tuningstudy", "leaving", "--type=merge",
                        "-p", '{"metadata":{"finalizers":null}}', check=False)
        try:
            delete_studies(cluster, namespace)
            embedded.stop(check=False)
        finally:
            delete_configurations(cluster, configuration)
            cluster.kubectl("delete", "namespace", other, "--wait=false", check=False)
