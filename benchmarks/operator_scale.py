"""How the operator scales on a real control plane: launches per second, report-to-decision
latency under many concurrent trials, the largest study, the study object's size, the operator's
memory and its rebuild time after a SIGKILL.

Everything is real except the GPUs and the training: the local control plane of hack/cluster.sh
(etcd, kube-apiserver, controller-manager, scheduler), the operator (`hwtune operator`, a
subprocess), many KWOK GPU nodes (the pool ``--pool`` scaled to ``--nodes`` nodes), and the
simulated trainer (hwtune.testing.simtrainer, in this process) that plays every trial pod's
trainer by replaying benchmarks/tables/digits-quick.jsonl through the operator's report endpoint.

    python benchmarks/operator_scale.py --quick            # CI size, < 60 s on a warm cluster
    python benchmarks/operator_scale.py --goal             # issue 8's latency/launch goal:
                                                           # 1,000 running trials, 500 nodes
    python benchmarks/operator_scale.py --goal --repeat 3  # three runs: medians, runs at goal
    python benchmarks/operator_scale.py                    # 1,000 concurrent trials, 500 nodes
    python benchmarks/operator_scale.py --trials 20000 --parallel 1000 --level-seconds 20
    python benchmarks/operator_scale.py --trainer-only --parallel 1000   # the harness alone
    python benchmarks/operator_scale.py --goal --launch-rate 0          # the operator unpaced
    python benchmarks/operator_scale.py --goal --nice-sim   # kwok (and its autogroup) and the
                                        # simulated trainer's threads at nice 19: they run on
                                        # the GPU nodes on a real cluster; report both numbers

Measured (goals from issue 8 beside them):
- launches/s: Jobs created per second while the study ramps up to ``--parallel`` running
  trials (first seen by a watch), and over the whole run (goal > 20/s);
- report-to-decision p50/p99: the round trip a trainer sees for each report (goal p99 < 200 ms),
  without the reports that waited across the operator restart (those are counted apart);
- peak concurrent trials (pods the simulated trainer was training at once);
- the study object's size (bytes of its JSON as the API server returns it; Katib's Suggestion
  object hit etcd's limit near 14,500 trials) and what the operator keeps beside it;
- the operator's memory (peak and final resident set, from /proc);
- rebuild after a restart: the operator is SIGKILLed once when ``--restart-at`` of the trials
  have launched and restarted at once; the time from its new start to the first report it
  answers is how long trainers were blocked (kopf start-up + rebuilding the study from the
  cluster).

Wall-clock numbers depend on the machine; the header line prints its CPU count. Every run ends
with the CPU each process used (from /proc, sampled every 2 s: the control plane's components,
the operator, the simulated trainer's threads, the benchmark, "other" = the rest of the
machine) and a table per 10 s lining reports (by send time) and launches up with those shares.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import secrets
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from hwtune.api.records import Hardware
from hwtune.bench.table import RUNTIME_METRIC, load_table
from hwtune.optimize.hardware import DEFAULT_CATALOG, HardwareModel
from hwtune.testing.cluster import SIM_OUTCOME, LocalCluster
from hwtune.testing.nodes import load_node_pools, render_nodes, scale_pools
from hwtune.testing.simtrainer import SimTrainer, default_table_path

REPO = Path(__file__).resolve().parents[1]

DEFAULT_OPERATOR_CMD = (
    "hwtune operator --kubeconfig {kubeconfig} --namespace {namespace} --standalone "
    "--webhook-host 127.0.0.1 --webhook-port {webhook_port} --report-port {report_port} "
    "--metrics-port {metrics_port}")

GPUS_PER_TRIAL = 2
GOALS = {"launches_per_second": 20.0, "p99_ms": 200.0, "largest_study": 20000}
AT_LOAD = 0.9  # "under 1,000 concurrent trials": reports while >= 90% of --parallel trained


@dataclass
class ScaleConfig:
    nodes: int = 500  # nodes of --pool (a100: 8 GPUs each)
    pool: str = "a100"
    trials: int = 1000  # the study's maxTrials
    parallel: int = 1000  # maxParallelTrials
    max_level: int = 9  # fidelity max (reductionFactor 3: rungs 1, 3, 9)
    level_seconds: float = 5.0  # mean wall seconds one level takes on the pool
    restart_at: float | None = 0.75  # fraction of trials launched when the operator is killed
    timeout: float = 3600.0
    # Measure this many seconds from the study's start, then stop (the study is deleted with
    # its namespace): a run's last slow trials measure nothing issue 8 asks for.
    window: float | None = None
    seed: int = 0
    workers: int = 64  # simulated trainer threads
    operator_cmd: str = DEFAULT_OPERATOR_CMD
    # Run the simulated trainer's threads and the kwok controller at nice 19: on a real
    # cluster the kubelets and the trainers run on the GPU nodes, not on the control plane's
    # CPUs. Report numbers with and without it.
    nice_sim: bool = False
    launch_rate: float | None = None  # the operator's --launch-rate (None: its default)


# Issue 8's measured goal: report-to-decision latency while 1,000 trials run at once on 500
# simulated GPU nodes, and launches/s. Levels last 120 s on average: with 45 s the first
# trials finished a level (and MO-ASHA stopped most of them) while the Job controller, the
# scheduler and KWOK still queued the pods of later ones, and the study never held more than
# ~700 training. 2,000 trials keep it refilling; the first 420 s are measured (then the rest of
# the study, its slowest configs' last levels, is cut); no restart (that is the rebuild
# measurement, not this one).
GOAL = ScaleConfig(nodes=500, trials=2000, parallel=1000, max_level=3, level_seconds=120.0,
                   restart_at=None, timeout=1500.0, window=420.0, workers=64)

QUICK = ScaleConfig(nodes=8, trials=24, parallel=12, max_level=3, level_seconds=0.5,
                    restart_at=0.5, timeout=50.0, workers=16)


@dataclass
class Result:
    config: dict[str, Any]
    cpus: int
    mode: str = "operator"  # or "trainer-only"
    phase: str = ""
    wall_seconds: float = 0.0
    jobs_created: int = 0
    trials_by_phase: dict[str, int] = field(default_factory=dict)
    launches_per_second_ramp: float | None = None
    launches_per_second_overall: float | None = None
    peak_concurrent: int = 0
    reports: int = 0
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    reports_across_restart: int = 0
    api_write_p50_ms: float | None = None  # _WriteProbe
    api_write_p99_ms: float | None = None
    # Reports answered while at least AT_LOAD of --parallel trials were training.
    at_load_reports: int = 0
    at_load_p50_ms: float | None = None
    at_load_p99_ms: float | None = None
    load_average: list[float] = field(default_factory=list)  # 1-minute, at start and at end
    study_object_bytes: int = 0
    log_objects: int = 0
    log_bytes: int = 0
    operator_peak_rss_mib: float | None = None
    operator_rss_mib: float | None = None
    operator_cpu_seconds: float | None = None  # user + system, whole run (all starts)
    # The operator's own account of a report's time (hwtune.backends.kubernetes.hotstats): its
    # last "hot path (run ...)" line, and the window line taken at peak concurrency.
    operator_hot_path: str = ""
    rebuild_seconds: float | None = None
    trials_at_restart: int | None = None
    # Per-process CPU (seconds, user + system) over the run, from /proc (_CpuSampler): the
    # control plane's components, the operator, the simulated trainer's threads, the rest of
    # this process, and whatever else the machine ran ("other": /proc/stat's busy time less
    # all of these).
    process_cpu_seconds: dict[str, float] = field(default_factory=dict)
    # One row per ``INTERVAL`` seconds: reports sent then and their latency, Jobs first seen,
    # pods training, and each process's CPU share (% of one core), so slow reports can be
    # lined up with what the machine was doing.
    intervals: list[dict[str, Any]] = field(default_factory=list)
    niced: list[str] = field(default_factory=list)  # --nice-sim: what ran at nice 19
    errors: list[str] = field(default_factory=list)


# -- helpers -----------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, int(round(q / 100 * (len(ordered) - 1)))))
    return ordered[index]


_interrupted = threading.Event()  # SIGINT: stop the run, but still measure what ran


def _at_load(times: list[tuple[float, float]], concurrency: list[tuple[float, int]],
             threshold: float) -> list[float]:
    """Latencies of the reports sent while at least ``threshold`` pods were training (the
    sample taken last before the report was sent). Every report of that window counts."""
    import bisect

    if not concurrency:
        return []
    stamps = [t for t, _ in concurrency]
    out = []
    for answered, latency in times:
        i = bisect.bisect_right(stamps, answered - latency) - 1
        if i >= 0 and concurrency[i][1] >= threshold:
            out.append(latency)
    return out


def _proc_mib(pid: int, field_name: str) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _proc_cpu_seconds(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def _last_hot_path(log_file: Path) -> str:
    """The operator's last whole-run hot path line (hwtune.backends.kubernetes.hotstats)."""
    line = ""
    with contextlib.suppress(OSError):
        for text in log_file.read_text(errors="replace").splitlines():
            if "hot path (run" in text:
                line = text[text.index("hot path (run"):]
    return line


