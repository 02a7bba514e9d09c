"""Two operator replicas against one study: only the holder of the study's writer Lease acts
(launches Jobs, writes the log, decides reports); the other stands by and forwards the reports
that reach it to the holder (at the address in the Lease), so no report is refused while both
run. The active one is SIGKILLed: the standby takes the Lease over once it expires, and the
study completes with exactly one Job per (trial, launch) and every answer in the log once.

Both replicas run ``--standalone`` (no kopf peering), so nothing but the Lease keeps them apart.
Trainers reach the replicas through a small HTTP front (as a Service would): each report goes
to a random live replica, and a 503 (none acts for the study yet) is tried on the other one.
"""

from __future__ import annotations

import http.server
import json
import random
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from hwtune.backends.kubernetes.api import LOG_WRITER
from hwtune.backends.kubernetes.lease import lease_name
from hwtune.report.forward import FORWARDED_HEADER
from hwtune.testing.cluster import LocalCluster
from tests.cluster.test_operator_chaos import JobWatch, assert_study_held, study_progress
from tests.cluster.test_operator_studies import (
    SUFFIX,
    apply,
    cluster,  # noqa: F401 - the module fixture (CRDs and pools applied)
    delete_configurations,
    free_port,
    get,
    logged_events,
    start_operator_process,
    stop_operator_processes,
    study_doc,
)
from tests.cluster.trial_driver import TrialDriver

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

# Long enough that a loaded machine never lets the active replica's Lease lapse by accident.
LEASE_SECONDS = 10.0


class Front:
    """An HTTP front over the replicas' report endpoints; counts who answered 200.
    ``each_for_itself``: its requests carry the forwarded mark, so a replica that does not act
    for the study answers 503 instead of forwarding (a 200 then says who decided)."""

    def __init__(self, ports: dict[str, int], *, each_for_itself: bool = False) -> None:
        self.ports = ports
        marks = {FORWARDED_HEADER: "test-front"} if each_for_itself else {}
        self.answered: Counter[str] = Counter()  # replica -> 200 answers
        self.refused: Counter[str] = Counter()  # replica -> 503 answers
        self.first: dict[str, float] = {}  # replica -> monotonic time of its first 200
        front = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                status, payload = 503, b'{"error": "no replica answered"}'
                for replica in random.sample(list(front.ports), len(front.ports)):
                    request = urllib.request.Request(
                        f"http://127.0.0.1:{front.ports[replica]}{self.path}", data=body,
                        method="POST", headers={**{k: v for k, v in self.headers.items()
                                                   if k in ("Content-Type", "Authorization")},
                                                **marks})
                    try:
                        with urllib.request.urlopen(request, timeout=30) as response:
                            status, payload = response.status, response.read()
                    except urllib.error.HTTPError as exc:
                        status, payload = exc.code, exc.read()
                    except OSError:
                        continue  # this replica is down
                    if status == 503:
                        front.refused[replica] += 1
                        continue
                    if status == 200:
                        front.answered[replica] += 1
                        front.first.setdefault(replica, time.monotonic())
                    break
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def read_lease(cluster: LocalCluster, namespace: str, study: str) -> dict[str, Any]:
    result = cluster.kubectl("-n", namespace, "get", "lease", lease_name(study), "-o", "json",
                             check=False)
    return json.loads(result.stdout) if result.returncode == 0 else {}


def lease_holder(cluster: LocalCluster, namespace: str, study: str) -> str:
    return (read_lease(cluster, namespace, study).get("spec") or {}).get("holderIdentity") or ""


