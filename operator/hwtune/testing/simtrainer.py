"""A simulated trainer for trial pods on KWOK nodes: whole studies run on the local control plane.

KWOK pods run nothing. This process plays the trainer of every trial pod that is Running on a
KWOK node and carries the ``hwtune.io/study`` label and the ``hwtune.io/sim-outcome: hold``
annotation (held pods stay Running until someone ends them). For each such pod it

1. reads the report protocol's ``HWTUNE_*`` variables from the primary container's ``env`` in the
   pod spec (plain ``value:`` entries), and the trial's token from the Secret that the pod mounts
   at ``HWTUNE_REPORT_TOKEN_FILE``;
2. finds the trial's learning curve in a benchmark table (``hwtune.bench.table``): the config of
   ``HWTUNE_PARAMS`` restricted to the table's parameters, exactly when the table holds it, else
   the table's nearest config (``BenchmarkTable.nearest_index``: unit-cube distance, log scales
   in log space, categoricals as a mismatch); the recorded seed is picked from the trial id as
   the simulated backend does (``seed_slot``);
3. replays the curve level by level through the real report endpoint with the trainer SDK's own
   ``hwtune.trainer.Trial`` (same client, same payloads, same retries, same skipping of levels
   the study already holds), each level taking the table's epoch runtime on the trial's
   hardware (``HardwareModel.runtime``: the pool's relative throughput and the GPU-count
   speedup) divided by ``time_scale``;
4. saves a small checkpoint (``{"simulated": true, "level": n}``, through the SDK's
   ``CheckpointStore``) after every level when ``HWTUNE_CHECKPOINT_URI`` is a local path
   (optionally re-rooted under ``checkpoint_root``); a pod that finds a checkpoint there (a
   resumed launch, a replacement pod) continues after its level, as the SDK's loop does, else
   after ``HWTUNE_REPORTED_RESOURCE``;
5. obeys the decisions and ends the pod through the KWOK stage annotations of
   ``hack/kwok/stages.yaml``: ``continue`` trains the next level; ``pause`` and ``stop`` (and the
   last level) end it with exit 0 (``hwtune.io/sim-outcome: succeed``); a refused report or an
   unusable pod (no token, a pool the hardware model does not know, a config that does not fit
   the GPU memory) with exit 1 (``fail``); a pod that is being deleted (eviction, preemption, a
   deleted Job) stops mid-level, keeps the checkpoint of its last completed level and exits 75
   (``fail`` with ``hwtune.io/sim-exit-code: 75``), as the SDK does on SIGTERM.

Command line::

    python -m hwtune.testing.simtrainer --kubeconfig K (--namespace N | --all-namespaces) \\
        [--table T] [--time-scale S] [--report-url URL] [--checkpoint-root DIR] [--seed N]

Exec mode (``mode="exec"``, ``--exec``; ``hwtune.testing.simexec``): instead of replaying a
table, each held pod's primary container command runs as a local process, its output becomes
the container's log that KWOK serves through the API server (``kubectl logs``), and the pod ends
with the process's exit code: unmodified trainers (metrics parsed from their output) run on the
local control plane.

In process (tests, benchmarks)::

    with SimTrainer(load_table(path), kubeconfig=k, namespace=ns, report_url=url) as sim:
        sim.wait_for(lambda runs: any(r.outcome for r in runs), timeout=30, what="a pod ends")
        sim.runs()   # one PodRun per pod: levels reported, decisions, outcome, exit code

Many pods run at once: one asyncio loop times every pod's levels, and a thread pool does the
blocking work (reports, API calls, checkpoints), so 1,000 concurrent pods need no 1,000 threads.
The operator cannot tell it from a real trainer: it sees the same HTTP reports with the pod's
token, the same checkpoints, and pods that end with the exit codes a real trainer leaves.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import concurrent.futures
import json
import logging
import os
import posixpath
import signal
import sys
import tempfile
import threading
import time
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence
from urllib.parse import urlsplit

from hwtune.api.records import BUILTIN_METRICS, Decision, Hardware
from hwtune.backends.simulated.backend import seed_slot
from hwtune.bench.table import MEMORY_FIELD, RUNTIME_METRIC, BenchmarkTable, load_table
from hwtune.optimize.hardware import DEFAULT_CATALOG, HardwareModel, PoolSpec, resolve_hardware
from hwtune.testing._paths import repo_root
from hwtune.testing.cluster import SIM_DURATION, SIM_EXIT_CODE, SIM_OUTCOME
from hwtune.trainer import EXIT_PREEMPTED, ReportError, Trial, TrialEnv, TrialEnvError
from hwtune.trainer import env as trial_env

__all__ = [
    "STUDY_LABEL",
    "TRIAL_LABEL",
    "CurveChoice",
    "PodRun",
    "SimTrainer",
    "SimTrainerError",
    "default_table_path",
    "main",
]

log = logging.getLogger("hwtune.simtrainer")

STUDY_LABEL = "hwtune.io/study"
TRIAL_LABEL = "hwtune.io/trial"
KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"
HOLD = "hold"
# Exit status of a trainer that crashed (a refused report, an unusable environment).
EXIT_FAILED = 1

_POOLS_API = ("hwtune.io", "v1alpha1", "hardwarepools")
_STUDIES_API = ("hwtune.io", "v1alpha1", "tuningstudies")


def default_table_path() -> Path:
    """The committed CI-sized table: benchmarks/tables/digits-quick.jsonl of this checkout."""
    return repo_root() / "benchmarks" / "tables" / "digits-quick.jsonl"


class SimTrainerError(RuntimeError):
    """A pod the simulated trainer cannot train; the message says which pod and why. The pod
    fails with exit status 1, as a real trainer that crashed at start would."""


@dataclass
class PodRun:
    """What the simulated trainer did with one pod (a snapshot; ``SimTrainer.runs()``)."""

    namespace: str
    pod: str
    uid: str
    study: str = ""
    trial: str = ""
    config_index: int | None = None  # the table config replayed
    exact_match: bool = False  # the table holds the trial's config itself (else the nearest)
    table_seed: int | None = None
    start_level: int | None = None  # first level trained by this pod
    resumed_from: int | None = None  # checkpoint level a resumed pod continued after
    reports: list[tuple[int, str]] = field(default_factory=list)  # (level, decision) sent
    checkpoint_level: int = 0  # last level checkpointed by this pod
    outcome: str | None = None  # completed | paused | stopped | preempted | failed | gone
    exit_code: int | None = None
    reason: str = ""
    started_at: float = 0.0
    ended_at: float | None = None
    log_path: str = ""  # exec mode: the container log file KWOK serves

    @property
    def levels(self) -> list[int]:
        return [level for level, _ in self.reports]

    @property
    def ended(self) -> bool:
        return self.outcome is not None


@dataclass(frozen=True)
class CurveChoice:
    """Which recorded curve a trial replays."""

    index: int
    exact: bool
    seed: int


@dataclass
class _Plan:
    """Everything a pod's replay needs, built once from its spec (blocking I/O)."""

    trial: Trial
    env: TrialEnv
    curve: CurveChoice
    hardware_model: HardwareModel
    start_level: int
    max_level: int
    resumed_from: int | None


