"""Reports reach the operator through the chart's Service, and the Service path refuses a wrong,
missing or other trial's token just as the direct path does.

There is no kube-proxy on the local control plane, and no test may send traffic anywhere but
127.0.0.1, so the API server's service proxy (it dials the endpoint's pod IP, and endpoint
addresses may not be loopback) is out. What runs instead:

- the real chart, installed with the real helm (one replica; its pod is a KWOK pod with a
  simulated pod IP) gives the real Service and, from the real EndpointSlice controller, the
  EndpointSlice: the Service's named ``targetPort: reports`` resolved against the pod's
  container ports;
- the real operator runs here with the report flags the chart's Deployment passes
  (``--report-port``, ``--report-url``), standing in for that pod;
- ``ServiceForwarder`` does kube-proxy's part in userspace: per connection it resolves the
  Service port to a ready endpoint of the EndpointSlice, as kube-proxy does, and splices the
  bytes to that endpoint's port on 127.0.0.1 (the one substitution: the pod's IP is this
  machine's loopback, where the process standing in for the pod listens);
- the trainer SDK's client posts to the URL the operator wrote into the trial's Job
  (``HWTUNE_REPORT_URL``), with the host part (cluster DNS + ClusterIP) pointed at the forwarder.

What this proves: the URL in the Jobs names the chart's Service and a port it declares; that
port's targetPort resolves (through the EndpointSlice) to the port the operator serves reports
on; through that path a missing, wrong or another trial's token is refused (401) and the trial's
own token is accepted. What it cannot prove: kube-proxy's iptables/IPVS rules, cluster DNS, and
pod networking (NetworkPolicies) of a real cluster.
"""

from __future__ import annotations

import base64
import json
import random
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from hwtune.backends.kubernetes.lease import ADDRESS_ANNOTATION
from hwtune.testing.cluster import LocalCluster
from hwtune.trainer.client import ReportClient, ReportError
from tests.chart.test_chart import CHART, helm
from tests.cluster.test_operator_chaos import JobWatch, assert_study_held
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
    study_status,
)
from tests.cluster.trial_driver import TrialDriver
from tests.sockets import splice

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


class ServiceForwarder:
    """kube-proxy's job for one Service port, in userspace, on 127.0.0.1 only."""

    def __init__(self, cluster: LocalCluster, namespace: str, service: str, port: int,
                 local_ports: dict[str, int] | None = None) -> None:
        self.cluster, self.namespace, self.service, self.port = cluster, namespace, service, port
        # pod IP -> the local port of the process standing in for that pod (several pods
        # cannot share one port on 127.0.0.1); default: the endpoint's own port
        self.local_ports = local_ports or {}
        self.routed: list[tuple[str, int]] = []  # (endpoint IP, endpoint port) per connection
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.address = self._listener.getsockname()
        threading.Thread(target=self._accept, daemon=True).start()

    def endpoints(self) -> list[tuple[str, int]]:
        """Ready (IP, port) of the Service port, from the EndpointSlices, by port name."""
        svc = self.cluster.get_json("service", self.service, namespace=self.namespace)
        declared = next(p for p in svc["spec"]["ports"] if p["port"] == self.port)
        found = []
        for piece in get(self.cluster, "endpointslices", self.namespace,
                         f"kubernetes.io/service-name={self.service}"):
            ports = [p["port"] for p in piece.get("ports") or []
                     if p.get("name") == declared.get("name")]
            for endpoint in piece.get("endpoints") or []:
                if (endpoint.get("conditions") or {}).get("ready") and ports:
                    found += [(endpoint["addresses"][0], ports[0])]
        return found

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        ready = self.endpoints()
        if not ready:  # no ready endpoint: kube-proxy rejects the connection
            client.close()
            return
        ip, port = random.choice(ready)
        self.routed.append((ip, port))
        try:  # the pod's IP, here
            upstream = socket.create_connection(("127.0.0.1", self.local_ports.get(ip, port)))
        except OSError:  # the pod's process is down: the connection fails, as to a dead pod
            client.close()
            return
        for a, b in ((client, upstream), (upstream, client)):
            threading.Thread(target=splice, args=(a, b), daemon=True).start()

    def close(self) -> None:
        self._listener.close()