def run_to_completion(cluster: LocalCluster, custom: Any, namespace: str, name: str,
                      driver: TrialDriver, logs: Path, *, timeout: float
                      ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Wait for the study to complete: its status and its logged events."""
    deadline = time.monotonic() + timeout
    while study_progress(custom, namespace, name).get("phase") != "Completed":
        assert time.monotonic() < deadline, \
            f"the study did not complete (logs {logs}, driver errors {driver.errors[-3:]})"
        time.sleep(0.5)
    status = study_progress(custom, namespace, name)
    events = logged_events(cluster, name, namespace)
    time.sleep(1.0)  # let the watch see the last Jobs
    return status, events


def test_two_replicas_never_act_at_once_and_the_standby_takes_over(
        cluster: LocalCluster, namespace: str, tmp_path: Path) -> None:  # noqa: F811
    from kubernetes import client, config

    configuration = client.Configuration()
    config.load_kube_config(config_file=str(cluster.kubeconfig), client_configuration=configuration)
    custom = client.CustomObjectsApi(client.ApiClient(configuration))
    name, trials, parallel = "replicas", 40, 8
    doc = study_doc(name, scheduler="mo-asha-promotion", max_trials=trials, parallel=parallel,
                    seed=11)
    op_configuration = f"replicas-{SUFFIX}.hwtune.io"
    ports = {"a": free_port(), "b": free_port()}
    front = Front(ports)
    jobs = JobWatch(cluster.kubeconfig, namespace).start()
    driver = TrialDriver(cluster.kubeconfig, namespace, workers=parallel, epoch_seconds=0.05,
                         report_url=f"http://127.0.0.1:{front.port}/studies/{namespace}/{name}")
    driver.start()
    # Both replicas are up before the study exists: either may take it. Both register their
    # own webhook URL under one configuration (the last one wins); when that is the killed
    # one's, Fail would refuse the clean-up's finalizer removal until kopf re-registers.
    processes = {r: start_operator_process(cluster, namespace, op_configuration, ports[r],
                                           tmp_path / f"{r}.log", lease_seconds=LEASE_SECONDS,
                                           extra_args=("--webhook-failure-policy=Ignore",))
                 for r in ports}
    try:
        for replica, port in ports.items():
            cluster.wait_for(lambda port=port: listening(port), timeout=120,
                             what=f"replica {replica}'s report endpoint")
        apply(cluster, doc, namespace)

        def holder() -> str | None:
            identity = lease_holder(cluster, namespace, name)
            return next((r for r, p in processes.items() if f"-{p.pid}-" in identity), None)

        active = cluster.wait_for(holder, timeout=90, what="a replica to hold the Lease")
        standby = next(r for r in ports if r != active)
        # Both run; the active one acts alone, the standby forwards to it (no 503).
        cluster.wait_for(lambda: (study_progress(custom, namespace, name).get("trials") or {})
                         .get("total", 0) >= 10 and front.answered[standby] > 0,
                         timeout=180, what=f"10 trials with the standby forwarding (answers "
                                           f"{dict(front.answered)}, 503s {dict(front.refused)}, "
                                           f"Lease {lease_holder(cluster, namespace, name)})")
        assert holder() == active
        assert front.answered[active] > 0, (front.answered, front.refused)
        assert sum(front.refused.values()) == 0, front.refused  # not one 503 while both run
        assert driver.retries.causes["HTTP 503"] == 0, driver.retries.causes
        writers = {(c["metadata"].get("annotations") or {}).get(LOG_WRITER)
                   for c in get(cluster, "configmaps", namespace,
                                f"hwtune.io/study={name},hwtune.io/log=true")}
        assert len(writers) == 1 and f"-{processes[active].pid}-" in writers.pop()
        before_kill = dict(front.answered)
        processes[active].send_signal(signal.SIGKILL)
        processes[active].wait(timeout=10)
        killed = time.monotonic()
        cluster.wait_for(lambda: holder() == standby, timeout=60,
                         what="the standby to take the Lease over")
        takeover = time.monotonic() - killed
        status, events = run_to_completion(cluster, custom, namespace, name, driver, tmp_path,
                                           timeout=240)
    finally:
        driver.stop()
        jobs.stop()
        stop_operator_processes(cluster, namespace, *processes.values())
        front.close()
        delete_configurations(cluster, op_configuration)
    print(f"replicas: {standby} took over {takeover:.1f}s after {active} was killed; answers "
          f"{dict(front.answered)} (before the kill: {before_kill}), 503s {dict(front.refused)}")
    assert takeover <= LEASE_SECONDS + 15
    assert front.answered[standby] > before_kill[standby]  # it decides after the takeover
    assert not driver.errors, driver.errors
    assert sorted(e["trialId"] for e in events if e["kind"] == "created") == list(range(trials))
    assert_study_held(cluster, doc, events, status, driver, jobs, trials=trials, parallel=parallel)


def test_a_former_holder_that_missed_its_loss_cannot_write_the_log(
        cluster: LocalCluster, namespace: str) -> None:  # noqa: F811
    """The fence itself, without timing luck: replica a holds the Lease and writes; b takes the
    Lease over after a stopped renewing and stamps the log; a, still believing it holds the
    Lease (as a paused process would), is refused by resourceVersion (409), and a chunk that b
    created is not a's to write either."""
    import asyncio

    from kubernetes import client

    from hwtune.backends.kubernetes.api import KubeApi
    from hwtune.backends.kubernetes.lease import LeaseLost, LeaseOverdue, StudyLease
    from hwtune.backends.kubernetes.log import LogFenced
    from hwtune.controller.operator import load_client_configuration

    name = "fenced"
    apply(cluster, study_doc(name), namespace)  # the owner of the Lease and the log
    uid = get(cluster, "tuningstudies", namespace)[0]["metadata"]["uid"]

    async def scenario() -> list[tuple[int, dict[str, str]]]:
        api = KubeApi(client.ApiClient(load_client_configuration(cluster.kubeconfig)))
        try:
            lease_a = StudyLease(api, namespace, name, uid, identity="replica-a", duration_s=2,
                                 renew_s=0.4)
            lease_b = StudyLease(api, namespace, name, uid, identity="replica-b", duration_s=2,
                                 renew_s=0.4)
            store_a, store_b = (api.log_store(namespace, name, uid) for _ in range(2))
            store_a.fence, store_b.fence = lease_a, lease_b
            assert await lease_a.try_acquire()
            assert not await lease_b.try_acquire()  # a live holder
            await store_a.write_chunk(0, {"e000000000": "a0"}, new=True)
            await store_a.write_chunk(0, {"e000000001": "a1"}, new=False)
            await asyncio.sleep(2.2)  # a stops renewing; its Lease expires
            assert not lease_a.held() and lease_a.overdue()
            with pytest.raises(LeaseOverdue):  # deferred before any request: not held
                await store_a.write_chunk(0, {"e000000002": "a2"}, new=False)
            lease_a._renewed = time.monotonic()  # a believes it still holds it (a pause)
            await lease_b.acquire()
            await store_b.read_chunks()
            await store_b.stamp(0)
            with pytest.raises(LogFenced):  # the chunk's version moved on: 409
                await store_a.write_chunk(0, {"e000000002": "a2"}, new=False)
            await store_b.write_chunk(0, {"e000000002": "b2"}, new=False)
            await store_b.write_chunk(1, {"e000000003": "b3"}, new=True)
            with pytest.raises(LogFenced):  # b created chunk 1: a may not add to it
                await store_a.write_chunk(1, {"e000000003": "a3"}, new=True)
            with pytest.raises(LeaseLost):
                await lease_a.renew()
            await lease_b.renew()  # b keeps it
            return await store_b.read_chunks()
        finally:
            api.close()

    chunks = asyncio.run(scenario())
    data = {k: v for _, d in chunks for k, v in d.items()}
    assert data == {"e000000000": "a0", "e000000001": "a1", "e000000002": "b2",
                    "e000000003": "b3"}


def test_a_restarted_pod_takes_its_own_lease_at_once_and_its_zombie_is_fenced(
        cluster: LocalCluster, namespace: str) -> None:  # noqa: F811
    """Identity reuse at the Lease level, without timing luck: a new incarnation of pod op-0
    takes the Lease while the old one's is still live (a different replica may not), the old
    incarnation (a zombie that still believes it holds the Lease) is refused by the log and
    loses the Lease at its next renewal, and it never takes it back at once (no ping-pong)."""
    import asyncio

    from kubernetes import client

    from hwtune.backends.kubernetes.api import KubeApi
    from hwtune.backends.kubernetes.lease import LeaseLost, StudyLease
    from hwtune.backends.kubernetes.log import LogFenced
    from hwtune.controller.operator import load_client_configuration

    name = "reuse"
    apply(cluster, study_doc(name), namespace)
    uid = get(cluster, "tuningstudies", namespace)[0]["metadata"]["uid"]

    async def scenario() -> list[tuple[int, dict[str, str]]]:
        api = KubeApi(client.ApiClient(load_client_configuration(cluster.kubeconfig)))

        def lease(identity: str) -> StudyLease:
            return StudyLease(api, namespace, name, uid, identity=identity, duration_s=30,
                              renew_s=6)

        try:
            old, other = lease("op-0"), lease("op-1")
            store_old = api.log_store(namespace, name, uid)
            store_old.fence = old
            assert await old.try_acquire()
            await store_old.write_chunk(0, {"e000000000": "old0"}, new=True)
            assert not await other.try_acquire()  # another replica waits for expiry
            new = lease("op-0")  # the same pod, restarted: a new incarnation
            started = time.monotonic()
            assert await new.try_acquire()
            assert time.monotonic() - started < 5  # at once, not after 30 s
            assert new.incarnation == old.incarnation + 1 and new.writer != old.writer
            store_new = api.log_store(namespace, name, uid)
            store_new.fence = new
            await store_new.read_chunks()
            await store_new.stamp(0)
            assert old.held()  # the zombie believes it still holds the Lease ...
            with pytest.raises(LogFenced):  # ... but its next log write is refused (409)
                await store_old.write_chunk(0, {"e000000001": "old1"}, new=False)
            await store_new.write_chunk(0, {"e000000001": "new1"}, new=False)
            with pytest.raises(LeaseLost, match="newer incarnation"):
                await old.renew()
            assert not await lease("op-0").try_acquire()  # the zombie does not take it back
            assert not await other.try_acquire()
            await new.renew()
            await new.release()  # a clean stop: another replica need not wait
            assert await other.try_acquire() and other.incarnation == new.incarnation + 1
            return await store_new.read_chunks()
        finally:
            api.close()

    chunks = asyncio.run(scenario())
    assert {k: v for _, d in chunks for k, v in d.items()} == {"e000000000": "old0",
                                                                "e000000001": "new1"}
    lease_doc = read_lease(cluster, namespace, name)
    assert lease_doc["spec"]["holderIdentity"] == "op-1"
    assert lease_doc["spec"]["leaseTransitions"] == 2


RESTART_LEASE_SECONDS = 30.0  # long, so a takeover that waited for expiry cannot pass


def test_a_restarted_operator_decides_at_once_and_its_zombie_cannot_act(
        cluster: LocalCluster, namespace: str, tmp_path: Path) -> None:  # noqa: F811
    """The operator of pod op-0 (HWTUNE_POD_NAME, as the chart sets it) with a 30 s Lease:
    (1) a second process of the same pod starts while the first still runs (a zombie): it
    takes the study over at once, the zombie stops answering; (2) the zombie is SIGKILLed, later
    the active one too, and op-0 restarts: its first decision comes well within the Lease
    time, and the Lease was taken before the killed process's Lease expired. The study
    completes with one Job per (trial, launch) and every answer in the log once."""
    from kubernetes import client, config

    configuration = client.Configuration()
    config.load_kube_config(config_file=str(cluster.kubeconfig), client_configuration=configuration)
    custom = client.CustomObjectsApi(client.ApiClient(configuration))
    # Enough trials that a fast operator cannot finish the study before both phases are over.
    name, trials, parallel = "restart", 240, 8
    doc = study_doc(name, scheduler="mo-asha-promotion", max_trials=trials, parallel=parallel,
                    seed=13)
    op_configuration = f"restart-{SUFFIX}.hwtune.io"
    ports = {"a": free_port(), "b": free_port(), "c": free_port()}
    front = Front(ports, each_for_itself=True)  # a zombie's answers would be forwarded ones
    jobs = JobWatch(cluster.kubeconfig, namespace).start()
    # Slower epochs than the other tests: the study must still run after the zombie phase.
    driver = TrialDriver(cluster.kubeconfig, namespace, workers=parallel, epoch_seconds=0.2,
                         report_url=f"http://127.0.0.1:{front.port}/studies/{namespace}/{name}")
    driver.start()
    processes: dict[str, subprocess.Popen] = {}

    def start(replica: str) -> float:
        processes[replica] = start_operator_process(
            cluster, namespace, op_configuration, ports[replica], tmp_path / f"{replica}.log",
            lease_seconds=RESTART_LEASE_SECONDS, pod_name="op-0")
        return time.monotonic()

    def total() -> int:
        return (study_progress(custom, namespace, name).get("trials") or {}).get("total", 0)

    def instance() -> str:
        return (read_lease(cluster, namespace, name).get("metadata", {}).get("annotations")
                or {}).get("hwtune.io/holder-instance", "")

    timings: dict[str, float] = {}
    try:
        start("a")
        cluster.wait_for(lambda: listening(ports["a"]), timeout=120, what="a's endpoint")
        apply(cluster, doc, namespace)
        cluster.wait_for(lambda: total() >= 8 and front.answered["a"] > 0, timeout=180,
                         what=f"a to run 8 trials (log {tmp_path / 'a.log'})")
        first_instance = instance()
        # (1) A second incarnation of op-0 while a still runs: a is now a zombie.
        started = start("b")
        cluster.wait_for(lambda: "b" in front.first, timeout=60,
                         what=f"b to answer (answers {dict(front.answered)}, "
                              f"503s {dict(front.refused)})")
        timings["zombie takeover: b's first answer"] = front.first["b"] - started
        assert instance() != first_instance
        assert lease_holder(cluster, namespace, name) == "op-0"
        # a notices at its next renewal (every 6 s) and then answers nothing (not even 200s
        # from its memo of older answers: its runner is gone); give it two renewals.
        time.sleep(2 * RESTART_LEASE_SECONDS / 5 + 1)
        a_answers, b_answers = front.answered["a"], front.answered["b"]
        cluster.wait_for(lambda: front.answered["b"] >= b_answers + 10, timeout=60,
                         what="b to answer 10 more reports")
        assert front.answered["a"] == a_answers, "the zombie kept answering"
        processes["a"].send_signal(signal.SIGKILL)
        processes["a"].wait(timeout=10)
        # (2) The active incarnation dies; op-0 restarts.
        lease_before = read_lease(cluster, namespace, name)["spec"]
        processes["b"].send_signal(signal.SIGKILL)
        processes["b"].wait(timeout=10)
        killed = time.time()
        started = start("c")
        assert total() < trials - parallel, "too late: the study is nearly done"
        cluster.wait_for(lambda: "c" in front.first, timeout=120,
                         what=f"c to answer (log {tmp_path / 'c.log'})")
        timings["restart: c's first answer"] = front.first["c"] - started
        lease_after = read_lease(cluster, namespace, name)["spec"]
        status, events = run_to_completion(cluster, custom, namespace, name, driver, tmp_path,
                                           timeout=600)
    finally:
        driver.stop()
        jobs.stop()
        stop_operator_processes(cluster, namespace, *processes.values())
        front.close()
        delete_configurations(cluster, op_configuration)
    from hwtune.backends.kubernetes.lease import _parse

    old_renew, new_acquire = _parse(lease_before["renewTime"]), _parse(lease_after["acquireTime"])
    print(f"restart ({RESTART_LEASE_SECONDS:g} s Lease): "
          + ", ".join(f"{k} {v:.1f}s after its start" for k, v in timings.items())
          + f"; the Lease was taken {new_acquire - old_renew:.1f}s after the killed process's "
          f"last renewal ({new_acquire - killed:.1f}s after the kill); answers "
          f"{dict(front.answered)}, 503s {dict(front.refused)}")
    # Taken before the killed incarnation's Lease would have expired: no waiting for it (the
    # precise check; the process's own start-up, ~2-12 s on a loaded machine, is on top).
    assert new_acquire - old_renew < RESTART_LEASE_SECONDS - 5
    # Waiting for expiry would put the first answer >= 24 s after c's start.
    assert timings["restart: c's first answer"] < 20
    assert lease_after["leaseTransitions"] >= lease_before["leaseTransitions"] + 1
    assert not driver.errors, driver.errors
    assert sorted(e["trialId"] for e in events if e["kind"] == "created") == list(range(trials))
    assert_study_held(cluster, doc, events, status, driver, jobs, trials=trials, parallel=parallel)