class _PodState:
    def __init__(self, run: PodRun) -> None:
        self.run = run
        self.terminating = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.trial: Trial | None = None


def _pod_key(pod: Mapping[str, Any]) -> str:
    return pod["metadata"]["uid"]


def _container_env(pod: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """The primary container (the one given HWTUNE_TRIAL_ID, else the first) and its plain env."""
    containers = pod.get("spec", {}).get("containers") or []
    if not containers:
        raise SimTrainerError("the pod has no containers")
    primary = containers[0]
    for container in containers:
        if any(e.get("name") == trial_env.TRIAL_ID for e in container.get("env") or []):
            primary = container
            break
    env: dict[str, str] = {}
    for entry in primary.get("env") or []:
        name = entry.get("name", "")
        if "value" in entry:
            env[name] = str(entry["value"])
        elif name.startswith(trial_env.ENV_PREFIX):
            # The contract: the operator writes the protocol variables as plain values.
            raise SimTrainerError(f"env {name} of container {primary.get('name')!r} is not a plain "
                                  "value: entry (the report protocol variables must be)")
    return primary, env


def _secret_for_path(pod: Mapping[str, Any], container: Mapping[str, Any],
                     path: str) -> tuple[str, str]:
    """(Secret name, key) of the file ``path`` in ``container``: the volume mount that holds it,
    the Secret volume behind that mount, and the key whose file name it is."""
    mounts = sorted(container.get("volumeMounts") or [],
                    key=lambda m: len(m.get("mountPath", "")), reverse=True)
    volumes = {v.get("name"): v for v in pod.get("spec", {}).get("volumes") or []}
    for mount in mounts:
        root = mount.get("mountPath", "").rstrip("/")
        if not root or not path.startswith(root + "/"):
            continue
        relative = path[len(root) + 1:]
        if mount.get("subPath"):
            relative = posixpath.join(mount["subPath"], relative)
        secret = (volumes.get(mount.get("name")) or {}).get("secret")
        if not secret:
            raise SimTrainerError(f"{trial_env.REPORT_TOKEN_FILE}={path}: volume "
                                  f"{mount.get('name')!r} mounted at {root} is not a Secret")
        for item in secret.get("items") or []:
            if item.get("path") == relative:
                return secret["secretName"], item["key"]
        return secret["secretName"], relative
    raise SimTrainerError(f"{trial_env.REPORT_TOKEN_FILE}={path}: no volume of the container "
                          "is mounted there")


def _local_checkpoint_location(uri: str | None, root: Path | None) -> str | None:
    """Where on this host a pod's checkpoint location lives, or None when it is not local (an
    object store): then the simulated trainer keeps no checkpoint, as with no location."""
    if not uri:
        return None
    if "://" in uri:
        parts = urlsplit(uri)
        if parts.scheme != "file":
            return None
        path = parts.path
    else:
        path = uri
    if root is not None:
        return str(root / path.lstrip("/"))
    return path


def _redirect(pod_url: str | None, base: str) -> str:
    """The pod's report URL moved onto ``base``: scheme, host and port from ``base``, then
    ``base``'s path, then the pod URL's path (the operator's study-scoped prefix
    ``/studies/<namespace>/<study>`` survives)."""
    path = urlsplit(pod_url).path if pod_url else ""
    return base.rstrip("/") + ("/" + path.lstrip("/") if path.strip("/") else "")


class SimTrainer:
    """Trains every held trial pod on a KWOK node by replaying ``table`` (see the module doc).

    ``namespace`` None watches every namespace. ``report_url`` replaces scheme, host and port
    of the pods' ``HWTUNE_REPORT_URL``, keeping its path (the operator's endpoint on 127.0.0.1
    in tests; there is no kube-proxy). ``time_scale`` > 1 runs faster than the table's runtimes. ``checkpoint_root``
    re-roots pod checkpoint paths on this host (a stand-in for the checkpoint volume).
    ``workers`` bounds the threads doing blocking work. ``api_client`` (a kubernetes
    ``ApiClient``) replaces the one built from ``kubeconfig``."""

    def __init__(
        self,
        table: BenchmarkTable | None,
        *,
        kubeconfig: str | os.PathLike[str] | None = None,
        namespace: str | None = None,
        time_scale: float = 1.0,
        report_url: str | None = None,
        checkpoint_root: str | os.PathLike[str] | None = None,
        seed: int = 0,
        workers: int = 32,
        catalog: Mapping[str, PoolSpec] | None = None,
        api_client: Any = None,
        mode: str = "replay",
        log_root: str | os.PathLike[str] | None = None,
    ) -> None:
        if mode not in ("replay", "exec"):
            raise ValueError(f"mode must be replay or exec, got {mode!r}")
        if table is None and mode == "replay":
            raise ValueError("the replay mode needs a benchmark table")
        if not time_scale > 0:
            raise ValueError(f"time_scale must be > 0, got {time_scale!r}")
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers!r}")
        if report_url is not None:
            parts = urlsplit(report_url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"report URL {report_url!r}: must be http(s)://host[:port]")
        self.table = table
        self.mode = mode
        # exec mode: where container logs are written (KWOK reads them from this machine)
        self.log_root = Path(log_root) if log_root is not None else Path(
            tempfile.gettempdir()) / "hwtune-simexec-logs"
        self.namespace = namespace
        self.time_scale = float(time_scale)
        self.report_url = report_url
        self.checkpoint_root = Path(checkpoint_root) if checkpoint_root is not None else None
        self.seed = int(seed)
        self.workers = workers
        self._catalog_override = dict(catalog) if catalog is not None else None
        self._kubeconfig = kubeconfig
        self._api_client = api_client
        self._core: Any = None
        self._custom: Any = None
        self._metric_names = tuple(m for m in table.metric_names
                                   if m not in (RUNTIME_METRIC, MEMORY_FIELD)
                                   and m not in BUILTIN_METRICS) if table is not None else ()
        self._lock = threading.Lock()
        self._records: dict[str, PodRun] = {}  # uid -> record, every pod ever seen to train
        self._report_times: list[tuple[float, float]] = []
        self._states: dict[str, _PodState] = {}  # uid -> live state (loop thread only)
        self._ended: set[str] = set()  # uids this trainer ended (KWOK flips them a bit later)
        self._skipped: set[str] = set()  # uids not held: logged once
        self._kwok_nodes: dict[str, bool] = {}
        self._models: dict[tuple[str, str], HardwareModel] = {}
        self._catalog: dict[str, PoolSpec] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._watch_ready = threading.Event()
        self._watch: Any = None
        self._fatal: BaseException | None = None

    # -- life cycle --------------------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> "SimTrainer":
        """Connect, start the loop and the pod watch; returns once the watch is running."""
        if self._threads:
            raise RuntimeError("the simulated trainer is already started")
        self._connect()
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=self.workers, thread_name_prefix="simtrainer")
        loop_ready = threading.Event()

        def run_loop() -> None:
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            loop_ready.set()
            try:
                self._loop.run_forever()
            finally:
                self._loop.close()

        loop_thread = threading.Thread(target=run_loop, name="simtrainer-loop", daemon=True)
        loop_thread.start()
        loop_ready.wait()
        watch_thread = threading.Thread(target=self._watch_pods, name="simtrainer-watch",
                                        daemon=True)
        watch_thread.start()
        self._threads = [loop_thread, watch_thread]
        if not self._watch_ready.wait(timeout):
            self.stop()
            raise RuntimeError(f"the pod watch did not start within {timeout:g}s")
        if self._fatal is not None:
            self.stop()
            raise RuntimeError(f"the pod watch failed: {self._fatal}") from self._fatal
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop training (pods in flight stay Running and held, as if the trainer vanished)."""
        self._stopping.set()
        response = self._watch
        if response is not None:
            try:
                response.close()  # unblocks the watch thread's read
            except Exception:  # noqa: BLE001 - closing a half-closed socket
                pass
        loop = self._loop
        if loop is not None and loop.is_running():
            async def cancel_all() -> None:
                tasks = [s.task for s in self._states.values() if s.task is not None]
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

            try:
                asyncio.run_coroutine_threadsafe(cancel_all(), loop).result(timeout)
            except (concurrent.futures.TimeoutError, RuntimeError):
                log.warning("some pod replays did not stop within %gs", timeout)
            loop.call_soon_threadsafe(loop.stop)
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
        for thread in self._threads:
            if thread is not threading.current_thread():
                # The watch thread may sit in a read until the server ends the watch; it is a
                # daemon that drops what it reads once stopping, so it is not waited for long.
                thread.join(timeout if thread.name == "simtrainer-loop" else 1.0)
        self._threads = []

    def __enter__(self) -> "SimTrainer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def run_forever(self) -> None:
        """Start and train until SIGINT/SIGTERM (the command line)."""
        done = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: done.set())
        self.start()
        log.info("simulated trainer watching %s (%s)",
                 f"namespace {self.namespace}" if self.namespace else "all namespaces",
                 f"time scale {self.time_scale:g}, table {self.table.name}" if self.table
                 else f"exec mode, logs under {self.log_root}")
        while not done.wait(1.0):
            if self._fatal is not None:
                self.stop()
                raise RuntimeError(f"the pod watch failed: {self._fatal}") from self._fatal
        self.stop()

    # -- what happened -----------------------------------------------------------------------

    def runs(self) -> list[PodRun]:
        """A snapshot of every pod this trainer took on, in the order it saw them."""
        with self._lock:
            return [replace(r, reports=list(r.reports)) for r in self._records.values()]

    def runs_of(self, trial: str, namespace: str | None = None) -> list[PodRun]:
        return [r for r in self.runs() if r.trial == str(trial)
                and (namespace is None or r.namespace == namespace)]

    def wait_for(self, predicate: Callable[[list[PodRun]], Any], timeout: float,
                 what: str) -> Any:
        """Poll ``predicate(self.runs())`` until it is truthy; a TimeoutError names ``what``."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate(self.runs())
            if value:
                return value
            if self._fatal is not None:
                raise RuntimeError(f"the pod watch failed: {self._fatal}") from self._fatal
            if time.monotonic() >= deadline:
                raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}; "
                                   f"runs: {self.runs()!r}")
            time.sleep(0.05)

    # -- the curve of a trial ----------------------------------------------------------------

    def choose_curve(self, params: Mapping[str, Any], trial: str) -> CurveChoice:
        """The table config for ``params`` (exact, else nearest) and the recorded seed."""
        names = self.table.header.parameters
        config = {k: v for k, v in params.items() if k in names}
        try:
            index, exact = self.table.index_of(config), True
        except KeyError:
            index, exact = self.table.nearest_index(config), False
        try:
            trial_number = int(trial)
        except ValueError:
            trial_number = zlib.crc32(trial.encode())
        slot = seed_slot(self.seed, trial_number, len(self.table.seeds))
        return CurveChoice(index, exact, self.table.seeds[slot])

    def level_metrics(self, curve: CurveChoice, level: int) -> tuple[dict[str, float], float, float]:
        """(metrics to report, reference epoch seconds, memory GiB) of one level."""
        values = self.table.lookup(curve.index, level, curve.seed)
        metrics = {m: values[m] for m in self._metric_names}
        return metrics, values[RUNTIME_METRIC], values.get(MEMORY_FIELD, 0.0)

    # -- Kubernetes --------------------------------------------------------------------------

    def _connect(self) -> None:
        from kubernetes import client, config

        if self._api_client is None:
            configuration = client.Configuration()
            config.load_kube_config(
                config_file=None if self._kubeconfig is None else str(self._kubeconfig),
                client_configuration=configuration)
            # One connection per worker thread, plus the watch.
            configuration.connection_pool_maxsize = self.workers + 2
            self._api_client = client.ApiClient(configuration)
        self._core = client.CoreV1Api(self._api_client)
        self._custom = client.CustomObjectsApi(self._api_client)

    def _watch_pods(self) -> None:
        """List, then watch, the trial pods; relist after a 410 (the watch fell too far behind)
        and reconnect after an error (an API server restart)."""
        from kubernetes.client.exceptions import ApiException
        from kubernetes.watch.watch import iter_resp_lines

        kwargs: dict[str, Any] = {"label_selector": STUDY_LABEL}
        if self.namespace:
            func = self._core.list_namespaced_pod
            kwargs["namespace"] = self.namespace
        else:
            func = self._core.list_pod_for_all_namespaces
        resource_version: str | None = None
        while not self._stopping.is_set():
            try:
                if resource_version is None:
                    listed = json.loads(func(_preload_content=False, **kwargs).data)
                    resource_version = listed["metadata"]["resourceVersion"]
                    for pod in listed.get("items") or []:
                        self._dispatch("ADDED", pod)
                    self._watch_ready.set()
                response = func(watch=True, resource_version=resource_version,
                                allow_watch_bookmarks=True, timeout_seconds=10,
                                _preload_content=False, **kwargs)
                self._watch = response
                try:
                    for line in iter_resp_lines(response):
                        if self._stopping.is_set():
                            return
                        if not line.strip():
                            continue
                        event = json.loads(line)
                        kind, obj = event.get("type"), event.get("object") or {}
                        if kind == "ERROR":
                            if obj.get("code") == 410:
                                resource_version = None  # too old: list again
                                break
                            raise RuntimeError(f"watch error {obj.get('code')}: "
                                               f"{obj.get('message')}")
                        resource_version = (obj.get("metadata") or {}).get(
                            "resourceVersion", resource_version)
                        if kind != "BOOKMARK":
                            self._dispatch(kind, obj)
                finally:
                    self._watch = None
                    response.release_conn()
            except ApiException as exc:
                if exc.status == 410:
                    resource_version = None
                    continue
                if self._watch_failed(exc):
                    return
            except Exception as exc:  # noqa: BLE001 - connection resets, an API restart
                if self._watch_failed(exc):
                    return

    def _watch_failed(self, exc: BaseException) -> bool:
        """True when the watch thread should end (stopping, or the very first list failed)."""
        if self._stopping.is_set():
            return True
        if not self._watch_ready.is_set():
            self._fatal = exc
            self._watch_ready.set()
            return True
        log.warning("pod watch failed (%s: %s); retrying", type(exc).__name__, exc)
        self._stopping.wait(1.0)
        return False

    def _dispatch(self, kind: str, pod: dict[str, Any]) -> None:
        loop = self._loop
        if loop is not None and not self._stopping.is_set():
            loop.call_soon_threadsafe(self._on_pod_event, kind, pod)

    def _is_kwok_node(self, name: str) -> bool:
        known = self._kwok_nodes.get(name)
        if known is None:
            try:
                node = json.loads(self._core.read_node(name, _preload_content=False).data)
            except Exception as exc:  # noqa: BLE001 - a node gone: not ours to simulate
                log.debug("node %s: %s", name, exc)
                return False
            annotations = node.get("metadata", {}).get("annotations") or {}
            known = annotations.get(KWOK_NODE_ANNOTATION) == "fake"
            self._kwok_nodes[name] = known
        return known

    def _patch_outcome(self, namespace: str, name: str, outcome: str, exit_code: int) -> None:
        from kubernetes.client.exceptions import ApiException

        annotations = {SIM_OUTCOME: outcome, SIM_DURATION: "0s"}
        if outcome == "fail":
            annotations[SIM_EXIT_CODE] = str(exit_code)
        try:
            self._core.patch_namespaced_pod(name, namespace,
                                            {"metadata": {"annotations": annotations}})
        except ApiException as exc:
            if exc.status != 404:  # a pod already gone needs no ending
                raise

    #: How long a pod's token Secret may be missing: the operator creates it right after the
    #: Job (it is owned by the Job), and a kubelet retries a Secret volume until it exists.
    SECRET_WAIT_SECONDS = 60.0

    def _read_token(self, namespace: str, secret: str, key: str) -> str:
        from kubernetes.client.exceptions import ApiException

        deadline = time.monotonic() + self.SECRET_WAIT_SECONDS
        delay = 0.1
        while True:
            try:
                body = json.loads(self._core.read_namespaced_secret(
                    secret, namespace, _preload_content=False).data)
                break
            except ApiException as exc:
                if exc.status != 404 or time.monotonic() > deadline:
                    raise SimTrainerError(
                        f"secret {namespace}/{secret}: {exc.status} {exc.reason}") from None
            time.sleep(delay)
            delay = min(2 * delay, 2.0)
        raw = (body.get("data") or {}).get(key)
        if raw is None:
            raise SimTrainerError(f"secret {namespace}/{secret} has no key {key!r}")
        token = base64.b64decode(raw).decode().strip()
        if not token:
            raise SimTrainerError(f"secret {namespace}/{secret} key {key!r} is empty")
        return token

    def _pool_catalog(self) -> dict[str, PoolSpec]:
        if self._catalog_override is not None:
            return dict(self._catalog_override)
        if self._catalog is None:
            catalog = dict(DEFAULT_CATALOG)
            try:
                listed = self._custom.list_cluster_custom_object(*_POOLS_API)
            except Exception as exc:  # noqa: BLE001 - no CRD installed: the default catalog
                log.debug("HardwarePools not readable (%s); using the default catalog", exc)
            else:
                for item in listed.get("items") or []:
                    name = item["metadata"]["name"]
                    try:
                        catalog[name] = PoolSpec.from_spec(item.get("spec") or {},
                                                           f"HardwarePool {name}: spec")
                    except ValueError as exc:
                        log.warning("%s", exc)
            self._catalog = catalog
        return dict(self._catalog)

    def _hardware_model(self, namespace: str, study: str) -> HardwareModel:
        """The study's hardware model (its pools, overrides and scaling efficiency), as the
        engine prices it; without a readable TuningStudy, the pools alone."""
        key = (namespace, study)
        model = self._models.get(key)
        if model is None:
            catalog = self._pool_catalog()
            hardware_spec = None
            try:
                body = self._custom.get_namespaced_custom_object(
                    *_STUDIES_API[:2], namespace, _STUDIES_API[2], study)
                hardware_spec = (body.get("spec") or {}).get("hardware")
            except Exception as exc:  # noqa: BLE001 - pods made by hand in tests have no study
                log.debug("study %s/%s not readable (%s)", namespace, study, exc)
            try:
                _, model = resolve_hardware(hardware_spec, catalog)
            except ValueError as exc:
                log.warning("study %s/%s: %s; using the pools without its overrides",
                            namespace, study, exc)
                model = HardwareModel(catalog)
            self._models[key] = model
        return model

    # -- one pod -----------------------------------------------------------------------------

    def _on_pod_event(self, kind: str, pod: dict[str, Any]) -> None:
        """Runs in the loop thread for every watch event."""
        meta = pod.get("metadata") or {}
        uid = meta.get("uid")
        if not uid:
            return
        state = self._states.get(uid)
        if kind == "DELETED":
            if state is not None:
                state.terminating.set()
            self._ended.discard(uid)
            self._skipped.discard(uid)
            return
        if meta.get("deletionTimestamp"):
            if state is not None:
                state.terminating.set()
            return
        if state is not None or uid in self._ended or uid in self._skipped:
            return
        if (pod.get("status") or {}).get("phase") != "Running":
            return
        node = (pod.get("spec") or {}).get("nodeName")
        if not node:
            return
        state = _PodState(PodRun(namespace=meta.get("namespace", ""), pod=meta.get("name", ""),
                                 uid=uid, study=(meta.get("labels") or {}).get(STUDY_LABEL, ""),
                                 trial=(meta.get("labels") or {}).get(TRIAL_LABEL, ""),
                                 started_at=time.time()))
        self._states[uid] = state
        state.task = asyncio.get_running_loop().create_task(self._drive(state, pod, node))

    async def _io(self, fn: Callable[..., Any], *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, *args)

    async def _drive(self, state: _PodState, pod: dict[str, Any], node: str) -> None:
        run = state.run
        uid = run.uid
        try:
            if not await self._io(self._is_kwok_node, node):
                self._skip(uid, f"node {node} is not a KWOK node")
                return
            outcome = (pod["metadata"].get("annotations") or {}).get(SIM_OUTCOME)
            if outcome != HOLD:
                self._skip(uid, f"annotation {SIM_OUTCOME}={outcome!r}, not {HOLD!r}: KWOK ends "
                           "the pod by itself")
                return
            with self._lock:
                self._records[uid] = run
            if self.mode == "exec":
                from hwtune.testing.simexec import run_pod

                await run_pod(self, state, pod)
                return
            try:
                plan = await self._io(self._plan, pod, run)
            except (SimTrainerError, TrialEnvError, ValueError, KeyError) as exc:
                await self._end(state, "failed", EXIT_FAILED, str(exc).strip("'\""))
                return
            state.trial = plan.trial
            await self._replay(state, plan)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - one pod's trouble must not stop the rest
            log.exception("pod %s/%s: unexpected error", run.namespace, run.pod)
            if not run.ended:
                try:
                    await self._end(state, "failed", EXIT_FAILED, f"{type(exc).__name__}: {exc}")
                except Exception:  # noqa: BLE001
                    log.exception("pod %s/%s: could not end it", run.namespace, run.pod)
        finally:
            if state.trial is not None:
                state.trial.close()
            self._states.pop(uid, None)

    def _skip(self, uid: str, why: str) -> None:
        state = self._states.get(uid)
        if state is not None:
            log.info("pod %s/%s: not simulated: %s", state.run.namespace, state.run.pod, why)
        self._skipped.add(uid)

    def _plan(self, pod: dict[str, Any], run: PodRun) -> _Plan:
        """Read the pod's environment, token and checkpoint; pick its curve (blocking I/O)."""
        container, env = _container_env(pod)
        if trial_env.TRIAL_ID not in env:
            raise SimTrainerError(f"container {container.get('name')!r} has no "
                                  f"{trial_env.TRIAL_ID}: not a trial pod")
        namespace = run.namespace
        token_file = env.pop(trial_env.REPORT_TOKEN_FILE, "").strip()
        if not env.get(trial_env.REPORT_TOKEN) and token_file:
            secret, key = _secret_for_path(pod, container, token_file)
            env[trial_env.REPORT_TOKEN] = self._read_token(namespace, secret, key)
        if self.report_url:
            env[trial_env.REPORT_URL] = _redirect(env.get(trial_env.REPORT_URL), self.report_url)
        location = _local_checkpoint_location(env.pop(trial_env.CHECKPOINT_URI, None),
                                              self.checkpoint_root)
        if location:
            env[trial_env.CHECKPOINT_URI] = location
        parsed = TrialEnv.from_env(env)
        run.trial = parsed.trial_id
        run.study = parsed.study or run.study
        if parsed.report_url is None:
            log.warning("pod %s/%s: no report URL (no %s, no --report-url): reports are only "
                        "logged", namespace, run.pod, trial_env.REPORT_URL)
        curve = self.choose_curve(parsed.params, parsed.trial_id)
        run.config_index, run.exact_match, run.table_seed = curve.index, curve.exact, curve.seed
        if not curve.exact:
            log.info("pod %s/%s: trial %s's config is not in table %s; replaying its nearest "
                     "config #%d", namespace, run.pod, parsed.trial_id, self.table.name,
                     curve.index)
        max_level = parsed.max_resource or self.table.max_resource
        if max_level > self.table.max_resource:
            raise SimTrainerError(f"{trial_env.MAX_RESOURCE}={max_level} but table "
                                  f"{self.table.name} has only {self.table.max_resource} "
                                  f"{self.table.resource}s")
        model = self._hardware_model(namespace, parsed.study or run.study)
        _, _, memory = self.level_metrics(curve, 1)
        try:
            model.pool(parsed.hardware)
        except KeyError as exc:
            raise SimTrainerError(str(exc).strip("'\"")) from None
        if memory and not model.fits(parsed.hardware, memory):
            need = model.memory_per_gpu(memory, parsed.hardware)
            have = model.pool(parsed.hardware).gpu_memory_gib
            raise SimTrainerError(f"out of memory: needs {need:.3g} GiB per GPU, "
                                  f"{parsed.hardware} has {have:.3g} GiB")
        trial = Trial(parsed, handle_sigterm=False)
        start, resumed_from = parsed.reported_resource + 1, None
        # As the SDK's training loop does, whatever HWTUNE_RESUME says: a replacement pod of a
        # preempted launch resumes too. Levels between the checkpoint and what the study holds
        # are trained again (they take time) but not sent twice: Trial.report skips them.
        checkpoint = trial.load_checkpoint()
        if checkpoint is not None:
            start, resumed_from = checkpoint.resource + 1, checkpoint.resource
        run.start_level, run.resumed_from = start, resumed_from
        return _Plan(trial, parsed, curve, model, start, max_level, resumed_from)

    async def _replay(self, state: _PodState, plan: _Plan) -> None:
        run, trial = state.run, plan.trial
        store = trial.checkpoint_store
        level = plan.start_level
        if level > plan.max_level:
            await self._end(state, "completed", 0, "nothing left to train")
            return
        while level <= plan.max_level:
            metrics, reference_seconds, _ = self.level_metrics(plan.curve, level)
            seconds = plan.hardware_model.runtime(reference_seconds, plan.env.hardware)
            if await self._sleep_or_terminate(state, seconds / self.time_scale):
                await self._end(state, "preempted", EXIT_PREEMPTED,
                                f"deleted during {plan.env.resource_name} {level}; checkpoint "
                                f"at {run.checkpoint_level or plan.resumed_from or 0}")
                return
            if store is not None:
                await self._io(trial.save_checkpoint,
                               {"simulated": True, "level": level, "trial": plan.env.trial_id},
                               level)
                run.checkpoint_level = level
            try:
                decision = await self._io(self._report, trial, level, metrics)
            except ReportError as exc:
                await self._end(state, "failed", EXIT_FAILED, f"report refused: {exc}")
                return
            if level > plan.env.reported_resource:
                with self._lock:
                    run.reports.append((level, decision.value))
            if state.terminating.is_set():
                await self._end(state, "preempted", EXIT_PREEMPTED,
                                f"deleted after {plan.env.resource_name} {level}")
                return
            if decision is Decision.PAUSE:
                await self._end(state, "paused", 0, trial.last_reason)
                return
            if decision is Decision.STOP:
                await self._end(state, "stopped", 0, trial.last_reason)
                return
            level += 1
        await self._end(state, "completed", 0, f"reached {plan.env.resource_name} {plan.max_level}")

    def _report(self, trial: Trial, level: int, metrics: Mapping[str, float]) -> Decision:
        sent = time.monotonic()
        decision = trial.report(level, **metrics)
        if level > trial.env.reported_resource:  # levels the SDK skipped sent nothing
            answered = time.monotonic()
            with self._lock:
                self._report_times.append((answered, answered - sent))
        return decision

    def report_times(self) -> list[tuple[float, float]]:
        """(when answered, seconds from send to decision) of every report sent, in
        ``time.monotonic()`` time: the report-to-decision latency a trainer sees, retries
        (an endpoint restarting) included."""
        with self._lock:
            return list(self._report_times)

    def active(self) -> int:
        """Pods being trained right now."""
        with self._lock:
            return sum(1 for r in self._records.values() if not r.ended)

    async def _sleep_or_terminate(self, state: _PodState, seconds: float) -> bool:
        """Train for ``seconds``; True when the pod started terminating meanwhile."""
        if state.terminating.is_set():
            return True
        try:
            async with asyncio.timeout(max(0.0, seconds)):
                await state.terminating.wait()
        except asyncio.TimeoutError:
            return False
        return True

    async def _end(self, state: _PodState, outcome: str, exit_code: int, reason: str) -> None:
        run = state.run
        log.info("pod %s/%s (trial %s): %s, exit %d%s", run.namespace, run.pod, run.trial,
                 outcome, exit_code, f": {reason}" if reason else "")
        self._ended.add(run.uid)
        await self._io(self._patch_outcome, run.namespace, run.pod,
                       "succeed" if exit_code == 0 else "fail", exit_code)
        with self._lock:
            run.outcome, run.exit_code, run.reason = outcome, exit_code, reason
            run.ended_at = time.time()


