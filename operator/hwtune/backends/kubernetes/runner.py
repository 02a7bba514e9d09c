"""``StudyRunner``: one TuningStudy, run by the engine on the cluster.

It owns the study's ``Study`` (rebuilt from the log at start), the ``KubernetesBackend``, the
``Tuner``, the log writer and the tasks that turn intents into API calls and engine state into
status. Order of everything (docs/operator-design.md): engine under the lock (no I/O) -> log
durable -> answer / effects -> status. The controller creates one per study and feeds it Job and
pod events and reports; nothing here imports kopf.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import math
import os
import signal
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from hwtune.api._base import ManifestError
from hwtune.api.clock import WallClock
from hwtune.api.crd import (
    BestValue,
    Condition,
    FrontPoint,
    HardwareChoice,
    LearningCurvePoint,
    StudyPhase,
    TrialCounts,
    TuningStudyStatus,
    TuningTrialStatus,
)
from hwtune.api.records import BUILTIN_METRICS, Decision, TrialPhase
from hwtune.backends.base import BackendError
from hwtune.backends.kubernetes.aio import wait_event
from hwtune.backends.kubernetes.api import ApiError, KubeApi
from hwtune.backends.kubernetes.backend import Intent, IntentKind, KubernetesBackend
from hwtune.backends.kubernetes.hotstats import STATS
from hwtune.backends.kubernetes.lease import StudyLease
from hwtune.backends.kubernetes.log import LogCorrupted, LogFenced, StudyLog, parse_chunks
from hwtune.backends.kubernetes.pacing import TokenBucket
from hwtune.backends.kubernetes.status import (
    MAX_CURVE_POINTS,
    MAX_FRONT_POINTS,
    bounded_curve,
    bounded_front,
    front_source,
    json_bytes,
)
from hwtune.backends.kubernetes.manifests import (
    LABEL_LAUNCH,
    LABEL_TRIAL,
    JobParams,
    checkpoint_uri,
    derive_study_key,
    derive_token,
    job_ended,
    job_manifest,
    job_name,
    operator_key,
    token_secret_manifest,
    trial_manifest,
)
from hwtune.engine import StudyConfig
from hwtune.engine.config import pool_catalog
from hwtune.backends.reporting import engine_refusals_as_protocol_errors
from hwtune.engine.errors import UnknownTrialError as EngineUnknownTrial
from hwtune.engine.events import EventKind
from hwtune.engine.study import Study
from hwtune.engine.tuner import Tuner
from hwtune.optimize.context import note_event
from hwtune.optimize.pareto import default_reference_point, hypervolume
from hwtune.report.protocol import (
    ProtocolError,
    ReportPayload,
    ReportReply,
    UnknownTrialError,
)
from hwtune.report.server import ReplyMemo
from hwtune.trainer.env import TrialEnv

__all__ = ["MAX_CURVE_POINTS", "MAX_FRONT_POINTS", "StudyRunner", "StudyUnavailable",
           "trial_status_of"]

log = logging.getLogger(__name__)


# At most one TuningTrial status write per trial this often, unless the trial halts (a view
# of the log: ``kubectl get tt`` lags by this much at most; the log is the record).
TRIAL_STATUS_SECONDS = 15.0
# At a study's end, how long it waits for the Jobs of its last completed trials to finish (so
# they are deleted like every other finished Job) before it says Completed.
EXIT_GRACE_SECONDS = 60.0


class StudyUnavailable(ProtocolError):
    """The study is loading (or gone): the trainer should retry (503)."""

    status = 503


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class StudyRunner:
    """Runs one study. ``await load()``, then ``await run()`` until it returns (the study ended)
    or is cancelled (the operator stops: trials keep running and are adopted by the next one)."""

    def __init__(self, api: KubeApi, *, namespace: str, name: str, uid: str,
                 spec: Mapping[str, Any], generation: int | None = None, report_url: str,
                 retry_limit: int = 3, status_interval: float = 1.0,
                 effect_concurrency: int = 48, lease_seconds: float | None = None,
                 trial_status_interval: float = TRIAL_STATUS_SECONDS,
                 launch_pacer: TokenBucket | None = None,
                 exit_grace: float = EXIT_GRACE_SECONDS) -> None:
        self.api = api
        self.namespace, self.name, self.uid = namespace, name, uid
        self.spec = spec
        self.generation = generation
        self.report_url = report_url.rstrip("/")
        self.retry_limit = retry_limit
        self.status_interval = status_interval
        self.trial_status_interval = trial_status_interval
        self.exit_grace = exit_grace
        self.ready = False
        self.finished: str | None = None  # why the study ended
        self._drained = False  # the ended study's log and effects are done: it may say Completed
        self.failed: str | None = None
        self.config: StudyConfig | None = None
        self.study: Study | None = None
        self.backend: KubernetesBackend | None = None
        self.tuner: Tuner | None = None
        self.log: StudyLog | None = None
        self._key = b""
        self._memo = ReplyMemo()
        self._memo_seq: dict[str, int] = {}
        # Every answered report, by (trial, resource): a late retry from an older launch's pod
        # (its answer lost in a crash, the trial promoted meanwhile) gets its logged answer.
        self._answers: dict[tuple[str, int], tuple[dict[str, float], ReportReply, int]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake = asyncio.Event()
        self._chains: dict[int, asyncio.Task[None]] = {}
        self._job_uids: dict[int, tuple[int, str]] = {}  # trial -> (launch, uid) of Jobs made
        self._collected: dict[int, int] = {}  # trial -> launch whose finished Job is deleted
        self._job_reads: dict[int, asyncio.Task[None]] = {}  # per trial: pods read, then its Job
        self._job_seen: dict[int, tuple[int, int, int, int]] = {}  # launch, failed, ready, term.
        self._effects = asyncio.Semaphore(effect_concurrency)
        # Launches wait for a token (shared by the operator's studies) before they take an
        # effect slot: a rung wave's launches never hold the slots its deletions need.
        self._launch_pacer = launch_pacer
        # Decisions that found the engine's lock held wait for it here, not in the event loop.
        self._decider: ThreadPoolExecutor | None = None  # made at the first wait
        self._dirty: set[int] = set()
        self._trial_uids: dict[int, str] = {}
        # trial -> (monotonic time, phase) of its TuningTrial's last status write (or create).
        self._trial_written: dict[int, tuple[float, str | None]] = {}
        self._last_status: dict[str, Any] | None = None
        self._status_key: tuple[Any, ...] | None = None
        # Status writes one at a time: the status task's patch still in flight (its thread is
        # not cancelled with the task) must not land after the final one and undo Completed.
        self._view_lock = asyncio.Lock()
        self._status_final = False
        self.load_seconds: dict[str, float] = {}
        self._lease_keeper: asyncio.Task[None] | None = None
        self._status_next = 0.0
        self._conditions: dict[str, Condition] = {}
        self._tasks: list[asyncio.Task[Any]] = []
        self._notes: list[tuple[str, str, bool]] = []  # (reason, message, warning) to post
        self._budget_noted = False
        self._pod_logs: Any = None  # PodLogCollectors: metricsCollector other than sdk
        # One replica acts for the study at a time (None: unfenced, unit tests' fake API).
        self.lease = StudyLease(api, namespace, name, uid, duration_s=lease_seconds,
                                renew_s=lease_seconds / 5) if lease_seconds else None

    @property
    def involved(self) -> dict[str, str]:
        return {"apiVersion": "hwtune.io/v1alpha1", "kind": "TuningStudy", "name": self.name,
                "namespace": self.namespace, "uid": self.uid}

    @property
    def report_base(self) -> str:
        return f"{self.report_url}/studies/{self.namespace}/{self.name}"

    def poke(self) -> None:
        """Wake the run loop (any thread)."""
        loop = self._loop
        if loop is None:
            return
        try:
            loop.call_soon_threadsafe(self._wake.set)
        except RuntimeError:
            pass

    # -- loading and adoption -----------------------------------------------------------------
    async def _with_transfer(self, config: StudyConfig) -> StudyConfig:
        """transfer.fromStudies: the earlier TuningStudies of this namespace and their
        TuningTrials, read once when the study is loaded (hwtune.backends.kubernetes.transfer).
        A missing or unusable study is a ``SpecError`` at ``spec.transfer.fromStudies``."""
        from hwtune.backends.kubernetes.transfer import load_cluster_studies
        from hwtune.space.errors import SpecError
        from hwtune.transfer import TransferError

        try:
            studies = await asyncio.get_running_loop().run_in_executor(
                None, load_cluster_studies, self.api.client, self.namespace,
                list(config.transfer_from))
        except TransferError as exc:
            raise SpecError("spec.transfer.fromStudies", str(exc)) from None
        config = config.with_transfer_studies(studies)
        config.check_algorithm()  # builds the transfer searcher: unusable studies fail here
        return config

    async def load(self) -> None:
        """Parse the spec, read the key and the log, rebuild the study, adopt running trials.
        A spec or log the study cannot run with sets ``failed`` instead of raising."""
        self._loop = asyncio.get_running_loop()
        if self.lease is not None:
            await self.lease.acquire()  # a standby waits here, answering 503 meanwhile
            # Renewed while loading too: a 20,000-trial study loads for longer than the Lease
            # lasts on a busy machine, and would lose it (and load again, and again).
            self._lease_keeper = asyncio.create_task(self.lease.keep(),
                                                     name=f"lease:{self.name}")
        try:
            await self._load()
        except BaseException:
            await self._stop_lease_keeper()
            raise

    async def _stop_lease_keeper(self) -> None:
        keeper, self._lease_keeper = self._lease_keeper, None
        if keeper is not None:
            keeper.cancel()
            await asyncio.gather(keeper, return_exceptions=True)

    async def _load(self) -> None:
        try:
            pools = await self.api.list_pools()
            self.config = StudyConfig.from_spec(self.spec, catalog=pool_catalog(pools),
                                                require_trial_template=True)
            self.config.check_algorithm()
            if self.config.transfer_from:
                self.config = await self._with_transfer(self.config)
        except ManifestError as exc:  # SpecError is one: every refusal with its field path
            self.failed = "; ".join(str(e) for e in exc.errors) or str(exc)
            return
        self._key = derive_study_key(operator_key(), self.namespace, self.name, self.uid)
        # The TuningTrials (20,000 of them: seconds of API server work) are listed while the
        # log is read and replayed; only uids and the phase shown are used, after adoption.
        trials = asyncio.ensure_future(self.api.list_trials(self.namespace, self.name))
        try:
            await self._load_log(trials)
        finally:
            if not trials.done():
                trials.cancel()
                await asyncio.gather(trials, return_exceptions=True)

    async def _load_log(self, trials: asyncio.Future[list[dict[str, Any]]]) -> None:
        store = self.api.log_store(self.namespace, self.name, self.uid)
        store.fence = self.lease
        t_read = time.perf_counter()
        try:
            chunks = await store.read_chunks()
            t_parse = time.perf_counter()
            # CPU-bound steps in a thread: the loop keeps renewing Leases and answering 503s.
            loaded = await asyncio.to_thread(parse_chunks, chunks)
            del chunks
        except LogCorrupted as exc:
            self.failed = str(exc)
            return
        if self.lease is not None:
            for index in loaded.open_chunks():  # an older writer's next write now conflicts
                await store.stamp(index)
        self.log = StudyLog(store, loaded)
        self.log.attach(self._loop)
        clock = WallClock()  # event times are compared after a restart in another pod
        # The surrogate reads checkpoints where the Jobs save them, and keeps its models per
        # study: namespace/name, so two namespaces' studies of one name never share a model.
        known = {"checkpoint_locator": self._checkpoint_locator,
                 "name": f"{self.namespace}/{self.name}"}
        t_rebuild = time.perf_counter()
        if loaded.events:
            self.study = await asyncio.to_thread(Study.rebuild, self.config, loaded.events,
                                                 clock=clock, **known)
            if self.study.replay_mismatches:
                log.warning("study %s/%s: %d replay differences (the log wins), first: %s",
                            self.namespace, self.name, len(self.study.replay_mismatches),
                            self.study.replay_mismatches[0])
        else:
            self.study = Study(self.config, clock=clock, **known)
        self.backend = KubernetesBackend(last_seq=lambda: self.log.last_seq, wake=self.poke)
        self.tuner = Tuner(self.study, self.backend, poll_seconds=1.0)
        from hwtune.backends.kubernetes.podlog import PodLogCollectors
        self._pod_logs = PodLogCollectors.for_study(self)
        self._adopt(loaded.events)
        self.study.add_listener(self._on_event)
        t_cluster = time.perf_counter()
        # What happened while no operator watched: Jobs that ended, pods that started, Jobs of
        # stopped trials whose deletion was cut short.
        for job in await self.api.list_jobs(self.namespace, self.name):
            self.job_event(job)
            tid = _trial_of(job)
            if tid is not None and 0 <= tid < len(self.study.trials) \
                    and self._collected.get(tid) != _launch_of(job) \
                    and self.study.trial(tid).phase is TrialPhase.STOPPED:
                self.backend.intend(self.backend.delete_intent(
                    tid, self.study.trial(tid).reason, seq=len(loaded.events) - 1))
        for pod in await self.api.list_pods(self.namespace, self.name):
            self.pod_event(pod)
        for trial in await trials:
            try:
                tid = int(trial["spec"]["trialId"])
                self._trial_uids[tid] = trial["metadata"]["uid"]
                shown = trial.get("status") or {}
                record = self.study.trial(tid)
            except (KeyError, TypeError, ValueError, EngineUnknownTrial):
                continue
            # Only views that lag behind the log are rewritten (not 20,000 at every start).
            if shown.get("phase") != record.phase.value \
                    or shown.get("resource", 0) != record.last_resource:
                self._dirty.add(tid)
                # Due now, whatever its re-run launch says (views are never left behind).
                self._trial_written[tid] = (-math.inf, shown.get("phase"))
        await self._restore_missing_trials()
        self._dirty.update(t.trial_id for t in self.study.active_trials())
        self.ready = True
        done = time.perf_counter()
        # The rebuild's cost by step (benchmarks/operator_large.py reads this line).
        self.load_seconds = {"read": t_parse - t_read, "parse": t_rebuild - t_parse,
                             "rebuild": t_cluster - t_rebuild, "cluster": done - t_cluster,
                             "total": done - t_read}
        log.info("study %s/%s loaded: %d events, %d trials, %d log chunks (%d bytes); "
                 "seconds: read %.2f, parse %.2f, rebuild %.2f, cluster state %.2f, total %.2f",
                 self.namespace, self.name, len(loaded.events), len(self.study.trials),
                 len(loaded.sizes), getattr(store, "read_bytes", 0), *self.load_seconds.values())

    async def _restore_missing_trials(self) -> None:
        """Every logged trial gets its TuningTrial. An active one's re-run launch intent creates
        it (and keeps or makes its Job); a halted one whose TuningTrial create was lost (the
        operator died between logging the launch and creating it, and the trial was stopped
        meanwhile) gets it here, with no Secret and no Job: nothing of it runs any more."""
        assert self.study is not None and self.backend is not None
        for record in self.study.trials:
            tid = record.trial_id
            if tid in self._trial_uids or record.phase.is_active():
                continue
            with self.backend.lock:
                intent = self.backend.launch_intent(tid, resume=False)
                launches = self.backend.trial_state(tid).launches
            trial = await self.api.create_trial(trial_manifest(
                namespace=self.namespace, study=self.name, study_uid=self.uid, trial_id=tid,
                config=intent.config or {}, hardware=intent.hardware,
                target_resource=intent.target_resource,
                resume_from=checkpoint_uri(self._checkpoints, self.name, tid)
                if launches > 1 else None))
            self._trial_uids[tid] = trial["metadata"]["uid"]
            self._dirty.add(tid)
            log.info("study %s/%s: trial %d (%s) had no TuningTrial; recreated it",
                     self.namespace, self.name, tid, record.phase.value)

    def _adopt(self, events: list[dict[str, Any]]) -> None:
        assert self.study is not None and self.backend is not None
        launches: dict[int, int] = {}
        last_launch: dict[int, dict[str, Any]] = {}
        last_observed: dict[int, dict[str, Any]] = {}
        for event in events:
            tid = int(event["trialId"])
            if event["kind"] in (EventKind.CREATED.value, EventKind.RESUMED.value):
                launches[tid] = launches.get(tid, 0) + 1
                last_launch[tid] = event
            elif event["kind"] == EventKind.OBSERVED.value:
                last_observed[tid] = event
                if event.get("decision"):
                    self._answers[(str(tid), int(event["resource"]))] = (
                        {k: v for k, v in event["metrics"].items() if k not in BUILTIN_METRICS},
                        ReportReply(Decision(event["decision"]), event.get("reason", "")),
                        int(event["seq"]))
        for record in self.study.trials:
            tid = record.trial_id
            start = last_launch[tid]
            self.backend.adopt(tid, record.phase, launches[tid], start.get("maxResource"))
            if record.phase.is_active():
                self.backend.intend(self.backend.launch_intent(
                    tid, resume=launches[tid] > 1, seq=int(start["seq"])))
            observed = last_observed.get(tid)
            if observed is not None and observed.get("decision"):
                metrics = {k: v for k, v in observed["metrics"].items() if k not in BUILTIN_METRICS}
                reason = observed.get("reason", "")
                self._memo.remember(str(tid), ReportPayload(int(observed["resource"]), metrics),
                                    ReportReply(Decision(observed["decision"]), reason))

    def _on_event(self, event: Any) -> None:
        # Called under the engine lock for every new event: log it, mark the trial's view dirty,
        # note what people should see as a Kubernetes Event (posted by the status task).
        assert self.log is not None
        self.log.append(event)
        self._dirty.add(event.trial_id)
        tid = event.trial_id
        if event.kind is EventKind.FAILED:
            self._notes.append(("TrialFailed", f"trial {tid}: {event.reason}", True))
        elif event.kind is EventKind.OBSERVED and event.decision is Decision.PAUSE:
            self._notes.append(("Paused", f"trial {tid}: {event.reason}", False))
        elif event.kind is EventKind.STOPPED and event.reason.startswith("budget") \
                and not self._budget_noted:
            self._budget_noted = True
            self._notes.append(("BudgetExhausted", event.reason, True))
        for note in (event.extra or {}).get("notes") or ():  # e.g. a surrogate fallback
            shown = note_event(note)
            if shown is not None:
                self._notes.append(shown)

    # -- the loop -------------------------------------------------------------------------------
    async def run(self) -> str:
        """Run until the study ends; returns why. Cancel to stop without touching trials."""
        if not self.ready and self.failed is None:
            await self.load()
        if self.failed is not None:
            await self._stop_lease_keeper()
            await self._write_status(final=True)
            await self.api.post_event(self.involved, "Failed", self.failed, warning=True)
            return self.failed
        assert self.log is not None and self.tuner is not None
        STATS.ensure_logging()
        self._tasks = [asyncio.create_task(self.log.run(), name=f"log:{self.name}"),
                       asyncio.create_task(self._status_loop(), name=f"status:{self.name}")]
        if self.lease is not None:
            keeper, self._lease_keeper = self._lease_keeper, None
            self._tasks.append(keeper or asyncio.create_task(self.lease.keep(),
                                                             name=f"lease:{self.name}"))
        try:
            while True:
                self._check_tasks()
                if self.lease is not None and self.lease.overdue():
                    # Nothing launched or decided until the Lease is renewed (or found lost).
                    await asyncio.sleep(0.2)
                    continue
                self._dispatch()
                reason = await asyncio.to_thread(self.tuner.step)
                self._dispatch()
                if reason is not None:
                    break
                await wait_event(self._wake, self.tuner.poll_seconds)
                self._wake.clear()
            self.finished = reason
            drain = asyncio.ensure_future(self._drain())
            while not drain.done():  # a lost Lease ends the drain too
                await asyncio.wait({drain}, timeout=0.5)
                if not drain.done():
                    try:
                        self._check_tasks()
                    except BaseException:
                        drain.cancel()
                        raise
            drain.result()
            self._drained = True
            # Trials first: once the study says Completed, every TuningTrial is final too.
            await self._write_trials(final=True)
            await self._write_status(final=True)
            await self._post_notes()
            await self.api.post_event(self.involved, "Completed", reason)
            log.info("study %s/%s ended: %s", self.namespace, self.name, reason)
            return reason
        except BaseException as exc:
            if isinstance(exc, LogFenced) and self.lease is not None:
                # Fenced by another writer: ask the Lease who. A newer incarnation of this pod
                # is noted (LeaseLost), so this one never takes the study back from it.
                with contextlib.suppress(Exception):
                    await self.lease.renew()
            if self.lease is not None and not self.lease.held():
                for chain in list(self._chains.values()):  # no effect after the Lease is gone
                    chain.cancel()
            raise
        finally:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            if self._decider is not None:  # a later report (study ended) makes another
                self._decider.shutdown(wait=False)
                self._decider = None
            if self._pod_logs is not None:
                await self._pod_logs.close()
            if self.lease is not None:
                await self.lease.release()  # a standby takes over now, not at expiry

    def _check_tasks(self) -> None:
        """A helper task that died (the Lease lost, the log fenced) ends the runner."""
        for task in self._tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]

    async def _drain(self) -> None:
        """Wait until the log is stored and every effect done, and the Jobs of the trials that
        completed last have finished and are deleted (at most ``exit_grace`` seconds: their
        pods got their last answer and are exiting; one that does not is left, not killed)."""
        assert self.log is not None
        await self.log.durable(self.log.last_seq)
        deadline = time.monotonic() + self.exit_grace
        while True:
            while self._chains:
                await asyncio.gather(*list(self._chains.values()), return_exceptions=True)
                self._dispatch()
            if not self._uncollected() or time.monotonic() >= deadline:
                return
            await asyncio.sleep(0.2)  # Job events arrive meanwhile (_collect_finished)
            self._dispatch()

    def _uncollected(self) -> list[int]:
        """Completed trials whose Job (made or adopted here) is not deleted yet."""
        assert self.study is not None and self.backend is not None
        with self.backend.lock:
            return [tid for tid, (launch, _) in self._job_uids.items()
                    if self._collected.get(tid) != launch
                    and self.study.trial(tid).phase is TrialPhase.COMPLETED
                    and self.backend.trial_state(tid).launches == launch]

    def _dispatch(self) -> None:
        """Start the effects of the queued intents: in order per trial, trials in parallel."""
        assert self.backend is not None
        for intent in self.backend.take_intents():
            previous = self._chains.get(intent.trial_id)
            task = asyncio.create_task(self._effect(previous, intent))
            self._chains[intent.trial_id] = task
            task.add_done_callback(lambda t, tid=intent.trial_id: self._chain_done(tid, t))

    def _chain_done(self, trial_id: int, task: asyncio.Task[None]) -> None:
        if self._chains.get(trial_id) is task:
            del self._chains[trial_id]

    async def _effect(self, previous: asyncio.Task[None] | None, intent: Intent) -> None:
        if previous is not None:
            await asyncio.gather(previous, return_exceptions=True)
        assert self.log is not None and self.backend is not None
        try:
            await self.log.durable(intent.seq)
            delay = 0.5
            while True:
                try:
                    if intent.kind is IntentKind.LAUNCH and self._launch_pacer is not None \
                            and self._still_current(intent):
                        await self._launch_pacer.take()
                    async with self._effects:
                        if intent.kind is IntentKind.LAUNCH:
                            await self._launch(intent)
                        else:
                            await self._delete(intent)
                    return
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - an API hiccup: the intent is retried
                    log.warning("study %s/%s trial %d: %s failed (%s); retrying in %.1fs",
                                self.namespace, self.name, intent.trial_id, intent.kind.value,
                                exc, delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 10.0)
        finally:
            if intent.kind is IntentKind.LAUNCH:
                self.backend.launch_done()  # room for the tuner's next batch

    # -- effects --------------------------------------------------------------------------------
    @property
    def _checkpoints(self) -> dict[str, Any]:
        spec = self.config.spec.checkpoints if self.config is not None else None
        return spec.to_dict() if spec is not None else {}

    def _checkpoint_locator(self, trial: Any, level: int) -> str | None:
        """The searcher's view of where a trial's checkpoint is: the ``HWTUNE_CHECKPOINT_URI``
        its Jobs save to (one location per trial, overwritten at every level: a reader checks
        the level it finds). Level 0 (a candidate's starting weights) is unknown here."""
        if level < 1 or trial.trial_id < 0:
            return None
        return checkpoint_uri(self._checkpoints, self.name, trial.trial_id)

    @property
    def _template(self) -> dict[str, Any]:
        assert self.config is not None and self.config.spec.trial_template is not None
        return self.config.spec.trial_template.to_dict()

    def _still_current(self, intent: Intent) -> bool:
        assert self.backend is not None
        with self.backend.lock:
            state = self.backend.trial_state(intent.trial_id)
            return state.launches == intent.launch and state.active

    async def _launch(self, intent: Intent) -> None:
        assert self.config is not None
        tid = intent.trial_id
        if _KILL_BEFORE_TRIAL_CREATE:
            await _test_kill_point(self.namespace, self.name, tid)
        name = job_name(self.name, tid)
        resume_from = checkpoint_uri(self._checkpoints, self.name, tid) if intent.resume else None
        trial = await self.api.create_trial(trial_manifest(
            namespace=self.namespace, study=self.name, study_uid=self.uid, trial_id=tid,
            config=intent.config or {}, hardware=intent.hardware,
            target_resource=intent.target_resource, resume_from=resume_from))
        trial_uid = trial["metadata"]["uid"]
        self._trial_uids[tid] = trial_uid
        self._trial_written.setdefault(tid, (time.monotonic(), None))
        self._dirty.add(tid)
        job = None
        if self._still_current(intent):
            # Create first: a trial's first Job usually does not exist yet (a 409 reads it).
            created = await self.api.create_job(job_manifest(
                self._template, self._job_params(intent, trial_uid)))
            if created is not None:
                await self._token_secret(intent, created)
                self._launched(intent, name, created)
                return
        while True:
            job = await self.api.read_job(self.namespace, name)
            if job is not None:
                launch = _launch_of(job)
                if launch >= intent.launch:
                    if launch == intent.launch:
                        # Adopted: its Secret may not exist yet (a crash right after the
                        # Job's create), and the Job may have ended meanwhile.
                        self._job_uids[tid] = (launch, job["metadata"]["uid"])
                        await self._token_secret(intent, job)
                        self.job_event(job)
                    return
                await self.api.delete_job(self.namespace, name, uid=job["metadata"]["uid"])
                await self._wait_job_gone(name, job["metadata"]["uid"])
                continue
            if not self._still_current(intent):
                return  # stopped or superseded before its Job existed
            created = await self.api.create_job(job_manifest(
                self._template, self._job_params(intent, trial_uid)))
            if created is not None:
                await self._token_secret(intent, created)
                self._launched(intent, name, created)
                return

    async def _token_secret(self, intent: Intent, job: Mapping[str, Any]) -> None:
        """The launch's token Secret, owned by its Job (just made or adopted): the GC deletes it
        with the Job. Made right after the Job (an owner needs a uid): the kubelet retries the
        pod's Secret volume until it exists, and the pod is rarely even scheduled by then. A
        409 is success (the content is derived from the key, so it is the same)."""
        await self.api.create_secret(token_secret_manifest(
            namespace=self.namespace, study=self.name, trial_id=intent.trial_id,
            launch=intent.launch, token=derive_token(self._key, intent.trial_id),
            job_uid=job["metadata"]["uid"]))

    def _launched(self, intent: Intent, name: str, job: Mapping[str, Any]) -> None:
        self._job_uids[intent.trial_id] = (intent.launch, job["metadata"]["uid"])
        # Posted by the status task: the launch (and its in-flight slot) does not wait for it.
        what = "Resumed" if intent.resume else "Launched"
        hw = f" on {intent.hardware.pool} x{intent.hardware.gpu_count}" if intent.hardware else ""
        self._notes.append((what, f"trial {intent.trial_id} (launch {intent.launch}){hw}: "
                                  f"Job {name}", False))

    async def _wait_job_gone(self, name: str, uid: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = await self.api.read_job(self.namespace, name)
            if job is None or job["metadata"]["uid"] != uid:
                return
            await asyncio.sleep(0.2)
        raise RuntimeError(f"Job {name} (uid {uid}) still exists {timeout:g}s after its deletion")

    def _job_params(self, intent: Intent, trial_uid: str) -> JobParams:
        assert self.config is not None
        config = self.config
        hardware = intent.hardware
        pool = config.hardware_model.pool(hardware) if hardware is not None else None
        checkpoints = self._checkpoints
        env = TrialEnv(
            trial_id=str(intent.trial_id), study=self.name, params=dict(intent.config or {}),
            hardware=hardware, resource_name=config.fidelity.resource,
            target_resource=intent.target_resource, max_resource=config.max_resource,
            resume=intent.resume, reported_resource=intent.reported_resource,
            report_url=self.report_base, report_token=None,
            checkpoint_uri=checkpoint_uri(checkpoints, self.name, intent.trial_id))
        return JobParams(
            namespace=self.namespace, study=self.name, trial_id=intent.trial_id,
            trial_uid=trial_uid, launch=intent.launch, env=env, hardware=hardware,
            node_selector=dict(pool.node_selector) if pool else {},
            tolerations=tuple(pool.tolerations) if pool else (),
            gpu_pool=pool is not None and pool.gpu_type.lower() != "cpu",
            retry_limit=self.retry_limit,
            checkpoint_claim=checkpoints.get("persistentVolumeClaim"),
            checkpoint_mount=checkpoints.get("path"))

    async def _delete(self, intent: Intent) -> None:
        name = job_name(self.name, intent.trial_id)
        known = self._job_uids.get(intent.trial_id)
        if known is not None and known[0] == intent.launch:
            uid = known[1]  # this runner made it: no read (the uid guards a newer Job)
        else:
            job = await self.api.read_job(self.namespace, name)
            if job is None or _launch_of(job) > intent.launch:
                return
            uid = job["metadata"]["uid"]
        await self.api.delete_job(self.namespace, name, uid=uid)
        if intent.cleanup:
            return  # a finished Job: nothing for people to see
        self._notes.append(("Stopped", f"trial {intent.trial_id}: {intent.reason or 'stopped'}; "
                                       f"Job {name} deleted", False))

    # -- what the cluster reports -----------------------------------------------------------------
    def job_event(self, job: Mapping[str, Any],
                  pods: list[dict[str, Any]] | None = None) -> None:
        """A Job of the study changed. Pods are not watched (their events were most of the
        operator's work): the Job's status says when the trial runs and ends. A trial's pods
        are read only when its Job says one of them failed, is terminating or stopped being
        ready (what it ran counts for a failed Job's cost; a disruption is counted), before
        the Job event is applied; a trial's Job events stay in order behind that read.
        ``pods``: the trial's pods just listed by the caller (the log follower, at a Job's
        end), used instead of a read of its own."""
        if self.backend is None:
            return
        if self._pod_logs is not None:
            # Log-collected studies follow each pod's log from when its Job says it is ready,
            # and hand a Job's end to the engine only once its pods' logs are read.
            self._pod_logs.job_changed(job)
            if self._pod_logs.hold_job(job):
                return
        tid = _trial_of(job)
        need = tid is not None and self._pods_needed(tid, job)
        pending = self._job_reads.get(tid) if tid is not None else None
        if tid is not None and (pending is not None or need):
            task = asyncio.get_running_loop().create_task(
                self._job_with_pods(pending, tid, job, need, pods))
            self._job_reads[tid] = task
            task.add_done_callback(lambda t, tid=tid: self._job_read_done(tid, t))
            return
        if self.backend.job_changed(job):
            self.poke()
        self._collect_finished(job)

    def _collect_finished(self, job: Mapping[str, Any]) -> None:
        """A finished Job (Complete or Failed) of its trial's last launch, the trial halted in
        the log (completed, stopped or paused), is deleted: the GC takes its pod and its token
        Secret with it. What it ran is in the log and its TuningTrial keeps the record, so a
        20,000-trial study leaves 20,000 TuningTrials, not 20,000 Jobs, pods and Secrets too.
        A failed trial's Job is kept (its pods' logs say why; budget.maxFailedTrials bounds
        them). Deleted once the log holds every event up to now (the halt among them); a
        paused trial's next launch makes a new Job and Secret, and its checkpoint is not a
        Kubernetes object."""
        assert self.backend is not None and self.study is not None and self.log is not None
        tid = _trial_of(job)
        if tid is None or not job_ended(job):
            return
        launch = _launch_of(job)
        uid = (job.get("metadata") or {}).get("uid")
        if not uid or self._collected.get(tid) == launch:
            return
        with self.backend.lock:
            if not 0 <= tid < len(self.study.trials):
                return
            phase = self.study.trial(tid).phase
            if phase.is_active() or phase is TrialPhase.FAILED \
                    or self.backend.trial_state(tid).launches != launch:
                return
            self._collected[tid] = launch
            self._job_uids[tid] = (launch, uid)  # deleted by this uid, without a read
            self.backend.intend(self.backend.delete_intent(tid, "finished",
                                                           seq=self.log.last_seq, cleanup=True))

    def _pods_needed(self, tid: int, job: Mapping[str, Any]) -> bool:
        assert self.backend is not None
        status = job.get("status") or {}
        failed = int(status.get("failed") or 0)
        ready = int(status.get("ready") or 0)
        terminating = int(status.get("terminating") or 0)
        launch = _launch_of(job)
        seen = self._job_seen.get(tid)
        if seen is None or seen[0] != launch:
            seen = (launch, 0, 0, 0)
        self._job_seen[tid] = (launch, failed, ready, terminating)
        if not self.backend.is_current(job):
            return False
        ended_badly = any(c.get("type") == "Failed" and c.get("status") == "True"
                          for c in status.get("conditions") or [])
        return (ended_badly or failed > seen[1] or terminating > seen[3]
                or (seen[2] > 0 and ready == 0))

    async def _job_with_pods(self, previous: asyncio.Task[None] | None, tid: int,
                             job: Mapping[str, Any], need: bool,
                             pods: list[dict[str, Any]] | None = None) -> None:
        assert self.backend is not None
        if previous is not None:
            await asyncio.gather(previous, return_exceptions=True)
        if need and pods is None:
            try:
                pods = await self.api.list_pods(self.namespace, self.name, trial=tid)
            except Exception as exc:  # noqa: BLE001 - the Job event still counts without them
                log.warning("study %s/%s trial %d: reading its pods failed: %s", self.namespace,
                            self.name, tid, exc)
                pods = []
        if need:
            for pod in pods or []:
                self.pod_event(pod)
        if self.backend.job_changed(job):
            self.poke()
        self._collect_finished(job)

    def _job_read_done(self, tid: int, task: asyncio.Task[None]) -> None:
        if self._job_reads.get(tid) is task:
            del self._job_reads[tid]

    def pod_event(self, pod: Mapping[str, Any]) -> None:
        if self._pod_logs is not None:
            self._pod_logs.pod_event(pod)
        if self.backend is not None and self.backend.pod_changed(pod):
            self.poke()

    # -- the report endpoint's sink ---------------------------------------------------------------
    def expected_token(self, trial: str) -> str | None:
        if not self.ready or (self.lease is not None and not self.lease.held()):
            raise StudyUnavailable(f"study {self.namespace}/{self.name} is loading; retry")
        assert self.study is not None
        try:
            tid = int(trial)
        except ValueError:
            return None
        if not 0 <= tid < len(self.study.trials):
            return None
        return derive_token(self._key, tid)

    async def submit_report(self, trial: str, payload: ReportPayload) -> ReportReply:
        assert self.backend is not None and self.study is not None and self.log is not None
        replay = self._memo.replay(trial, payload)
        if replay is not None:
            await self._durable(self._memo_seq.get(trial, -1))
            return replay
        # The engine decides under its lock. Free (the usual case), this event loop takes it
        # at once; held (the tuner launching a batch, a status snapshot), the decision waits in
        # a thread of its own, so this loop (every other report, the watches, the log writer)
        # never blocks on it.
        lock = self.backend.lock
        began = time.perf_counter()
        if lock.acquire(blocking=False):
            try:
                reply, seq, fresh = self._decide(trial, payload)
            finally:
                lock.release()
        else:
            STATS.count("report.lock_busy")
            if self._decider is None:
                self._decider = ThreadPoolExecutor(max_workers=1,
                                                   thread_name_prefix="hwtune-decide")
            reply, seq, fresh = await asyncio.get_running_loop().run_in_executor(
                self._decider, self._decide, trial, payload)
        decided = time.perf_counter()
        STATS.time("report.decide", decided - began)
        if seq is None:
            return reply  # not recorded (a level the study already holds): nothing to persist
        if fresh:
            self.poke()
        await self._durable(seq)  # write-ahead: the decision is stored before it is told
        done = time.perf_counter()
        STATS.time("report.durable", done - decided)
        STATS.time("report.total", done - began)
        return reply

    def _decide(self, trial: str, payload: ReportPayload) -> tuple[ReportReply, int | None, bool]:
        """The engine's decision on a report: (reply, log seq to await, new decision?)."""
        assert self.backend is not None and self.study is not None and self.log is not None
        tid = int(trial)
        with self.backend.lock:
            # Under the lock: a retry that raced its original (the client timed out while the
            # original waited for the lock), or a late one from an older launch, gets the
            # answer the log holds, not a 409.
            answered = self._answers.get((trial, payload.resource))
            if answered is not None and answered[0] == dict(payload.metrics):
                return answered[1], answered[2], False
            record = self.study.trial(tid) if 0 <= tid < len(self.study.trials) else None
            if record is not None and record.phase.is_active() \
                    and payload.resource <= record.last_resource:
                # A pod the Job replaced (eviction, crash) resumed from an older checkpoint
                # with the env of its launch: the study holds this level; let it go on.
                return ReportReply(Decision.CONTINUE,
                                   f"{self.config.fidelity.resource} {payload.resource} is "
                                   "already recorded"), None, False
            try:
                with engine_refusals_as_protocol_errors():
                    decision = self.backend._deliver_report(tid, payload.resource,
                                                            payload.metrics)
            except BackendError as exc:
                raise UnknownTrialError(str(exc)) from None
            seq = self.log.last_seq
            reason = self.study.trial(tid).reason if decision.halts else ""
            if decision is Decision.STOP \
                    and self.study.trial(tid).phase is not TrialPhase.COMPLETED:
                self.backend.intend(self.backend.delete_intent(tid, reason, seq=seq))
            reply = ReportReply(decision, reason)
            self._memo.remember(trial, payload, reply)
            self._memo_seq[trial] = seq
            self._answers[(trial, payload.resource)] = (dict(payload.metrics), reply, seq)
            return reply, seq, True

    async def _durable(self, seq: int) -> None:
        assert self.log is not None
        try:
            await self.log.durable(seq)
        except LogFenced:  # never stored here: not told; the replica that acts now decides
            raise StudyUnavailable(f"study {self.namespace}/{self.name}: this replica stopped "
                                   "acting for it; retry") from None

    # -- status -------------------------------------------------------------------------------
    async def _status_loop(self) -> None:
        while True:
            try:
                await self._write_status()
                await self._write_trials()
                await self._post_notes()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - status is a view; the next round retries
                log.warning("study %s/%s: status update failed: %s", self.namespace, self.name, exc)
            await asyncio.sleep(self.status_interval)

    async def _post_notes(self) -> None:
        notes, self._notes = self._notes, []
        notes = _grouped_notes(notes)
        for start in range(0, len(notes), 16):
            await asyncio.gather(*(self.api.post_event(self.involved, reason, message,
                                                       warning=warning)
                                   for reason, message, warning in notes[start:start + 16]))

    def _condition(self, type_: str, status: bool, reason: str, message: str = "") -> None:
        value = "True" if status else "False"
        old = self._conditions.get(type_)
        if old is not None and old.status.value == value and old.reason == reason \
                and old.message == message:
            return
        when = old.last_transition_time if old is not None and old.status.value == value \
            else dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
        self._conditions[type_] = Condition(type=type_, status=value, reason=reason,
                                            message=message[:1024], last_transition_time=when,
                                            observed_generation=self.generation)

    def study_status(self, *, final: bool = False) -> dict[str, Any]:
        """The TuningStudy status as the engine sees it now (bounded size)."""
        if self.failed is not None:
            self._condition("Ready", False, "Invalid", self.failed)
            self._condition("Failed", True, "Invalid", self.failed)
            status = TuningStudyStatus(phase=StudyPhase.FAILED, message=self.failed,
                                       conditions=list(self._conditions.values()),
                                       observed_generation=self.generation)
            return status.model_dump(mode="json", by_alias=True, exclude_none=True)
        assert self.study is not None and self.backend is not None and self.config is not None
        with self.backend.lock:
            summary = self.study.summary()
            block = self.study.stop_reason() or self.study.new_trial_block()
            failure = self.study.failure_reason()
            start = self.study.start_time
            configs = {p.trial_id: self.study.trial(p.trial_id).config for p in summary.front}
        counts = summary.counts
        objectives = self.config.objectives
        front = sorted(summary.front, key=lambda p: (
            objectives[0].loss(p.values[objectives[0].metric]), p.trial_id))
        hv = None
        if summary.front:
            losses = [[o.loss(p.values[o.metric]) for o in objectives] for p in summary.front]
            try:
                hv = float(hypervolume(losses, default_reference_point(losses)))
            except ValueError:
                hv = None
        # Completed only once every effect is done (a status write meanwhile says Running):
        # a restarted operator must still find the study to finish, not a Completed one.
        done = self.finished is not None and (final or self._drained)
        # A study that ended because it failed (maxFailedTrials, trainers that never report)
        # says so: Failed, with the engine's reason as its message.
        phase = (StudyPhase.FAILED if failure else StudyPhase.COMPLETED) if done else (
            StudyPhase.RUNNING if self.finished or counts.get("Pending", 0)
            + counts.get("Running", 0) else StudyPhase.PENDING)
        self._condition("Ready", True, "Loaded", "the study log is loaded; trials are adopted")
        self._condition("Running", phase is StudyPhase.RUNNING,
                        "TrialsRunning" if phase is StudyPhase.RUNNING else "NoTrialRunning")
        self._condition("BudgetExhausted", block is not None,
                        "BudgetReached" if block else "WithinBudget", block or "")
        self._condition("Completed", done, "StudyEnded" if done else "InProgress",
                        self.finished or "" if done else "")
        if done and failure:
            self._condition("Failed", True, "TrialsFailed", failure)
        else:
            self._condition("Failed", False, "NoFailure")

        def hw(h: Any) -> HardwareChoice | None:
            return None if h is None else HardwareChoice.model_validate(
                {"pool": h.pool, "gpuCount": h.gpu_count})

        def point(p: Any) -> FrontPoint:
            return FrontPoint(trial=job_name(self.name, p.trial_id), trial_id=p.trial_id,
                              hardware=hw(p.hardware), parameters=dict(configs[p.trial_id]),
                              objectives=dict(p.values))

        def size(p: Any) -> int:  # JSON bytes of its FrontPoint (plain: no model built)
            hardware = None if p.hardware is None else {"pool": p.hardware.pool,
                                                        "gpuCount": p.hardware.gpu_count}
            return json_bytes({"trial": job_name(self.name, p.trial_id), "trialId": p.trial_id,
                               "hardware": hardware, "parameters": configs[p.trial_id],
                               "objectives": p.values}) + 1

        # A bounded selection of a large front (hwtune.backends.kubernetes.status).
        listed = [point(p) for p in bounded_front(front, lambda p: p.values, objectives, size)]
        omitted = len(front) - len(listed)
        status = TuningStudyStatus(
            phase=phase, conditions=list(self._conditions.values()),
            observed_generation=self.generation,
            trials=TrialCounts(total=sum(counts.values()),
                               **{k.lower(): v for k, v in counts.items()}),
            spent_cost_usd=round(summary.spend.cost_usd, 6),
            gpu_hours=round(summary.spend.gpu_hours, 6),
            hypervolume=hv if hv is not None and math.isfinite(hv) else None,
            front_size=len(summary.front),
            pareto_front=listed,
            front_omitted=omitted,
            front_source=front_source(self.name) if omitted else None,
            best_per_objective={m: BestValue(trial=job_name(self.name, p.trial_id),
                                             trial_id=p.trial_id, value=p.values[m],
                                             hardware=hw(p.hardware))
                                for m, p in summary.best.items()},
            start_time=_iso(start),
            completion_time=_iso(time.time()) if final and self.finished else None,
            message=self.finished or (f"{summary.reports} reports" if summary.reports else None),
        )
        return status.model_dump(mode="json", by_alias=True, exclude_none=True)

    async def _write_status(self, *, final: bool = False) -> None:
        async with self._view_lock:
            if self._status_final and not final:
                return  # the final status is written: nothing may replace it
            await self._write_status_now(final=final)
            if final:
                self._status_final = True

    async def _write_status_now(self, *, final: bool) -> None:
        # The summary (the front over every trial) is computed under the engine lock: 0.2 s at
        # 20,000 trials. Only when the log moved, and at most every ~20x its cost, so the lock
        # stays free for reports (the status is a view; the log is the record).
        key = (self.log.last_seq if self.log is not None else -1, self.finished, self._drained,
               self.failed, self.generation, final)
        now = time.monotonic()
        if not final and self._status_key is not None and (
                key == self._status_key or now < self._status_next):
            return
        status = self.study_status(final=final)
        self._status_next = now + min(30.0, 20 * (time.monotonic() - now))
        if status != self._last_status:
            await self.api.patch_study_status(self.namespace, self.name, status)
            self._last_status = status
        self._status_key = key  # written (a failed patch is retried next round)

    def trial_status(self, trial_id: int) -> dict[str, Any]:
        assert self.study is not None and self.backend is not None
        return trial_status_of(self.study, trial_id, self.name, self._checkpoints,
                               lock=self.backend.lock)

    def _trial_status_due(self, tid: int, now: float) -> bool:
        """A TuningTrial's status is a view of the log: written when the trial halts (stopped,
        paused, completed, failed), else at most once per ``trial_status_interval`` (its
        creation counts as a write): a trial's launch, its Job starting and a report a few
        seconds apart make one API write, not three. Never written after a restart: now."""
        written = self._trial_written.get(tid)
        if written is None:
            return True
        assert self.study is not None
        try:
            phase = self.study.trial(tid).phase
        except EngineUnknownTrial:
            return True
        if phase.value != written[1] and not phase.is_active():
            return True
        return now - written[0] >= self.trial_status_interval

    async def _write_trials(self, *, final: bool = False) -> None:
        async with self._view_lock:  # a final trial status is never overtaken either
            await self._write_trials_now(final=final)

    async def _write_trials_now(self, *, final: bool) -> None:
        now = time.monotonic()
        dirty = [t for t in self._dirty if t in self._trial_uids
                 and (final or self._trial_status_due(t, now))]
        self._dirty.difference_update(dirty)

        async def one(tid: int) -> None:
            status = self.trial_status(tid)
            try:
                await self.api.patch_trial_status(self.namespace, job_name(self.name, tid),
                                                  status)
                self._trial_written[tid] = (time.monotonic(), status.get("phase"))
            except ApiError as exc:
                if exc.status != 404:
                    self._dirty.add(tid)
                    raise

        for start in range(0, len(dirty), 32):
            await asyncio.gather(*(one(t) for t in dirty[start:start + 32]))

    async def flush_status(self) -> None:
        """Write the study's and every changed trial's status now (tests, shutdown)."""
        await self._write_status(final=self.finished is not None)
        await self._write_trials(final=True)
        await self._post_notes()


GROUP_NOTES = 8  # more Events of one reason per status round than this are posted as one


def _grouped_notes(notes: list[tuple[str, str, bool]]) -> list[tuple[str, str, bool]]:
    """One Event per reason for a burst (hundreds of launches a minute: one Event each would
    double the API calls of a launch); each message still names every trial (to 1 KiB)."""
    by_reason: dict[tuple[str, bool], list[str]] = {}
    for reason, message, warning in notes:
        by_reason.setdefault((reason, warning), []).append(message)
    out = []
    for (reason, warning), messages in by_reason.items():
        if len(messages) <= GROUP_NOTES:
            out += [(reason, m, warning) for m in messages]
        else:
            out.append((reason, f"{len(messages)} trials: " + "; ".join(messages), warning))
    return out


def trial_status_of(study: Study, trial_id: int, study_name: str,
                    checkpoints: Mapping[str, Any], *, lock: Any = None) -> dict[str, Any]:
    """A TuningTrial's status as the engine sees the trial (``lock``: the engine's, held while
    reading it); the curve bounded by ``hwtune.backends.kubernetes.status``."""
    with lock if lock is not None else contextlib.nullcontext():
        record = study.trial(trial_id)
        observations = list(record.observations)
        runtime = study.runtime_of(trial_id)
        cost = study.cost_of(trial_id)
        gpu_hours = study.config.hardware_model.gpu_hours(runtime, record.hardware)
        phase, reason, resource = record.phase, record.reason, record.last_resource
    curve = [LearningCurvePoint(resource=o.resource,
                                metrics={k: float(v) for k, v in o.metrics.items()},
                                time=dt.datetime.fromtimestamp(o.time, dt.timezone.utc)
                                .replace(microsecond=0)).model_dump(mode="json", by_alias=True,
                                                                    exclude_none=True)
             for o in observations]
    status = TuningTrialStatus(
        phase=phase, resource=resource,
        learning_curve=bounded_curve(curve, study.config.objectives),
        reports=len(curve),
        runtime_seconds=round(runtime, 3), cost_usd=round(cost, 6),
        gpu_hours=round(gpu_hours, 6), job_name=job_name(study_name, trial_id),
        reason=_camel_reason(phase, reason), message=reason or None,
        last_checkpoint=checkpoint_uri(checkpoints, study_name, trial_id) if resource else None)
    return status.model_dump(mode="json", by_alias=True, exclude_none=True)


# Tests only: "<study>/<trial>[:<seconds>]" SIGKILLs this process when that trial's launch
# effect starts (its launch is in the log, its TuningTrial not yet created), after waiting
# <seconds> (meanwhile the study may log more, e.g. a deadline stopping the trial).
_KILL_BEFORE_TRIAL_CREATE = os.environ.get("HWTUNE_TEST_KILL_BEFORE_TRIAL_CREATE", "")


async def _test_kill_point(namespace: str, study: str, trial_id: int) -> None:
    where, _, delay = _KILL_BEFORE_TRIAL_CREATE.partition(":")
    if where != f"{study}/{trial_id}":
        return
    log.warning("study %s/%s trial %d: test kill point reached; SIGKILL in %ss", namespace,
                study, trial_id, delay or 0)
    await asyncio.sleep(float(delay or 0))
    os.kill(os.getpid(), signal.SIGKILL)


def _trial_of(obj: Mapping[str, Any]) -> int | None:
    try:
        return int(((obj.get("metadata") or {}).get("labels") or {})[LABEL_TRIAL])
    except (KeyError, TypeError, ValueError):
        return None


def _launch_of(obj: Mapping[str, Any]) -> int:
    try:
        return int(((obj.get("metadata") or {}).get("annotations") or {})[LABEL_LAUNCH])
    except (KeyError, TypeError, ValueError):
        return 0


def _camel_reason(phase: TrialPhase, reason: str) -> str | None:
    if phase is TrialPhase.STOPPED:
        return "BudgetExhausted" if reason.startswith("budget") else "StoppedByScheduler"
    if phase is TrialPhase.PAUSED:
        return "PausedByScheduler"
    if phase is TrialPhase.FAILED:
        return "JobFailed" if reason.startswith("Job failed") else "Failed"
    if phase is TrialPhase.COMPLETED:
        return "Completed"
    return None
