"""The operator at large study sizes (issue 8, "Measured": the largest study run, goal 20,000
trials, with the study object's size, the operator's memory and the time to rebuild after a
restart at that size).

Two ways to get there, both on the local control plane (hack/cluster.sh) with the real operator
(`hwtune operator`, a subprocess) killed with SIGKILL:

``run`` (default): a whole study on KWOK GPU nodes, every trial pod played by the simulated
trainer (hwtune.testing.simtrainer) on a fast scaled clock, trials of few epochs. The operator is
SIGKILLed once when ``--restart-at`` of the trials have launched (late, so the rebuild is at
nearly the full size) and restarted at once. This is benchmarks/operator_scale.py's harness
(helper P owns its latency mode) with a large-study configuration and this file's report.

``seeded``: the rebuild at a size the machine cannot run in time. A study of ``--trials``
trials is run by the real engine on the simulated backend (the same table, spec and scheduler
as ``run``; each trial replays the table's nearest config), and what the operator would have
written is put into the cluster by the operator's own code: the event log as ConfigMaps
``<study>-log-<n>`` (``StudyLog``: the same records, chunks and group commit), one TuningTrial
per trial with its status (``trial_status_of``). Then the operator starts on it, cold, as after
a SIGKILL, with ``maxTrials`` a little higher so that it has something to decide: the time to
its first decision (the first Job of a new trial) is the rebuild.

Printed, each beside its goal: trials, wall time, the TuningStudy's size (bytes of its JSON from
the API server, goal < 100 KiB), the log (chunks, bytes), the operator's peak RSS (VmHWM from
/proc), the rebuild (start -> study loaded -> first decision, and the operator's own split:
read, parse, engine replay, cluster state).

    python benchmarks/operator_large.py --quick                 # CI size, < 2 min
    python benchmarks/operator_large.py --trials 2000           # a whole study with a kill
    python benchmarks/operator_large.py --seeded --trials 20000 # rebuild at 20,000 trials
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import secrets
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script: `benchmarks` is a package of the checkout
    sys.path.insert(0, str(REPO))

from benchmarks import operator_scale as scale  # noqa: E402
from hwtune.bench.table import load_table  # noqa: E402
from hwtune.testing.cluster import LocalCluster  # noqa: E402
from hwtune.testing.simtrainer import default_table_path  # noqa: E402

GOALS = {"trials": 20000, "study_object_bytes": 100 * 1024}
STUDY = "large"
LOADED = re.compile(r"loaded: (\d+) events, (\d+) trials, (\d+) log chunks \((\d+) bytes\); "
                    r"seconds: read ([\d.]+), parse ([\d.]+), rebuild ([\d.]+), "
                    r"cluster state ([\d.]+), total ([\d.]+)")

# A large study of short trials: rungs 1 and 3, 2 GPUs a trial, 4 trials on a node.
RUN = replace(scale.ScaleConfig(), nodes=50, trials=2000, parallel=100, max_level=3,
              level_seconds=0.5, restart_at=0.95, timeout=3 * 3600.0, workers=32)
QUICK = replace(RUN, nodes=6, trials=40, parallel=12, max_level=3, level_seconds=0.3,
                restart_at=0.8, timeout=240.0, workers=12)


@dataclass
class LargeResult:
    mode: str  # "run" or "seeded"
    config: dict[str, Any]
    cpus: int
    trials: int = 0
    phase: str = ""
    wall_seconds: float = 0.0
    seed_seconds: float | None = None  # seeded: making the study and writing it to the cluster
    study_object_bytes: int = 0
    status_trials: int = 0  # status.trials.total as the operator wrote it
    front_size: int | None = None
    front_listed: int | None = None
    log_chunks: int = 0
    log_bytes: int = 0
    tuningtrial_bytes: int = 0  # all TuningTrials' JSON together
    operator_peak_rss_mib: float | None = None
    loaded_seconds: float | None = None  # operator start -> its "study loaded" line
    first_decision_seconds: float | None = None  # operator start -> first Job / answered report
    lease_wait_seconds: float | None = None  # of that: standing by for the killed one's Lease
    load_split: dict[str, float] = field(default_factory=dict)  # the operator's own timings
    replay_differences: int = 0  # the operator's "replay differences" (0: decided the same)
    loads: int = 0  # times the operator loaded the study (1 unless its runner restarted)
    # The study Lease went overdue (a renewal too late) / came back without a reload / was lost
    lease_overdue: list[int] = field(default_factory=lambda: [0, 0, 0])
    # What the study leaves in the cluster (etcd) at its end: kind -> [objects, bytes of JSON]
    # (Jobs, pods, Secrets, TuningTrials, log ConfigMaps, Events of the namespace).
    left_in_cluster: dict[str, list[int]] = field(default_factory=dict)
    jobs_created: int = 0
    trials_per_second: float | None = None  # trials finished per second of the whole run
    load_average: list[float] = field(default_factory=list)  # 1-minute, at start and end
    trials_at_restart: int | None = None
    errors: list[str] = field(default_factory=list)


def _log_counts(path: Path) -> tuple[int, int]:
    """(loads, replay differences) in an operator log."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return 0, 0
    found = re.search(r"(\d+) replay differences", text)
    return len(LOADED.findall(text)), int(found.group(1)) if found else 0