def test_reports_through_the_charts_service_need_the_trials_own_token(
        cluster: LocalCluster, namespace: str, tmp_path: Path) -> None:  # noqa: F811
    env = cluster.env()
    release = f"svc-{SUFFIX}"[:20]
    report_port = free_port()  # the chart's reportPort: the Service port and the pod's port
    helm("install", release, str(CHART), "--namespace", namespace, "--wait", "--timeout", "90s",
         "--set", "operator.replicas=1", "--set", f"operator.reportPort={report_port}",
         env=env)
    configuration = f"svc-{SUFFIX}.hwtune.io"
    process = None
    forwarder = None
    try:
        deployment = cluster.get_json("deployment", f"{release}-operator", namespace=namespace)
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        flags = dict(a.split("=", 1) for a in container["args"] if a.startswith("--report"))
        service = f"{release}-operator"
        assert flags["--report-url"] == f"http://{service}.{namespace}.svc:{report_port}"
        # The operator, standing in for the chart's pod, with the pod's report flags.
        process = start_operator_process(
            cluster, namespace, configuration, int(flags["--report-port"]),
            tmp_path / "operator.log",
            extra_args=(f"--report-url={flags['--report-url']}",))
        name = "svc-tokens"
        apply(cluster, study_doc(name, max_trials=2, parallel=2), namespace)
        cluster.wait_for(lambda: len(get(cluster, "jobs", namespace,
                                         f"hwtune.io/study={name}")) >= 2,
                         timeout=120, what=f"two Jobs (log {tmp_path / 'operator.log'})")
        job_env = {e["name"]: e.get("value") for e in get(
            cluster, "jobs", namespace, f"hwtune.io/study={name},hwtune.io/trial=0")[0][
                "spec"]["template"]["spec"]["containers"][0]["env"]}
        url = urlsplit(job_env["HWTUNE_REPORT_URL"])
        assert url.hostname == f"{service}.{namespace}.svc" and url.port == report_port
        forwarder = ServiceForwarder(cluster, namespace, service, url.port)
        pod = next(p for p in get(cluster, "pods", namespace,
                                  "app.kubernetes.io/component=operator"))
        # The Service's endpoint is the chart's pod, on the port the operator listens on.
        assert cluster.wait_for(forwarder.endpoints, timeout=60,
                                what="the Service's ready endpoint") == [
            (pod["status"]["podIP"], report_port)]
        tokens = {int(s["metadata"]["labels"]["hwtune.io/trial"]):
                  base64.b64decode(s["data"]["token"]).decode()
                  for s in get(cluster, "secrets", namespace,
                               f"hwtune.io/study={name},hwtune.io/trial")}
        base = f"http://{forwarder.address[0]}:{forwarder.address[1]}{url.path}"

        def status(trial: int, token: str | None) -> int:
            client = ReportClient(base, str(trial), token, retry_seconds=20)
            try:
                client.report(1, {"val_error": 0.5})
                return 200
            except ReportError as exc:
                return exc.status
            finally:
                client.close()

        assert status(0, None) == 401
        assert status(0, "not-the-token") == 401
        assert status(0, tokens[1]) == 401  # another trial's token
        assert status(0, tokens[0]) == 200  # the trial's own token, through the Service
        assert len(forwarder.routed) >= 4  # every report went through the Service path
    finally:
        if forwarder is not None:
            forwarder.close()
        stop_operator_processes(cluster, namespace, process)
        delete_configurations(cluster, configuration)
        helm("uninstall", release, "--namespace", namespace, "--wait", env=env)
    print(f"service path: {json.dumps(forwarder.routed[:1] if forwarder else [])}")