def study_manifest(name: str, table, cfg: ScaleConfig) -> dict[str, Any]:
    """A study over the table's space on one pool, held pods for the simulated trainer."""
    return {
        "apiVersion": "hwtune.io/v1alpha1", "kind": "TuningStudy",
        "metadata": {"name": name},
        "spec": {
            "objectives": [{"metric": "val_error", "goal": "minimize"},
                           {"metric": "runtime", "goal": "minimize"},
                           {"metric": "cost", "goal": "minimize"}],
            "parameters": table.space_spec(),
            # 2 GPUs: the table's largest config (92.6 GiB) fits an A100 pair, so no trial
            # fails as out of memory (and waits out its Job's retry backoff).
            "hardware": {"pools": [bench_pool(cfg)], "gpuCounts": [GPUS_PER_TRIAL]},
            "fidelity": {"resource": "epoch", "min": 1, "max": cfg.max_level,
                         "reductionFactor": 3},
            "algorithm": {"scheduler": "mo-asha", "searcher": "random", "seed": cfg.seed},
            "budget": {"maxTrials": cfg.trials, "maxParallelTrials": cfg.parallel},
            "checkpoints": {"uri": "file:///checkpoints"},
            "trialTemplate": {
                "metadata": {"annotations": {SIM_OUTCOME: "hold"}},
                "spec": {"containers": [{"name": "trainer", "image": "bench/trainer:1",
                                         "command": ["python", "train.py"]}]}},
        },
    }


def time_scale_for(table, pool: str, level_seconds: float, max_level: int) -> float:
    """The time scale at which an average level (over the table's configs, levels 1..max)
    takes ``level_seconds`` on a trial's GPUs of ``pool``."""
    runtimes = table.metric_array(RUNTIME_METRIC)[:, :, :max_level]
    reference = float(runtimes.mean())
    seconds = HardwareModel(DEFAULT_CATALOG).runtime(reference, Hardware(pool, GPUS_PER_TRIAL))
    return seconds / level_seconds


class _JobWatch:
    """First-seen time of every Job of the study (a watch, so no launch is missed)."""

    def __init__(self, api_client: Any, namespace: str, study: str) -> None:
        from kubernetes import client

        self._batch = client.BatchV1Api(api_client)
        self._namespace, self._study = namespace, study
        self.seen: dict[str, float] = {}
        self._stop = threading.Event()
        self._response: Any = None
        self._thread = threading.Thread(target=self._run, name="job-watch", daemon=True)

    def start(self) -> "_JobWatch":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        with contextlib.suppress(Exception):
            if self._response is not None:
                self._response.close()
        self._thread.join(5)

    def _run(self) -> None:
        from kubernetes.watch.watch import iter_resp_lines

        selector = f"hwtune.io/study={self._study}"
        version = None
        while not self._stop.is_set():
            try:
                if version is None:
                    listed = json.loads(self._batch.list_namespaced_job(
                        self._namespace, label_selector=selector, _preload_content=False).data)
                    version = listed["metadata"]["resourceVersion"]
                    for job in listed["items"]:
                        self.seen.setdefault(job["metadata"]["uid"], time.monotonic())
                self._response = self._batch.list_namespaced_job(
                    self._namespace, label_selector=selector, watch=True,
                    resource_version=version, timeout_seconds=30, _preload_content=False)
                for line in iter_resp_lines(self._response):
                    if not line.strip():
                        continue
                    event = json.loads(line)
                    obj = event.get("object") or {}
                    if event.get("type") == "ERROR":
                        version = None
                        break
                    version = obj["metadata"].get("resourceVersion", version)
                    if event.get("type") == "ADDED":
                        self.seen.setdefault(obj["metadata"]["uid"], time.monotonic())
            except Exception:  # noqa: BLE001 - reconnect (an API server hiccup)
                if self._stop.is_set():
                    return
                time.sleep(0.5)


class _WriteProbe:
    """Once a second, the round trip of a small ConfigMap patch in the study's namespace: the
    API server's write latency during the run, the floor under a decision that is persisted
    (a log write) before it is answered."""

    def __init__(self, api_client: Any, namespace: str) -> None:
        from kubernetes import client

        self._core = client.CoreV1Api(api_client)
        self._namespace = namespace
        self.seconds: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="write-probe", daemon=True)

    def start(self) -> "_WriteProbe":
        with contextlib.suppress(Exception):
            self._core.create_namespaced_config_map(
                self._namespace, {"metadata": {"name": "write-probe"}, "data": {"n": "0"}},
                _preload_content=False)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        n = 0
        while not self._stop.wait(1.0):
            n += 1
            began = time.monotonic()
            try:
                self._core.patch_namespaced_config_map(
                    "write-probe", self._namespace, {"data": {"n": str(n)}},
                    _preload_content=False, _request_timeout=30)
            except Exception:  # noqa: BLE001 - a failed probe is not a latency
                continue
            self.seconds.append(time.monotonic() - began)