# -- command line ----------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m hwtune.testing.simtrainer",
        description="Simulated trainer for hwtune trial pods on KWOK nodes: replays a benchmark "
                    "table's learning curves through the report endpoint and ends the pods.")
    parser.add_argument("--kubeconfig", help="kubeconfig of the cluster [default: $KUBECONFIG]")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--namespace", "-n", help="watch trial pods in this namespace")
    where.add_argument("--all-namespaces", "-A", action="store_true",
                       help="watch trial pods in every namespace")
    parser.add_argument("--exec", action="store_true", dest="exec_mode",
                        help="run each pod's primary container command as a local process "
                             "(its output is the container log KWOK serves) instead of "
                             "replaying a table")
    parser.add_argument("--log-root", default=None,
                        help="exec mode: directory for the container log files")
    parser.add_argument("--table", default=None,
                        help="benchmark table (hwtune-table JSON lines) [default: the committed "
                             "benchmarks/tables/digits-quick.jsonl]")
    parser.add_argument("--time-scale", type=float, default=1.0,
                        help="simulated seconds per wall second: each level takes the table's "
                             "runtime on the trial's hardware divided by this [default: 1]")
    parser.add_argument("--report-url", default=None,
                        help="report endpoint base URL: replaces scheme, host and port of the "
                             "pods' HWTUNE_REPORT_URL (its path is kept)")
    parser.add_argument("--checkpoint-root", default=None,
                        help="host directory under which pod checkpoint paths are written")
    parser.add_argument("--seed", type=int, default=0,
                        help="which recorded seed each trial replays (as the simulated "
                             "backend's seed) [default: 0]")
    parser.add_argument("--workers", type=int, default=32,
                        help="threads for reports and API calls [default: 32]")
    parser.add_argument("--log-level", default="INFO",
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.time_scale > 0:
        print(f"--time-scale: must be > 0, got {args.time_scale}", file=sys.stderr)
        return 2
    if args.workers < 1:
        print(f"--workers: must be >= 1, got {args.workers}", file=sys.stderr)
        return 2
    table_path = Path(args.table) if args.table else default_table_path()
    table = None
    if not args.exec_mode or args.table:
        try:
            table = load_table(table_path)
        except (OSError, ValueError) as exc:
            print(f"--table {table_path}: {exc}", file=sys.stderr)
            return 2
    kubeconfig = args.kubeconfig or os.environ.get("KUBECONFIG")
    if kubeconfig and not Path(kubeconfig).is_file():
        print(f"--kubeconfig {kubeconfig}: no such file", file=sys.stderr)
        return 2
    try:
        trainer = SimTrainer(
            table, kubeconfig=kubeconfig,
            namespace=None if args.all_namespaces else args.namespace,
            time_scale=args.time_scale, report_url=args.report_url,
            checkpoint_root=args.checkpoint_root, seed=args.seed, workers=args.workers,
            mode="exec" if args.exec_mode else "replay", log_root=args.log_root)
        trainer.run_forever()
    except ValueError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except RuntimeError as exc:
        print(f"simulated trainer: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