def _lease_counts(*paths: Path) -> list[int]:
    """[overdue, renewed again, lost] study-Lease lines over the operator logs."""
    counts = [0, 0, 0]
    for path in paths:
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        counts[0] += text.count("was not renewed within")
        counts[1] += text.count("renewed again after")
        counts[2] += sum(1 for line in text.splitlines() if re.search(
            r"LeaseLost|the Lease \S+ (?:is now held|changed under)", line))
    return counts


def _loaded_line(path: Path) -> dict[str, float] | None:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return None
    found = LOADED.search(text)
    if found is None:
        return None
    names = ("events", "trials", "chunks", "bytes", "read", "parse", "rebuild", "cluster",
             "total")
    return {k: float(v) for k, v in zip(names, found.groups())}


def _measure_objects(cluster: LocalCluster, namespace: str, result: LargeResult,
                     study: str = STUDY) -> None:
    body = cluster.kubectl("get", "tuningstudy", study, "-n", namespace, "-o", "json").stdout
    result.study_object_bytes = len(body.encode())
    status = json.loads(body).get("status") or {}
    result.phase = status.get("phase") or ""
    result.status_trials = (status.get("trials") or {}).get("total", 0)
    result.front_size = status.get("frontSize")
    result.front_listed = len(status.get("paretoFront") or [])
    logs = cluster.get_json("configmaps", namespace=namespace,
                            selector=f"hwtune.io/study={study},hwtune.io/log=true")["items"]
    result.log_chunks = len(logs)
    result.log_bytes = sum(len(json.dumps(c).encode()) for c in logs)
    trials = cluster.kubectl("get", "tuningtrials", "-n", namespace, "-l",
                             f"hwtune.io/study={study}", "-o", "json", timeout=600).stdout
    result.tuningtrial_bytes = len(trials.encode())
    result.left_in_cluster = {"tuningtrials": [len(json.loads(trials)["items"]),
                                               result.tuningtrial_bytes],
                              "log configmaps": [result.log_chunks, result.log_bytes]}
    del trials
    for kind, selector in (("jobs", f"hwtune.io/study={study}"),
                           ("pods", f"hwtune.io/study={study}"),
                           ("secrets", f"hwtune.io/study={study}"), ("events", None)):
        items = cluster.get_json(kind, namespace=namespace, selector=selector)["items"]
        result.left_in_cluster[kind] = [len(items),
                                        sum(len(json.dumps(i).encode()) for i in items)]


# -- run: a whole study with a SIGKILL late in it ----------------------------------------------


# The seeded run polls the operator's log for its "loaded" line this often: that time is known
# to this resolution (the first decision's, from a Job watch, is not polled).
POLL_S = 0.05