INTERVAL = 10.0  # seconds per row of the interval table
SIM_THREADS = "simtrainer"  # thread name prefix of hwtune.testing.simtrainer's threads


def _stat_cpu(path: str) -> float | None:
    """user + system seconds of a process or thread (``/proc/<pid>[/task/<tid>]/stat``)."""
    try:
        with open(path) as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def _machine_busy_seconds() -> float:
    """CPU seconds the whole machine was busy (``/proc/stat``: all but idle and iowait)."""
    with open("/proc/stat") as fh:
        values = [int(v) for v in fh.readline().split()[1:]]
    busy = sum(values[:8]) - values[3] - values[4]  # user..steal, less idle and iowait
    return busy / os.sysconf("SC_CLK_TCK")


def cluster_pids(cluster: LocalCluster) -> dict[str, int]:
    """The local control plane's processes from kwokctl's pid files (hack/cluster.sh):
    etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok-controller."""
    out: dict[str, int] = {}
    for path in sorted((cluster.cache_dir / "clusters" / cluster.name / "pids").glob("*.pid")):
        with contextlib.suppress(OSError, ValueError):
            out[path.stem] = int(path.read_text().strip())
    return out


class _CpuSampler:
    """Every ``every`` seconds, the CPU seconds used so far by each process of the run (from
    /proc): the cluster's components, the operator (whichever process it is now), this
    process split into the simulated trainer's threads and the rest (the benchmark: watch,
    probe, polling), and the machine's total busy time. With ``nice_sim`` the simulated
    trainer's threads and the kwok controller run at nice 19 (renewed as threads appear)."""

    def __init__(self, cluster: LocalCluster, operator: "_Operator", *, every: float = 2.0,
                 nice_sim: bool = False) -> None:
        self.cluster = cluster
        self.pids = cluster_pids(cluster)
        # A component restarted (kwokctl restarts one that exits, e.g. a controller-manager
        # that lost its leader lease on a slow API server): what the old process used stays.
        self._base: dict[str, float] = {}
        self._last: dict[str, tuple[int, float]] = {}
        self.operator = operator
        self.every = every
        self.nice_sim = nice_sim
        self.niced: set[str] = set()
        self.samples: list[tuple[float, dict[str, float]]] = []
        self._operator_base = 0.0  # CPU of earlier operator processes (a restart)
        self._operator_pid: int | None = None
        self._operator_last = 0.0
        self._thread_cpu: dict[int, float] = {}  # simulated trainer threads: last seen CPU
        self._sim_total = 0.0
        self._reniced: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cpu-sampler", daemon=True)

    def _nice_kwok(self) -> None:
        """kwok at nice 19, and its autogroup too: kwokctl starts every component in a session
        of its own, and with sched_autogroup_enabled a process's nice counts only inside its
        session's autogroup (the CPU is shared between autogroups first)."""
        pid = self.pids.get("kwok-controller")
        if pid is None:
            return
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, pid, 19)
            self.niced.add("kwok-controller")
        with contextlib.suppress(OSError):
            Path(f"/proc/{pid}/autogroup").write_text("19")
            self.niced.add("kwok-controller (autogroup)")

    def start(self) -> "_CpuSampler":
        if self.nice_sim:
            self._nice_kwok()
        self.sample()
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join(5)
        self.sample()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.sample()

    def _sim_seconds(self) -> float:
        """CPU of the simulated trainer's threads; a thread that ended keeps what it used."""
        for thread in threading.enumerate():
            tid = thread.native_id
            if tid is None or not thread.name.startswith(SIM_THREADS):
                continue
            cpu = _stat_cpu(f"/proc/self/task/{tid}/stat")
            if cpu is None:
                continue
            self._sim_total += cpu - self._thread_cpu.get(tid, 0.0)
            self._thread_cpu[tid] = cpu
            if self.nice_sim and tid not in self._reniced:
                with contextlib.suppress(OSError):
                    os.setpriority(os.PRIO_PROCESS, tid, 19)  # one thread (Linux)
                    self._reniced.add(tid)
                    self.niced.add("simulated trainer")
        return self._sim_total

    def sample(self) -> None:
        row: dict[str, float] = {}
        pids = cluster_pids(self.cluster) or self.pids
        if self.nice_sim and pids.get("kwok-controller") != self.pids.get("kwok-controller"):
            self.pids = pids
            self._nice_kwok()
        self.pids = pids
        for name, pid in pids.items():
            cpu = _stat_cpu(f"/proc/{pid}/stat")
            last_pid, last_cpu = self._last.get(name, (pid, 0.0))
            if last_pid != pid:
                self._base[name] = self._base.get(name, 0.0) + last_cpu
                last_cpu = 0.0
            if cpu is not None:
                last_cpu = cpu
            self._last[name] = (pid, last_cpu)
            row[name] = self._base.get(name, 0.0) + last_cpu
        process = self.operator.process
        if process is not None:
            if process.pid != self._operator_pid:
                self._operator_base += self._operator_last
                self._operator_pid, self._operator_last = process.pid, 0.0
            cpu = _stat_cpu(f"/proc/{process.pid}/stat")
            if cpu is not None:
                self._operator_last = cpu
        row["operator"] = self._operator_base + self._operator_last
        sim = self._sim_seconds()
        row["simulated trainer"] = sim
        row["benchmark"] = max(0.0, (_stat_cpu("/proc/self/stat") or 0.0) - sim)
        row["machine"] = _machine_busy_seconds()
        self.samples.append((time.monotonic(), row))

    def totals(self) -> dict[str, float]:
        """CPU seconds per process between the first and the last sample; "other" is the
        machine's busy time less every process named."""
        if len(self.samples) < 2:
            return {}
        (_, first), (_, last) = self.samples[0], self.samples[-1]
        out = {k: last[k] - first.get(k, 0.0) for k in last}
        machine = out.pop("machine", 0.0)
        out["other"] = max(0.0, machine - sum(out.values()))
        out["machine"] = machine
        return out

    def shares(self, start: float, end: float) -> dict[str, float]:
        """% of one core each process used between ``start`` and ``end`` (the samples
        nearest inside), plus "other" and "machine"."""
        inside = [(t, row) for t, row in self.samples if start - self.every / 2 <= t <= end
                  + self.every / 2]
        if len(inside) < 2:
            return {}
        (t0, a), (t1, b) = inside[0], inside[-1]
        if t1 <= t0:
            return {}
        out = {k: 100 * (b[k] - a.get(k, b[k])) / (t1 - t0) for k in b}
        named = sum(v for k, v in out.items() if k != "machine")
        out["other"] = max(0.0, out.get("machine", 0.0) - named)
        return out