def forward_counts(port: int) -> dict[str, float]:
    """hwtune_report_forwards_total by outcome, scraped from an operator's /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    counts: dict[str, float] = {}
    for line in text.splitlines():
        match = re.match(r'hwtune_report_forwards_total\{outcome="(\w+)"\} (\S+)', line)
        if match:
            counts[match.group(1)] = float(match.group(2))
    return counts


def test_two_chart_replicas_behind_the_service_run_a_study(
        cluster: LocalCluster, namespace: str, tmp_path: Path) -> None:  # noqa: F811
    """The chart's two replicas (two KWOK pods; two operator processes here, each named as its
    pod, as HWTUNE_POD_NAME gives them) behind its Service: every trainer connection lands on a
    random ready endpoint and is kept alive, as through kube-proxy, so about half of them reach
    the replica that does not hold the study. That replica forwards each report to the holder,
    at the address the holder publishes in its Lease, and passes its answer back: no trainer
    sees a single 503 during the whole study, and the study completes with no trainer error,
    one Job per launch, every answer in the log once. Then a second study, whose holder is
    SIGKILLed mid-study: the other replica takes the Lease over and the study completes, the
    same way."""
    env = cluster.env()
    release = f"two-{SUFFIX}"[:20]
    report_port = free_port()
    helm("install", release, str(CHART), "--namespace", namespace, "--wait", "--timeout", "90s",
         "--set", f"operator.reportPort={report_port}", env=env)  # the default: two replicas
    configuration = f"two-{SUFFIX}.hwtune.io"
    service = f"{release}-operator"
    processes: dict[str, subprocess.Popen] = {}  # pod name -> the process standing in for it
    forwarder = None
    watches: list[JobWatch] = []
    drivers: list[TrialDriver] = []
    runs: dict[str, dict] = {}
    try:
        pods = [p for p in get(cluster, "pods", namespace, "app.kubernetes.io/component=operator")]
        assert len(pods) == 2
        local = {p["status"]["podIP"]: free_port() for p in pods}
        metrics_ports = {p["metadata"]["name"]: free_port() for p in pods}
        for pod in pods:
            processes[pod["metadata"]["name"]] = start_operator_process(
                cluster, namespace, configuration, local[pod["status"]["podIP"]],
                tmp_path / f"{pod['metadata']['name']}.log", lease_seconds=10,
                pod_name=pod["metadata"]["name"],
                # one replica is killed: its webhook URL may be the one registered, which must
                # not hold up the clean-up's study deletion
                extra_args=(f"--report-url=http://{service}.{namespace}.svc:{report_port}",
                            "--webhook-failure-policy=Ignore",
                            f"--metrics-port={metrics_ports[pod['metadata']['name']]}"))
        forwarder = ServiceForwarder(cluster, namespace, service, report_port, local)
        assert sorted(cluster.wait_for(forwarder.endpoints, timeout=60,
                                       what="the Service's endpoints")) == sorted(
            (ip, report_port) for ip in local)
        for name, seed, kill in (("two-replicas", 17, False), ("holder-killed", 19, True)):
            run = runs[name] = {"doc": study_doc(name, scheduler="mo-asha-promotion",
                                                 max_trials=24, parallel=6, seed=seed),
                                "holders": set(), "addresses": set(), "killed": None}
            jobs = JobWatch(cluster.kubeconfig, namespace, study=name).start()
            watches.append(jobs)
            apply(cluster, run["doc"], namespace)
            # Trainers start once both replicas run the study (holder or standby): a replica
            # still starting up has no daemon for it yet and answers 503, as it should (the
            # trainer retries); this test is about the steady state.
            cluster.wait_for(lambda: all(
                f"{namespace}/{name} loaded:" in text
                or f"{namespace}/{name}: another replica holds the Lease" in text
                for text in (p.read_text(errors="replace") for p in tmp_path.glob("*.log"))),
                timeout=60, what=f"both replicas to run study {name}")
            driver = TrialDriver(cluster.kubeconfig, namespace, workers=6, epoch_seconds=0.05,
                                 report_url=f"http://127.0.0.1:{forwarder.address[1]}"
                                            f"/studies/{namespace}/{name}").start()
            drivers.append(driver)
            deadline = time.monotonic() + 300
            # read while it runs: a finished study's Lease is released
            while study_status(cluster, name, namespace).get("phase") != "Completed":
                assert time.monotonic() < deadline, \
                    f"study {name} did not complete (logs {tmp_path}, errors {driver.errors[-3:]})"
                assert not driver.errors, driver.errors
                try:
                    lease = cluster.get_json("lease", f"{name}-writer", namespace=namespace)
                except Exception:  # noqa: BLE001 - not created yet
                    lease = {}
                holder = (lease.get("spec") or {}).get("holderIdentity")
                if holder:
                    run["holders"].add(holder)
                    run["addresses"].add(lease["metadata"]["annotations"].get(
                        ADDRESS_ANNOTATION))
                total = (study_status(cluster, name, namespace).get("trials") or {}).get(
                    "total", 0)
                if kill and run["killed"] is None and holder and total >= 8:
                    processes[holder].send_signal(signal.SIGKILL)
                    processes[holder].wait(timeout=10)
                    run["killed"] = holder
                time.sleep(0.5)
            if not kill:  # both replicas alive: what each forwarded, from its /metrics
                run["forwards"] = {pod: forward_counts(port)
                                   for pod, port in metrics_ports.items()}
            run["status"] = study_status(cluster, name, namespace)
            run["events"] = logged_events(cluster, name, namespace)
            time.sleep(1.0)  # let the watch see the last Jobs
            driver.stop()
            jobs.stop()
            run["driver"], run["jobs"] = driver, jobs
    finally:
        for driver in drivers:
            driver.stop()
        for jobs in watches:
            jobs.stop()
        if forwarder is not None:
            forwarder.close()
        stop_operator_processes(cluster, namespace, *processes.values())
        delete_configurations(cluster, configuration)
        helm("uninstall", release, "--namespace", namespace, "--wait", env=env)
    routed = Counter(ip for ip, _ in forwarder.routed)
    whole, killed = runs["two-replicas"], runs["holder-killed"]
    print(f"two replicas: connections per pod {dict(routed)}; whole study: Lease holders "
          f"{whole['holders']} at {whole['addresses']}, trainers' retried attempts "
          f"{dict(whole['driver'].retries.causes)}; holder {killed['killed']} killed: holders "
          f"{killed['holders']}, retried attempts {dict(killed['driver'].retries.causes)}")
    assert set(routed) == set(local)  # both pods got trainer connections
    # the holder published where it listens (here its stand-in's port on 127.0.0.1)
    assert whole["addresses"] and whole["addresses"] <= {f"127.0.0.1:{p}" for p in local.values()}
    retried = whole["driver"].retries.causes
    assert retried.get("HTTP 503", 0) == 0, retried  # the standby forwarded every report
    # ... and counted them: the standby's hwtune_report_forwards_total, none failed
    forwards = whole["forwards"]
    standby = set(processes) - whole["holders"]
    assert sum(forwards[p].get("answered", 0) for p in standby) >= 1, forwards
    assert all(f.get("failed", 0) == 0 for f in forwards.values()), forwards
    assert all(forwards[p].get("answered", 0) == 0 for p in whole["holders"]), forwards
    assert killed["killed"] is not None and len(killed["holders"]) == 2  # the other took over
    for run in (whole, killed):
        driver, events = run["driver"], run["events"]
        assert run["holders"] and run["holders"] <= set(processes)
        assert not driver.errors, driver.errors
        assert_study_held(cluster, run["doc"], events, run["status"], driver, run["jobs"],
                          trials=24, parallel=6)