def run_study(cfg: scale.ScaleConfig, cluster: LocalCluster, *, log_dir: Path | None = None,
              progress: bool = True) -> LargeResult:
    log_dir = Path(log_dir or tempfile.mkdtemp(prefix="hwtune-oplarge-"))
    inner = scale.run(cfg, cluster, log_dir=log_dir, progress=progress, keep_namespace=True)
    result = LargeResult(mode="run", config=asdict(cfg), cpus=os.cpu_count() or 0,
                         trials=inner.trials_by_phase.get("total", 0),
                         phase=inner.phase, wall_seconds=inner.wall_seconds,
                         study_object_bytes=inner.study_object_bytes,
                         operator_peak_rss_mib=inner.operator_peak_rss_mib,
                         first_decision_seconds=inner.rebuild_seconds, errors=list(inner.errors),
                         jobs_created=inner.jobs_created, load_average=list(inner.load_average),
                         trials_at_restart=inner.trials_at_restart)
    if inner.wall_seconds and result.trials:
        result.trials_per_second = result.trials / inner.wall_seconds
    namespace = _kept_namespace(cluster)
    try:
        if namespace:
            _measure_objects(cluster, namespace, result, study="scale")
            result.phase = inner.phase
    finally:
        if namespace:
            cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
        scale.remove_bench_pool(cluster, cfg)
    split = _loaded_line(log_dir / "operator-2.log")
    if split is not None:
        result.load_split = split
    result.lease_wait_seconds = _lease_wait(log_dir / "operator-2.log")
    result.loaded_seconds = _loaded_after_start(log_dir / "operator-2.log")
    result.loads, result.replay_differences = _log_counts(log_dir / "operator-2.log")
    result.lease_overdue = _lease_counts(*sorted(log_dir.glob("operator-*.log")))
    return result


def _stamp(line: str) -> float | None:
    try:
        return time.mktime(time.strptime(line[1:20], "%Y-%m-%d %H:%M:%S")) + \
            float("0." + line[21:24])
    except ValueError:
        return None