def interval_rows(began: float, end: float, times: list[tuple[float, float]],
                  seen: list[float], concurrency: list[tuple[float, int]],
                  sampler: _CpuSampler | None, step: float = INTERVAL) -> list[dict[str, Any]]:
    """One row per ``step`` seconds from ``began``: reports by the time they were sent, their
    p50/p99/max (ms), Jobs first seen, the most pods training, and the CPU shares."""
    rows = []
    t = began
    while t < end:
        lats = sorted(lat for answered, lat in times if t <= answered - lat < t + step)
        row: dict[str, Any] = {
            "t": round(t - began), "reports": len(lats),
            "p50_ms": 1000 * _percentile(lats, 50) if lats else None,
            "p99_ms": 1000 * _percentile(lats, 99) if lats else None,
            "max_ms": 1000 * lats[-1] if lats else None,
            "jobs": sum(1 for s in seen if t <= s < t + step),
            "training": max((n for s, n in concurrency if t <= s < t + step), default=0),
        }
        if sampler is not None:
            row["cpu"] = {k: round(v, 1) for k, v in sampler.shares(t, t + step).items()}
        rows.append(row)
        t += step
    return rows


# Short column names of the interval table, in the order printed.
CPU_COLUMNS = [("kube-apiserver", "apisrv"), ("etcd", "etcd"),
               ("kube-controller-manager", "kcm"), ("kube-scheduler", "sched"),
               ("kwok-controller", "kwok"), ("operator", "oper"), ("simulated trainer", "sim"),
               ("benchmark", "bench"), ("other", "other"), ("machine", "total")]


def format_intervals(rows: list[dict[str, Any]]) -> str:
    def ms(v: float | None) -> str:
        return "-" if v is None else f"{v:.0f}"

    head = (f"  {'t(s)':>5} {'jobs':>5} {'train':>5} {'reps':>5} {'p50':>5} {'p99':>6} "
            f"{'max':>6} | " + " ".join(f"{short:>6}" for _, short in CPU_COLUMNS))
    lines = ["  per 10 s (reports by send time, ms; CPU in % of one core, from /proc):", head]
    for r in rows:
        cpu = r.get("cpu") or {}
        lines.append(
            f"  {r['t']:>5} {r['jobs']:>5} {r['training']:>5} {r['reports']:>5} "
            f"{ms(r['p50_ms']):>5} {ms(r['p99_ms']):>6} {ms(r['max_ms']):>6} | "
            + " ".join(f"{cpu[k]:>6.0f}" if k in cpu else f"{'-':>6}" for k, _ in CPU_COLUMNS))
    return "\n".join(lines)


class _Operator:
    """The operator subprocess: started, SIGKILLed and restarted on the same ports."""

    def __init__(self, cfg: ScaleConfig, cluster: LocalCluster, namespace: str,
                 log_dir: Path) -> None:
        self.report_port, self.webhook_port = _free_port(), _free_port()
        self.command = shlex.split(cfg.operator_cmd.format(
            kubeconfig=cluster.kubeconfig, namespace=namespace, report_port=self.report_port,
            webhook_port=self.webhook_port, metrics_port=_free_port()))
        if cfg.launch_rate is not None:
            self.command += ["--launch-rate", f"{cfg.launch_rate:g}"]
        # One master key across restarts, as the chart's Secret gives it: tokens stay valid.
        self.env = {**cluster.env(), "HWTUNE_OPERATOR_KEY": secrets.token_hex(32)}
        self.log_dir = log_dir
        self.process: subprocess.Popen | None = None
        self.starts = 0
        self.peak_rss_mib = 0.0
        self.cpu_seconds = 0.0  # of the processes that ended
        self._cpu_now = 0.0

    @property
    def report_url(self) -> str:
        return f"http://127.0.0.1:{self.report_port}"

    def start(self) -> float:
        self.cpu_seconds += self._cpu_now
        self._cpu_now = 0.0
        self.starts += 1
        log = open(self.log_dir / f"operator-{self.starts}.log", "wb")
        started = time.monotonic()
        self.process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT,
                                        env=self.env, start_new_session=True)
        log.close()
        return started

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"the operator exited with {self.process.returncode}; see "
                                   f"{self.log_dir}/operator-{self.starts}.log")
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(f"{self.report_url}/healthz", timeout=1) as reply:
                    if reply.status == 200:
                        return
            time.sleep(0.2)
        raise RuntimeError(f"the operator's report endpoint did not answer within {timeout:g}s")

    def sample(self) -> float | None:
        if self.process is None:
            return None
        peak = _proc_mib(self.process.pid, "VmHWM")
        if peak is not None:
            self.peak_rss_mib = max(self.peak_rss_mib, peak)
        cpu = _proc_cpu_seconds(self.process.pid)
        if cpu is not None:
            self._cpu_now = cpu
        return _proc_mib(self.process.pid, "VmRSS")

    @property
    def total_cpu_seconds(self) -> float:
        return self.cpu_seconds + self._cpu_now

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.sample()
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()


# -- the benchmark -----------------------------------------------------------------------------


def bench_pool(cfg: ScaleConfig) -> str:
    """The benchmark's own pool (a copy of ``cfg.pool``), so the cluster's pools stay as
    hack/cluster/nodes.yaml describes them for whatever else runs on it."""
    return f"bench-{cfg.pool}"


def prepare_cluster(cluster: LocalCluster, cfg: ScaleConfig) -> None:
    """CRDs, the example HardwarePools, and the HardwarePool ``bench-<pool>`` (a copy of
    ``cfg.pool``) with ``cfg.nodes`` KWOK nodes of its own."""
    import yaml

    name = bench_pool(cfg)
    cluster.kubectl("apply", "-f", str(REPO / "crds"))
    cluster.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
    cluster.kubectl("apply", "-f", str(REPO / "examples" / "pools.yaml"))
    docs = yaml.safe_load_all((REPO / "examples" / "pools.yaml").read_text())
    base = next((d for d in docs if d and d["metadata"]["name"] == cfg.pool), None)
    if base is None:
        raise ValueError(f"--pool {cfg.pool}: not a HardwarePool of examples/pools.yaml")
    base["metadata"] = {"name": name, "labels": {"hwtune.io/benchmark": "operator-scale"}}
    base["spec"]["nodeSelector"] = {"hwtune.io/pool": name}
    cluster.apply(base)
    pools = [replace(p, name=name, nodes=cfg.nodes) for p in load_node_pools()
             if p.name == cfg.pool]
    nodes = render_nodes(pools)["items"]
    for start in range(0, len(nodes), 100):
        cluster.apply(nodes[start:start + 100])

    def ready() -> bool:
        listed = cluster.get_json("nodes", selector=f"hwtune.io/pool={name}")["items"]
        ok = [n for n in listed if any(c["type"] == "Ready" and c["status"] == "True"
                                       for c in n.get("status", {}).get("conditions") or [])]
        return len(ok) >= cfg.nodes

    cluster.wait_for(ready, 120 + cfg.nodes * 0.5, f"{cfg.nodes} Ready nodes in pool {name}",
                     interval=1.0)


def remove_bench_pool(cluster: LocalCluster, cfg: ScaleConfig) -> None:
    name = bench_pool(cfg)
    cluster.kubectl("delete", "nodes", "-l", f"hwtune.io/pool={name}", "--wait=false",
                    check=False, timeout=120)
    cluster.kubectl("delete", "hardwarepool", name, "--ignore-not-found", check=False)


def run(cfg: ScaleConfig, cluster: LocalCluster, *, log_dir: Path | None = None,
        progress: bool = True, keep_namespace: bool = False, keep_nodes: bool = False) -> Result:
    """One study of ``cfg`` on ``cluster`` (up): prepare, run to the end, measure, clean up."""
    table = load_table(default_table_path())
    if cfg.max_level > table.max_resource:
        raise ValueError(f"--max-level {cfg.max_level}: the table has {table.max_resource} levels")
    result = Result(config=asdict(cfg), cpus=os.cpu_count() or 0,
                    load_average=[os.getloadavg()[0]])
    concurrency: list[tuple[float, int]] = []  # (monotonic time, pods training) once a second
    log_dir = Path(log_dir or tempfile.mkdtemp(prefix="hwtune-opscale-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    prepare_cluster(cluster, cfg)
    namespace = f"opscale-{secrets.token_hex(3)}"
    study = "scale"
    cluster.kubectl("create", "namespace", namespace)
    operator = _Operator(cfg, cluster, namespace, log_dir)
    sim = SimTrainer(table, kubeconfig=cluster.kubeconfig, namespace=namespace,
                     time_scale=time_scale_for(table, cfg.pool, cfg.level_seconds, cfg.max_level),
                     report_url=operator.report_url, checkpoint_root=log_dir / "checkpoints",
                     seed=cfg.seed, workers=cfg.workers)
    watch: _JobWatch | None = None
    probe: _WriteProbe | None = None
    sampler: _CpuSampler | None = None
    began = time.monotonic()
    restart_started: float | None = None
    killed_at: float | None = None
    try:
        operator.start()
        operator.wait_ready(60)
        sim.start()
        sampler = _CpuSampler(cluster, operator, nice_sim=cfg.nice_sim).start()
        watch = _JobWatch(sim._api_client, namespace, study).start()
        probe = _WriteProbe(sim._api_client, namespace).start()
        manifest = study_manifest(study, table, cfg)
        cluster.wait_for(lambda: cluster.apply(manifest, namespace=namespace), 30,
                         "the study to be admitted", interval=0.5)
        last_print = 0.0
        while True:
            now = time.monotonic()
            if _interrupted.is_set():
                result.errors.append(f"interrupted (SIGINT) after {now - began:.0f}s")
                break
            if now - began > cfg.timeout:
                result.errors.append(f"timed out after {cfg.timeout:g}s")
                break
            if cfg.window is not None and now - began > cfg.window:
                break  # the measurement window is over (format_result says so)
            rss = operator.sample()
            if rss is not None:
                result.operator_rss_mib = rss
            training = sim.active()
            concurrency.append((now, training))
            result.peak_concurrent = max(result.peak_concurrent, training)
            status = (cluster.get_json("tuningstudy", study, namespace=namespace)
                      .get("status") or {})
            result.phase = status.get("phase") or ""
            launched = len(watch.seen)
            if (cfg.restart_at is not None and restart_started is None
                    and launched >= cfg.restart_at * cfg.trials):
                killed_at = time.monotonic()
                operator.kill()
                result.trials_at_restart = launched
                restart_started = operator.start()
            if operator.process is not None and operator.process.poll() is not None:
                result.errors.append(f"operator exited with {operator.process.returncode}")
                break
            if progress and now - last_print >= 10:
                last_print = now
                print(f"  {now - began:6.0f}s phase={result.phase or '-'} jobs={launched} "
                      f"training={sim.active()} reports={len(sim.report_times())} "
                      f"rss={rss or 0:.0f}MiB", flush=True)
            if result.phase in ("Completed", "Failed"):
                break
            time.sleep(1.0 if cfg.trials > 100 else 0.3)
        result.wall_seconds = time.monotonic() - began
        ended_at = time.monotonic()
        sampler.stop()
        # -- numbers ----------------------------------------------------------------------
        body = cluster.kubectl("get", "tuningstudy", study, "-n", namespace, "-o", "json").stdout
        result.study_object_bytes = len(body.encode())
        status = json.loads(body).get("status") or {}
        result.trials_by_phase = {k: v for k, v in (status.get("trials") or {}).items() if v}
        logs = cluster.get_json("configmaps", namespace=namespace,
                                selector=f"hwtune.io/study={study}")["items"]
        result.log_objects = len(logs)
        result.log_bytes = sum(len(json.dumps(c).encode()) for c in logs)
        seen = sorted(watch.seen.values())
        result.jobs_created = len(seen)
        ramp = min(len(seen), cfg.parallel)
        if ramp >= 2 and seen[ramp - 1] > seen[0]:
            result.launches_per_second_ramp = (ramp - 1) / (seen[ramp - 1] - seen[0])
        if len(seen) >= 2 and seen[-1] > seen[0]:
            result.launches_per_second_overall = (len(seen) - 1) / (seen[-1] - seen[0])
        times = sim.report_times()
        result.reports = len(times)
        if restart_started is not None:
            after = [answered for answered, _ in times if answered > restart_started]
            if after:
                result.rebuild_seconds = min(after) - restart_started
            window_end = min(after) if after else float("inf")
            steady_times = [(answered, lat) for answered, lat in times
                            if not (answered - lat <= window_end
                                    and answered >= (killed_at or 0))]
            result.reports_across_restart = len(times) - len(steady_times)
        else:
            steady_times = times
        steady = [lat for _, lat in steady_times]
        if steady:
            result.p50_ms = 1000 * statistics.median(steady)
            result.p95_ms = 1000 * _percentile(steady, 95)
            result.p99_ms = 1000 * _percentile(steady, 99)
            result.max_ms = 1000 * max(steady)
        if probe is not None and probe.seconds:
            result.api_write_p50_ms = 1000 * statistics.median(probe.seconds)
            result.api_write_p99_ms = 1000 * _percentile(probe.seconds, 99)
        at_load = _at_load(steady_times, concurrency, AT_LOAD * cfg.parallel)
        result.at_load_reports = len(at_load)
        if at_load:
            result.at_load_p50_ms = 1000 * statistics.median(at_load)
            result.at_load_p99_ms = 1000 * _percentile(at_load, 99)
        result.load_average.append(os.getloadavg()[0])
        operator.sample()
        result.operator_peak_rss_mib = operator.peak_rss_mib or None
        result.operator_cpu_seconds = operator.total_cpu_seconds or None
        result.operator_hot_path = _last_hot_path(log_dir / f"operator-{operator.starts}.log")
        result.process_cpu_seconds = {k: round(v, 1) for k, v in sampler.totals().items()}
        result.intervals = interval_rows(began, ended_at, times, seen, concurrency, sampler)
        result.niced = sorted(sampler.niced)
    finally:
        if sampler is not None:
            sampler.stop()
        if watch is not None:
            watch.stop()
        if probe is not None:
            probe.stop()
        sim.stop()
        operator.stop()
        if keep_namespace:
            print(f"namespace {namespace} and pool {bench_pool(cfg)} kept; logs in {log_dir}")
        else:
            try:
                cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
                if not keep_nodes:
                    remove_bench_pool(cluster, cfg)
            except Exception as exc:  # noqa: BLE001 - a slow clean-up must not lose the numbers
                print(f"clean-up incomplete ({exc}); the numbers below are complete",
                      flush=True)
    return result


class _ContinueSink:
    """A report sink for the trainer-only run: continue every level, stop at the maximum."""

    def __init__(self, max_level: int) -> None:
        self.max_level = max_level
        self.tokens: dict[str, str] = {}
        self.last: dict[str, int] = {}
        self._lock = threading.Lock()

    def expected_token(self, trial: str) -> str | None:
        return self.tokens.get(trial)

    def submit_report(self, trial: str, payload: Any) -> Any:
        from hwtune.api.records import Decision
        from hwtune.report.protocol import ReportReply

        with self._lock:
            self.last[trial] = payload.resource
        if payload.resource >= self.max_level:
            return ReportReply(Decision.STOP, "complete")
        return ReportReply(Decision.CONTINUE, "")


def trial_pod_manifest(study: str, trial: int, params: dict[str, Any], pool: str,
                       max_level: int) -> tuple[dict[str, Any], dict[str, Any], str]:
    """(Secret, Pod, token) of one trial as the operator/trainer contract describes them."""
    from hwtune.report.server import new_token
    from hwtune.trainer.env import TrialEnv

    token = new_token()
    secret = f"{study}-{trial}-token"
    env = TrialEnv(trial_id=str(trial), study=study, params=params,
                   hardware=Hardware(pool, GPUS_PER_TRIAL),
                   max_resource=max_level, report_url="http://operator.invalid:8080").to_env()
    env["HWTUNE_REPORT_TOKEN_FILE"] = "/var/run/hwtune/token/token"
    labels = {"hwtune.io/study": study, "hwtune.io/trial": str(trial), "hwtune.io/pool": pool}
    pod = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": f"{study}-{trial}", "labels": labels,
                     "annotations": {SIM_OUTCOME: "hold"}},
        "spec": {
            "restartPolicy": "Never",
            "nodeSelector": {"hwtune.io/pool": pool},
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists",
                             "effect": "NoSchedule"}],
            "containers": [{
                "name": "trainer", "image": "bench/trainer:1",
                "env": [{"name": k, "value": v} for k, v in sorted(env.items())],
                "resources": {"limits": {"nvidia.com/gpu": str(GPUS_PER_TRIAL)}},
                "volumeMounts": [{"name": "token", "mountPath": "/var/run/hwtune/token"}]}],
            "volumes": [{"name": "token", "secret": {"secretName": secret}}],
        },
    }
    secret_body = {"apiVersion": "v1", "kind": "Secret",
                   "metadata": {"name": secret, "labels": labels}, "stringData": {"token": token}}
    return secret_body, pod, token