def _loaded_after_start(path: Path) -> float | None:
    """Seconds from the restarted operator's first log line to its "study ... loaded" line
    (the Lease wait included)."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return None
    first = next((_stamp(x) for x in lines if _stamp(x) is not None), None)
    loaded = next((_stamp(x) for x in lines if LOADED.search(x)), None)
    return loaded - first if first is not None and loaded is not None else None


def _lease_wait(path: Path) -> float | None:
    """Seconds the restarted operator stood by until the killed one's study Lease expired
    (from its log lines' times)."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return None
    waiting = next((_stamp(x) for x in lines if "holds the Lease; standing by" in x), None)
    took = next((_stamp(x) for x in lines if "took over the Lease" in x), None)
    if took is None:
        return None
    return took - waiting if waiting is not None else 0.0  # the Lease had expired already


def _kept_namespace(cluster: LocalCluster) -> str | None:
    """The namespace operator_scale.run just kept (its newest ``opscale-*``)."""
    names = [(n["metadata"]["creationTimestamp"], n["metadata"]["name"])
             for n in cluster.get_json("namespaces")["items"]
             if n["metadata"]["name"].startswith("opscale-")
             and n.get("status", {}).get("phase") == "Active"]
    return max(names)[1] if names else None


# -- seeded: the rebuild at 20,000 trials ------------------------------------------------------


class _NearestTable:
    """The table, each config mapped onto its nearest recorded config (what the simulated
    trainer does for a KWOK pod), so the searcher's continuous configs replay."""

    def __init__(self, table: Any) -> None:
        self.table = table
        self._index: dict[tuple[Any, ...], int] = {}

    @property
    def seeds(self) -> Any:
        return self.table.seeds

    def configs(self) -> Any:
        return self.table.configs()

    def lookup(self, config: Any, epoch: int, seed: int) -> Any:
        if not isinstance(config, int):
            key = tuple(sorted(config.items()))
            if key not in self._index:
                self._index[key] = self.table.nearest_index(config)
            config = self._index[key]
        return self.table.lookup(config, epoch, seed)


def simulate_study(spec: dict[str, Any], pools: dict[str, Any], *, seed: int = 0,
                   parallel: int = 64) -> Any:
    """The study of ``spec`` run to its end by the engine on the simulated backend (wall clock
    of the events: the last day, so times look like a real study's)."""
    from hwtune.api.clock import SimulatedClock
    from hwtune.backends.simulated import SimulatedBackend
    from hwtune.engine import Study, StudyConfig
    from hwtune.engine.config import pool_catalog
    from hwtune.engine.tuner import Tuner

    config = StudyConfig.from_spec(spec, catalog=pool_catalog(pools))
    table = load_table(default_table_path())
    backend = SimulatedBackend(_NearestTable(table), config.hardware_model, n_workers=parallel,
                               seed=seed, clock=SimulatedClock(time.time() - 86400.0))
    study = Study(config, clock=backend.clock)
    Tuner(study, backend, max_parallel=parallel).run()
    return study


async def write_study(api: Any, namespace: str, study_uid: str, study: Any,
                      spec: dict[str, Any], progress: bool = True) -> None:
    """What the operator would have stored for ``study``, written by the operator's own code:
    the log (``StudyLog`` over ``StudyLogStore``) and one TuningTrial per trial with status."""
    from hwtune.backends.kubernetes.log import StudyLog
    from hwtune.backends.kubernetes.manifests import checkpoint_uri, job_name, trial_manifest
    from hwtune.backends.kubernetes.runner import trial_status_of

    store = api.log_store(namespace, STUDY, study_uid)
    writer = StudyLog(store)
    writer.attach(asyncio.get_running_loop())
    task = asyncio.create_task(writer.run())
    for event in study.events:
        writer.append(event)
    await writer.durable(len(study.events) - 1)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    checkpoints = spec.get("checkpoints") or {}

    async def one(record: Any) -> None:
        tid = record.trial_id
        resume = checkpoint_uri(checkpoints, STUDY, tid) if record.last_resource else None
        await api.create_trial(trial_manifest(
            namespace=namespace, study=STUDY, study_uid=study_uid, trial_id=tid,
            config=dict(record.config), hardware=record.hardware, target_resource=None,
            resume_from=resume))
        await api.patch_trial_status(namespace, job_name(STUDY, tid),
                                     trial_status_of(study, tid, STUDY, checkpoints))

    trials = list(study.trials)
    began = time.monotonic()
    for start in range(0, len(trials), 64):
        await asyncio.gather(*(one(r) for r in trials[start:start + 64]))
        if progress and (start // 64) % 40 == 0:
            print(f"  TuningTrials {start + 64}/{len(trials)} "
                  f"({time.monotonic() - began:.0f}s)", flush=True)


def run_seeded(cfg: scale.ScaleConfig, cluster: LocalCluster, *, extra: int = 20,
               log_dir: Path | None = None, progress: bool = True) -> LargeResult:
    """Seed the cluster with a finished ``cfg.trials``-trial study, start the operator on it
    with ``maxTrials`` raised by ``extra``, time it to its first decision, measure."""
    from kubernetes import config as kube_config

    from hwtune.backends.kubernetes.api import KubeApi

    log_dir = Path(log_dir or tempfile.mkdtemp(prefix="hwtune-oplarge-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    result = LargeResult(mode="seeded", config=asdict(cfg), cpus=os.cpu_count() or 0)
    table = load_table(default_table_path())
    scale.prepare_cluster(cluster, cfg)
    namespace = f"oplarge-{secrets.token_hex(3)}"
    cluster.kubectl("create", "namespace", namespace)
    operator = scale._Operator(cfg, cluster, namespace, log_dir)
    watch = None
    began = time.monotonic()
    try:
        manifest = scale.study_manifest(STUDY, table, cfg)
        # The study object first (the log and the trials are owned by it), maxTrials raised so
        # that the restarted operator has a decision to make.
        manifest["spec"]["budget"]["maxTrials"] = cfg.trials + extra
        cluster.wait_for(lambda: cluster.apply(manifest, namespace=namespace), 30,
                         "the study to be admitted", interval=0.5)
        stored = cluster.get_json("tuningstudy", STUDY, namespace=namespace)
        uid = stored["metadata"]["uid"]
        # The spec as the API server keeps it (defaults applied), as the operator reads it.
        spec = json.loads(json.dumps(stored["spec"]))
        spec["budget"]["maxTrials"] = cfg.trials
        pools = {p["metadata"]["name"]: p["spec"]
                 for p in cluster.get_json("hardwarepools")["items"]}
        if progress:
            print(f"  simulating a {cfg.trials}-trial study with the engine ...", flush=True)
        study = simulate_study(spec, pools, seed=cfg.seed)
        result.trials = len(study.trials)
        api_client = kube_config.new_client_from_config(str(cluster.kubeconfig))
        api_client.configuration.connection_pool_maxsize = KubeApi.CONNECTIONS
        api = KubeApi(api_client)
        if progress:
            print(f"  writing its log and {result.trials} TuningTrials ...", flush=True)
        try:
            asyncio.run(write_study(api, namespace, uid, study, spec, progress))
        finally:
            api.close()
        del study
        result.seed_seconds = time.monotonic() - began
        watch = scale._JobWatch(kube_config.new_client_from_config(str(cluster.kubeconfig)),
                                namespace, STUDY).start()
        # -- the restart: a cold operator on the stored study ----------------------------------
        started = operator.start()
        deadline = started + cfg.timeout
        log_file = log_dir / f"operator-{operator.starts}.log"
        while time.monotonic() < deadline:
            operator.sample()
            if result.loaded_seconds is None and _loaded_line(log_file) is not None:
                result.loaded_seconds = time.monotonic() - started
            if watch.seen:
                result.first_decision_seconds = min(watch.seen.values()) - started
                break
            if operator.process is not None and operator.process.poll() is not None:
                result.errors.append(f"operator exited with {operator.process.returncode}")
                break
            time.sleep(POLL_S)
        else:
            result.errors.append(f"no decision within {cfg.timeout:g}s of the start")
        result.load_split = _loaded_line(log_file) or {}
        result.loads, result.replay_differences = _log_counts(log_file)
        result.lease_overdue = _lease_counts(log_file)
        # Let the status catch up with the whole study, then measure the objects.
        cluster.wait_for(lambda: (cluster.get_json("tuningstudy", STUDY, namespace=namespace)
                                  .get("status") or {}).get("trials", {}).get("total", 0)
                         >= result.trials, 120, "the study status to count every trial",
                         interval=1.0)
        operator.sample()
        _measure_objects(cluster, namespace, result)
        operator.sample()
        result.operator_peak_rss_mib = operator.peak_rss_mib or None
    except Exception as exc:  # noqa: BLE001 - reported with the numbers taken so far
        result.errors.append(f"{type(exc).__name__}: {exc}")
    finally:
        result.wall_seconds = time.monotonic() - began
        if watch is not None:
            watch.stop()
        operator.stop()
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
        scale.remove_bench_pool(cluster, cfg)
    return result


# -- report ------------------------------------------------------------------------------------


def format_result(r: LargeResult) -> str:
    def num(value: float | None, fmt: str = "{:.1f}") -> str:
        return "n/a" if value is None else fmt.format(value)

    cfg = r.config
    how = ("whole study on the cluster, operator SIGKILLed at "
           f"{cfg['restart_at']:.0%} of launches" if r.mode == "run" else
           "study made by the engine (simulated backend), stored by the operator's code, "
           "operator started cold on it")
    split = r.load_split
    lines = [
        f"operator at large size ({r.mode}): {how}; {cfg['trials']} trials asked, "
        f"{cfg['max_level']} levels, <= {cfg['parallel']} parallel; {r.cpus} CPUs; "
        f"{r.wall_seconds:.0f}s" + (f" (seeding {r.seed_seconds:.0f}s)" if r.seed_seconds else ""),
        f"  {'measure':<44} {'value':>14}   goal (issue 8)",
        f"  {'trials in the study':<44} {r.trials:>14}   {GOALS['trials']:,}",
        f"  {'study phase / status trials':<44} {(r.phase or '-') + f' / {r.status_trials}':>14}",
        f"  {'TuningStudy object (bytes of JSON)':<44} {r.study_object_bytes:>14}   < 102,400",
        f"  {'front size / listed in status':<44} "
        f"{f'{r.front_size} / {r.front_listed}':>14}   <= 50 listed",
        f"  {'log ConfigMaps (chunks / bytes)':<44} {f'{r.log_chunks} / {r.log_bytes}':>14}",
        f"  {'all TuningTrials (bytes of JSON)':<44} {r.tuningtrial_bytes:>14}",
        f"  {'trials finished per second (whole run)':<44} "
        f"{num(r.trials_per_second, '{:.2f}'):>14}",
        f"  {'Jobs created':<44} {r.jobs_created:>14}",
        f"  {'left in the cluster (objects / bytes)':<44} " + "; ".join(
            f"{k} {n} / {b}" for k, (n, b) in r.left_in_cluster.items()),
        f"  {'load average (1 min, start / end)':<44} "
        + " / ".join(f"{x:.1f}" for x in r.load_average),
        f"  {'operator peak RSS (MiB)':<44} {num(r.operator_peak_rss_mib):>14}",
        f"  {'restart -> study loaded (s)':<44} {num(r.loaded_seconds, '{:.2f}'):>14}",
        f"  {'restart -> first decision (s)':<44} {num(r.first_decision_seconds, '{:.2f}'):>14}"
        + (f"   (of which {r.lease_wait_seconds:.1f}s waiting out the killed operator's "
           "study Lease)" if r.lease_wait_seconds is not None else ""),
    ]
    if split:
        lines.append(
            f"  operator's load: {int(split['events'])} events, {int(split['chunks'])} chunks, "
            f"{int(split['bytes'])} bytes; read {split['read']:.2f}s, parse {split['parse']:.2f}s, "
            f"engine replay {split['rebuild']:.2f}s, cluster state {split['cluster']:.2f}s, "
            f"total {split['total']:.2f}s; loads {r.loads}, replay differences "
            f"{r.replay_differences}")
    lines.append(f"  {'study Lease overdue / renewed again / lost':<44} "
                 f"{' / '.join(map(str, r.lease_overdue)):>14}   (a late renewal pauses, "
                 "it does not reload)")
    lines += [f"  error: {e}" for e in r.errors]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="CI size")
    parser.add_argument("--seeded", action="store_true",
                        help="seed the cluster with an engine-made study, time the cold start")
    parser.add_argument("--trials", type=int)
    parser.add_argument("--parallel", type=int)
    parser.add_argument("--nodes", type=int)
    parser.add_argument("--max-level", type=int)
    parser.add_argument("--level-seconds", type=float)
    parser.add_argument("--restart-at", type=float)
    parser.add_argument("--timeout", type=float)
    parser.add_argument("--workers", type=int)
    parser.add_argument("--lease-seconds", type=float,
                        help="the operator's study Lease (its --lease-seconds; default 15): "
                             "longer on a machine so starved that renewals miss it")
    parser.add_argument("--cluster-name", default="oplarge")
    parser.add_argument("--keep-cluster", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the result here")
    parser.add_argument("--log-dir", type=Path, help="operator logs")
    args = parser.parse_args(argv)
    logging.getLogger("hwtune.trainer").setLevel(logging.ERROR)
    cfg = QUICK if args.quick else RUN
    overrides = {k: getattr(args, k) for k in ("trials", "parallel", "nodes", "max_level",
                                               "level_seconds", "restart_at", "timeout",
                                               "workers") if getattr(args, k) is not None}
    cfg = replace(cfg, **overrides)
    if args.lease_seconds is not None:
        cfg = replace(cfg, operator_cmd=f"{cfg.operator_cmd} --lease-seconds {args.lease_seconds:g}")
    for name in ("nodes", "trials", "parallel", "max_level", "workers"):
        if getattr(cfg, name) < 1:
            parser.error(f"--{name.replace('_', '-')}: must be >= 1")
    if cfg.restart_at is not None and not 0 < cfg.restart_at < 1:
        parser.error("--restart-at: must be between 0 and 1")
    cluster = LocalCluster.from_env(args.cluster_name)
    started_here = not cluster.attached and not (cluster.kubeconfig.is_file() and cluster.is_up())
    cluster.up()
    try:
        if args.seeded:
            result = run_seeded(cfg, cluster, log_dir=args.log_dir)
        else:
            result = run_study(cfg, cluster, log_dir=args.log_dir)
    finally:
        if started_here and not args.keep_cluster:
            cluster.down()
    print(format_result(result))
    if args.json:
        args.json.write_text(json.dumps(asdict(result), indent=1))
    return 0 if not result.errors else 1


if __name__ == "__main__":
    sys.exit(main())