def run_trainer_only(cfg: ScaleConfig, cluster: LocalCluster, *, log_dir: Path | None = None,
                     progress: bool = True) -> Result:
    """Without the operator: ``cfg.parallel`` trial pods made at once and the simulated trainer
    against an in-process endpoint that always continues. Shows what the harness itself
    sustains (its own report latency, pods it trains at once), so operator numbers are not
    limited by the simulated trainer."""
    from concurrent.futures import ThreadPoolExecutor

    from kubernetes import client

    from hwtune.report.server import ReportServer

    table = load_table(default_table_path())
    result = Result(config=asdict(cfg), cpus=os.cpu_count() or 0, mode="trainer-only")
    log_dir = Path(log_dir or tempfile.mkdtemp(prefix="hwtune-simload-"))
    prepare_cluster(cluster, cfg)
    namespace = f"simload-{secrets.token_hex(3)}"
    cluster.kubectl("create", "namespace", namespace)
    cluster.wait_for(lambda: cluster.kubectl("-n", namespace, "get", "serviceaccount",
                                             "default", check=False).returncode == 0,
                     30, "the default service account")
    sink = _ContinueSink(cfg.max_level)
    began = time.monotonic()
    try:
        with ReportServer(sink) as server:
            sim = SimTrainer(table, kubeconfig=cluster.kubeconfig, namespace=namespace,
                             time_scale=time_scale_for(table, cfg.pool, cfg.level_seconds,
                                                       cfg.max_level),
                             report_url=server.url, checkpoint_root=log_dir / "checkpoints",
                             seed=cfg.seed, workers=cfg.workers)
            sim.start()
            core = client.CoreV1Api(sim._api_client)
            configs = table.configs()
            created: list[float] = []

            def make(i: int) -> None:
                secret, pod, token = trial_pod_manifest("load", i, configs[i % len(configs)],
                                                        bench_pool(cfg), cfg.max_level)
                sink.tokens[str(i)] = token
                core.create_namespaced_secret(namespace, secret, _preload_content=False)
                core.create_namespaced_pod(namespace, pod, _preload_content=False)
                created.append(time.monotonic())

            with ThreadPoolExecutor(8) as pool:
                list(pool.map(make, range(cfg.parallel)))
            result.jobs_created = len(created)
            if len(created) >= 2:
                result.launches_per_second_ramp = (len(created) - 1) / (max(created) - min(created))
            last_print = 0.0
            while time.monotonic() - began < cfg.timeout:
                runs = sim.runs()
                result.peak_concurrent = max(result.peak_concurrent, sim.active())
                done = sum(1 for r in runs if r.ended)
                if progress and time.monotonic() - last_print >= 10:
                    last_print = time.monotonic()
                    print(f"  {last_print - began:6.0f}s pods={len(created)} seen={len(runs)} "
                          f"training={sim.active()} ended={done} "
                          f"reports={len(sim.report_times())}", flush=True)
                if done >= cfg.parallel:
                    result.phase = "Completed"
                    break
                time.sleep(0.5)
            else:
                result.errors.append(f"timed out after {cfg.timeout:g}s")
            sim.stop()
            result.trials_by_phase = {}
            for r in sim.runs():
                result.trials_by_phase[r.outcome or "running"] = (
                    result.trials_by_phase.get(r.outcome or "running", 0) + 1)
            latencies = [lat for _, lat in sim.report_times()]
            result.reports = len(latencies)
            if latencies:
                result.p50_ms = 1000 * statistics.median(latencies)
                result.p99_ms = 1000 * _percentile(latencies, 99)
                result.max_ms = 1000 * max(latencies)
    finally:
        result.wall_seconds = time.monotonic() - began
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
        remove_bench_pool(cluster, cfg)
    return result


def format_result(r: Result) -> str:
    def num(value: float | None, fmt: str = "{:.1f}") -> str:
        return "n/a" if value is None else fmt.format(value)

    cfg = r.config
    cpu_share = (100 * r.operator_cpu_seconds / r.wall_seconds
                 if r.operator_cpu_seconds and r.wall_seconds else None)
    if r.mode == "trainer-only":
        lines = [
            f"simulated trainer alone (no operator): {cfg['parallel']} trial pods at once, "
            f"{cfg['nodes']} KWOK {cfg['pool']} nodes, {cfg['max_level']} levels of ~"
            f"{cfg['level_seconds']}s; {r.cpus} CPUs; {r.wall_seconds:.0f}s",
            f"  {'pods created per second':<40} {num(r.launches_per_second_ramp):>12}",
            f"  {'peak pods trained at once':<40} {r.peak_concurrent:>12}",
            f"  {'reports':<40} {r.reports:>12}",
            f"  {'report round trip p50 (ms)':<40} {num(r.p50_ms):>12}",
            f"  {'report round trip p99 (ms)':<40} {num(r.p99_ms):>12}",
            f"  {'report round trip max (ms)':<40} {num(r.max_ms):>12}",
            f"  pods by outcome: {r.trials_by_phase}",
        ]
        lines += [f"  error: {e}" for e in r.errors]
        return "\n".join(lines)
    lines = [
        f"operator scale: {cfg['trials']} trials, <= {cfg['parallel']} parallel, "
        f"{cfg['nodes']} KWOK {cfg['pool']} nodes, {cfg['max_level']} levels of ~"
        f"{cfg['level_seconds']}s; {r.cpus} CPUs, load average "
        f"{'/'.join(f'{x:.1f}' for x in r.load_average) or 'n/a'} (start/end); phase "
        f"{r.phase or 'none'} after {r.wall_seconds:.0f}s"
        + (f" (measured for a window of {cfg['window']:g}s)" if cfg.get("window") else "")
        + f"; operator --launch-rate "
          f"{'default' if cfg.get('launch_rate') is None else format(cfg['launch_rate'], 'g')}"
        + ("; simulated trainer and kwok at nice 19" if cfg.get("nice_sim") else ""),
        f"  {'measure':<40} {'value':>12}   goal (issue 8)",
        f"  {'launches/s (ramp to parallel)':<40} {num(r.launches_per_second_ramp):>12}   > 20",
        f"  {'launches/s (whole run)':<40} {num(r.launches_per_second_overall):>12}   > 20",
        f"  {'Jobs created':<40} {r.jobs_created:>12}",
        f"  {'peak concurrent trials':<40} {r.peak_concurrent:>12}   1,000",
        f"  {'reports':<40} {r.reports:>12}",
        f"  {'report-to-decision p50 (ms)':<40} {num(r.p50_ms):>12}   well below 200",
        f"  {'report-to-decision p95 (ms)':<40} {num(r.p95_ms):>12}",
        f"  {'report-to-decision p99 (ms)':<40} {num(r.p99_ms):>12}   < 200",
        f"  {f'reports at load (>= {AT_LOAD:.0%} of parallel)':<40} {r.at_load_reports:>12}",
        f"  {'  their p50 (ms)':<40} {num(r.at_load_p50_ms):>12}   well below 200",
        f"  {'  their p99 (ms)':<40} {num(r.at_load_p99_ms):>12}   < 200",
        f"  {'report-to-decision max (ms)':<40} {num(r.max_ms):>12}",
        f"  {'API server write p50 / p99 (ms)':<40} "
        f"{f'{num(r.api_write_p50_ms)} / {num(r.api_write_p99_ms)}':>12}"
        f"   (a ConfigMap patch once a second: the floor under a persisted decision)",
        f"  {'reports waiting across the restart':<40} {r.reports_across_restart:>12}",
        f"  {'study object (bytes of JSON)':<40} {r.study_object_bytes:>12}   < 100 KiB",
        f"  {'other study objects (count / bytes)':<40} "
        f"{f'{r.log_objects} / {r.log_bytes}':>12}",
        f"  {'operator peak RSS (MiB)':<40} {num(r.operator_peak_rss_mib):>12}",
        f"  {'operator CPU (s, user+sys) / % of wall':<40} "
        f"{f'{num(r.operator_cpu_seconds)} / {num(cpu_share)}':>12}",
        f"  {'restart -> first answer (s)':<40} {num(r.rebuild_seconds, '{:.2f}'):>12}"
        f"   (at {r.trials_at_restart} trials launched)",
        f"  trials by phase: {r.trials_by_phase}",
    ]
    if r.operator_hot_path:
        lines.append(f"  operator's {r.operator_hot_path} (ms)")
    if r.process_cpu_seconds:
        wall = r.wall_seconds or 1.0
        lines.append("  CPU by process over the run (s, user+sys / % of one core"
                     + (f"; at nice 19: {', '.join(r.niced)}" if r.niced else "") + "):")
        lines += [f"    {name:<38} {sec:>8.1f} / {100 * sec / wall:5.1f}"
                  for name, sec in sorted(r.process_cpu_seconds.items(),
                                          key=lambda kv: (kv[0] == "machine", -kv[1]))]
    if r.intervals:
        lines.append(format_intervals(r.intervals))
    lines += [f"  error: {e}" for e in r.errors]
    return "\n".join(lines)


def _wait_namespaces_gone(cluster: LocalCluster, timeout: float = 900.0) -> None:
    """Until the runs' namespaces are deleted: the next run must not share the API server with
    the deletion of the last one's thousands of objects."""
    def left() -> list[str]:
        return [n["metadata"]["name"] for n in cluster.get_json("namespaces")["items"]
                if n["metadata"]["name"].startswith("opscale-")]

    # A run measured for a window stops its operator with the study still running: the study's
    # finalizer has nobody to remove it, so its namespace would never go.
    for namespace in left():
        for study in cluster.get_json("tuningstudies", namespace=namespace)["items"]:
            cluster.kubectl("-n", namespace, "patch", "tuningstudy", study["metadata"]["name"],
                            "--type=merge", "-p", '{"metadata":{"finalizers":null}}', check=False)
    started = time.monotonic()
    cluster.wait_for(lambda: not left(), timeout, "the last run's namespace to be deleted",
                     interval=2.0)
    print(f"(the last run's namespace deleted in {time.monotonic() - started:.0f}s)", flush=True)


# (label, Result field, goal, reached) for --repeat's summary.
SUMMARY = (
    ("launches/s while ramping", "launches_per_second_ramp", "> 20",
     lambda v: v > GOALS["launches_per_second"]),
    ("report-to-decision p99, whole window (ms)", "p99_ms", "< 200",
     lambda v: v < GOALS["p99_ms"]),
    (f"report p99 at >= {AT_LOAD:.0%} of parallel (ms)", "at_load_p99_ms", "< 200",
     lambda v: v < GOALS["p99_ms"]),
    ("report-to-decision p50 (ms)", "p50_ms", "", None),
    ("API server write p99 (ms)", "api_write_p99_ms", "", None),
    ("peak concurrent trials", "peak_concurrent", "1,000", lambda v: v >= 1000),
)


def format_summary(results: list[Result]) -> str:
    """Each goal's value per run, the median, and how many runs reached it."""
    lines = [f"operator scale, {len(results)} runs of the same study on the same cluster:",
             f"  {'measure':<44} {'runs':<30} {'median':>8} {'goal':>6} {'reached':>8}"]
    for label, name, goal, reached in SUMMARY:
        values = [getattr(r, name) for r in results if getattr(r, name) is not None]
        if not values:
            continue
        runs = " ".join(f"{v:.1f}" if isinstance(v, float) else str(v) for v in values)
        count = f"{sum(1 for v in values if reached(v))}/{len(values)}" if reached else ""
        lines.append(f"  {label:<44} {runs:<30} {statistics.median(values):>8.1f} {goal:>6} "
                     f"{count:>8}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="CI size (< 60 s)")
    size.add_argument("--goal", action="store_true",
                      help="issue 8's latency goal: 1,000 trials running at once on 500 nodes, "
                           "2,000 trials, no restart")
    parser.add_argument("--nodes", type=int)
    parser.add_argument("--pool")
    parser.add_argument("--trials", type=int)
    parser.add_argument("--parallel", type=int)
    parser.add_argument("--max-level", type=int)
    parser.add_argument("--level-seconds", type=float)
    parser.add_argument("--restart-at", type=float,
                        help="fraction of trials launched when the operator is SIGKILLed "
                             "(negative: never)")
    parser.add_argument("--timeout", type=float)
    parser.add_argument("--window", type=float,
                        help="measure this many seconds, then stop (negative: to the end)")
    parser.add_argument("--workers", type=int)
    parser.add_argument("--launch-rate", type=float,
                        help="the operator's --launch-rate (launches/s, 0: unpaced) "
                             "[default: the operator's default]")
    parser.add_argument("--nice-sim", action="store_true",
                        help="run the simulated trainer's threads and the kwok controller at "
                             "nice 19 (on a real cluster they run on the GPU nodes)")
    parser.add_argument("--operator-cmd", help="command line template of the operator "
                        f"[default: {DEFAULT_OPERATOR_CMD}]")
    parser.add_argument("--cluster-name", default="opscale",
                        help="local cluster to start or reuse [default: opscale]")
    parser.add_argument("--keep-cluster", action="store_true")
    parser.add_argument("--trainer-only", action="store_true",
                        help="no operator: --parallel trial pods against an endpoint that "
                             "always continues (what the simulated trainer itself sustains)")
    parser.add_argument("--keep-namespace", action="store_true",
                        help="leave the study's namespace for a look afterwards")
    parser.add_argument("--keep-nodes", action="store_true",
                        help="leave the pool's KWOK nodes for the next run (with --keep-cluster)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="run the study this many times on the same cluster and nodes, "
                             "then print each goal's median and how many runs reached it")
    parser.add_argument("--json", type=Path, help="also write the result here (a list with "
                        "--repeat)")
    parser.add_argument("--log-dir", type=Path, help="operator logs and checkpoints")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat: must be >= 1")
    if args.repeat > 1 and args.trainer_only:
        parser.error("--repeat: not with --trainer-only")
    # The SDK's retry warnings during the operator restart are expected; the result counts them.
    logging.getLogger("hwtune.trainer").setLevel(logging.ERROR)
    cfg = QUICK if args.quick else GOAL if args.goal else ScaleConfig()
    overrides = {k: getattr(args, k) for k in ("nodes", "pool", "trials", "parallel",
                                               "max_level", "level_seconds", "restart_at",
                                               "timeout", "window", "workers",
                                               "operator_cmd", "launch_rate")
                 if getattr(args, k) is not None}
    if overrides.get("restart_at") is not None and overrides["restart_at"] < 0:
        overrides["restart_at"] = None
    if overrides.get("window") is not None and overrides["window"] < 0:
        overrides["window"] = None
    if args.nice_sim:
        overrides["nice_sim"] = True
    cfg = replace(cfg, **overrides)
    for name in ("nodes", "trials", "parallel", "max_level", "workers"):
        if getattr(cfg, name) < 1:
            parser.error(f"--{name.replace('_', '-')}: must be >= 1")
    if not cfg.level_seconds > 0:
        parser.error("--level-seconds: must be > 0")
    signal.signal(signal.SIGINT, lambda *_: _interrupted.set())
    cluster = LocalCluster.from_env(args.cluster_name)
    started_here = not cluster.attached and not (cluster.kubeconfig.is_file() and cluster.is_up())
    cluster.up()
    results: list[Result] = []
    try:
        if args.trainer_only:
            results.append(run_trainer_only(cfg, cluster, log_dir=args.log_dir))
        else:
            for i in range(args.repeat):
                log_dir = args.log_dir / f"run-{i + 1}" if args.log_dir and args.repeat > 1 \
                    else args.log_dir
                # The nodes stay for the next run (making 500 KWOK nodes takes a while).
                results.append(run(cfg, cluster, log_dir=log_dir,
                                   keep_namespace=args.keep_namespace,
                                   keep_nodes=args.keep_nodes or i < args.repeat - 1))
                if args.repeat > 1:
                    print(f"run {i + 1} of {args.repeat}:\n{format_result(results[-1])}",
                          flush=True)
                if _interrupted.is_set():
                    break
                if i < args.repeat - 1:
                    _wait_namespaces_gone(cluster)
    finally:
        if started_here and not args.keep_cluster:
            cluster.down()
    print(format_result(results[0]) if len(results) == 1 else format_summary(results))
    if args.json:
        payload = asdict(results[0]) if args.repeat == 1 else [asdict(r) for r in results]
        args.json.write_text(json.dumps(payload, indent=1))
    ended = all(r.phase == "Completed" or (cfg.window is not None and r.phase == "Running")
                for r in results)
    return 0 if not any(r.errors for r in results) and ended else 1


if __name__ == "__main__":
    sys.exit(main())
