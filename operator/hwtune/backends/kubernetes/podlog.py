"""Metrics from an unmodified trainer on the cluster: the operator follows the trial pod's log.

For a study whose ``spec.metricsCollector.kind`` is not ``sdk`` the trainer never calls the
operator, so the operator reads what it prints. ``PodLogCollectors`` (one per study runner)
follows ``GET /api/v1/namespaces/<ns>/pods/<pod>/log?container=<primary>&follow=true`` of
every started pod of a trial's current launch, through the API server (the kubelet, or KWOK's
kubelet-like server on the local control plane), and feeds the bytes to a
``hwtune.report.collector.LineCollector``. Each report it parses goes through
``StudyRunner.submit_report``, the very path of an SDK report: the engine decides under the
lock, the decision is stored in the study log before anything acts on it, a ``stop`` deletes the
trial's Job. There is no SDK to hear a ``pause`` either, so a pause deletes the Job too (the
trainer gets SIGTERM; a resumed launch runs the script again, and the levels the study already
holds are skipped).

Guarantees (docs/coming-from-katib.md, "On the cluster: the operator follows the pod's log"):

- the end of a trial waits for its log: a Job that completes or fails is handed to the engine
  only after every started pod of that launch has been read to its end (a follow stream is
  closed, then one plain read returns the rest), bounded by ``DRAIN_TIMEOUT`` so that a log the
  API cannot serve never holds a trial for ever;
- a stream that breaks (an API server restart, a proxy timeout) is opened again and the bytes
  already read are skipped; after an operator restart a pod's log is read from its start again
  and the levels the study's log already holds are skipped, so no report is lost or counted
  twice;
- one stream per started pod of an active trial (``maxParallelTrials`` bounds them), all on the
  event loop (aiohttp): no thread per stream, nothing blocks the report endpoint.

A trial that ends without a report fails in the engine (``NO_REPORT_REASON`` with the
collector's advice), and a study whose first trials all end so fails, as on the local backend.
"""

from __future__ import annotations

import asyncio
import codecs
import logging
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp

from hwtune.api.records import BUILTIN_METRICS, Decision
from hwtune.backends.kubernetes.manifests import LABEL_LAUNCH, LABEL_TRIAL, job_ended
from hwtune.report.collector import CollectedReport, LineCollector, make_collector
from hwtune.report.protocol import ProtocolError, ReportPayload

__all__ = ["DRAIN_TIMEOUT", "PodLogCollectors"]

log = logging.getLogger(__name__)

DRAIN_TIMEOUT = 30.0  # seconds a trial's end may wait for the rest of its log
RETRY_MIN, RETRY_MAX = 0.25, 5.0  # back-off between attempts to open a log
FINAL_ATTEMPTS = 8  # plain reads tried for the rest of an ended pod's log


class _Gone(Exception):
    """The pod is gone (404): there is nothing more to read."""


class _NotYet(Exception):
    """The log cannot be served yet (400: the container is still starting, a node without
    logs): try again."""


@dataclass
class _PodFollow:
    """One pod being read: its collector and how far its log has been fed to it."""

    trial_id: int
    launch: int
    name: str
    uid: str
    created: str
    collector: LineCollector
    decoder: Any = field(default_factory=lambda: codecs.getincrementaldecoder("utf-8")("replace"))
    offset: int = 0  # bytes of the log already given to the decoder
    done: bool = False  # a halting decision, or the trial ended: read no more
    reports: int = 0
    ended: asyncio.Event = field(default_factory=asyncio.Event)  # the pod (or its Job) ended
    drained: asyncio.Event = field(default_factory=asyncio.Event)  # read to the end
    task: asyncio.Task[None] | None = None
    feeding: asyncio.Future[None] | None = None  # reports of the last chunk being delivered


def _trial_launch(obj: Mapping[str, Any]) -> tuple[int, int] | None:
    meta = obj.get("metadata") or {}
    try:
        return (int((meta.get("labels") or {})[LABEL_TRIAL]),
                int((meta.get("annotations") or {})[LABEL_LAUNCH]))
    except (KeyError, TypeError, ValueError):
        return None


def _started(pod: Mapping[str, Any]) -> bool:
    """The pod's containers ran (or run): it has a log to read."""
    status = pod.get("status") or {}
    if status.get("phase") == "Running":
        return True
    return status.get("phase") in ("Succeeded", "Failed") and any(
        ((c or {}).get("state") or {}).get("terminated") or ((c or {}).get("lastState") or {})
        for c in status.get("containerStatuses") or [])


def _ssl_context(configuration: Any) -> ssl.SSLContext | bool:
    if not str(configuration.host).startswith("https"):
        return False
    if configuration.verify_ssl:
        context = ssl.create_default_context(cafile=configuration.ssl_ca_cert or None)
    else:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if configuration.cert_file:
        context.load_cert_chain(configuration.cert_file, configuration.key_file or None)
    return context


def _auth_headers(configuration: Any) -> dict[str, str]:
    """The bearer token, fresh: the client's in-cluster loader refreshes a rotated token through
    ``refresh_api_key_hook``."""
    hook = getattr(configuration, "refresh_api_key_hook", None)
    if hook is not None:
        hook(configuration)
    header = (configuration.get_api_key_with_prefix("authorization")
              or configuration.get_api_key_with_prefix("BearerToken"))
    if not header:
        return {}
    return {"Authorization": header if " " in header else f"Bearer {header}"}


class PodLogCollectors:
    """Follows the logs of one study's trial pods (see the module doc). Built by
    ``for_study``; the runner calls ``job_changed`` and ``pod_event`` for the Job and pod states
    it sees (it watches no pods), asks ``hold_job`` before
    it hands a Job event to the engine, and ``close`` when it stops."""

    def __init__(self, runner: Any, *, container: str, collector_spec: Any,
                 objectives: list[str], whole_run: Mapping[str, str] | None,
                 max_resource: int) -> None:
        self.runner = runner
        self.container = container
        self._spec = collector_spec
        self._objectives = objectives
        self._whole_run = whole_run
        self._max_resource = max_resource
        self._configuration = runner.api.client.configuration
        self._base = str(self._configuration.host).rstrip("/")
        self._session: aiohttp.ClientSession | None = None
        self._pods: dict[str, _PodFollow] = {}  # pod uid -> follow
        self._held: dict[tuple[int, int], Mapping[str, Any]] = {}  # ended Jobs waiting for logs
        self._draining: dict[tuple[int, int], asyncio.Task[None]] = {}
        self._drained: set[tuple[int, int]] = set()
        self._read_pods: set[str] = set()  # uids of pods read to their end (or gone)
        self._ready_seen: dict[tuple[int, int], int] = {}  # a launch's Job's last ready count
        self._looks: set[asyncio.Task[None]] = set()
        self._closed = False

    @classmethod
    def for_study(cls, runner: Any) -> PodLogCollectors | None:
        """The collectors of ``runner``'s study, or None when its trainers use the SDK."""
        config = runner.config
        spec = config.spec.metrics_collector
        objectives = [o.metric for o in config.objectives if o.metric not in BUILTIN_METRICS]
        if not objectives or make_collector(spec, objectives) is None:
            return None
        template = config.spec.trial_template
        whole_run = None if config.fidelity_declared else {
            o.metric: (o.strategy.value if o.strategy is not None else "latest")
            for o in config.spec.objectives}
        return cls(runner, container=template.primary_container().name, collector_spec=spec,
                   objectives=objectives, whole_run=whole_run, max_resource=config.max_resource)

    # -- what the runner tells ------------------------------------------------------------------
    def _current(self, trial_id: int, launch: int) -> bool:
        backend = self.runner.backend
        with backend.lock:
            state = backend._trials.get(trial_id)
            return state is not None and state.active and state.launches == launch

    def pod_event(self, pod: Mapping[str, Any]) -> None:
        """A trial pod changed: follow it once it has started; note its end."""
        if self._closed:
            return
        ids = _trial_launch(pod)
        meta = pod.get("metadata") or {}
        uid = meta.get("uid")
        if ids is None or not uid:
            return
        follow = self._pods.get(uid)
        if follow is None:
            if uid in self._read_pods or ids in self._drained or not _started(pod) \
                    or not self._current(*ids):
                return
            follow = _PodFollow(ids[0], ids[1], meta.get("name", ""), uid,
                                str(meta.get("creationTimestamp") or ""),
                                make_collector(self._spec, self._objectives))
            self._pods[uid] = follow
            follow.task = asyncio.get_running_loop().create_task(
                self._follow(follow), name=f"podlog:{self.runner.name}/{follow.name}")
        phase = (pod.get("status") or {}).get("phase")
        if phase in ("Succeeded", "Failed") or meta.get("deletionTimestamp"):
            follow.ended.set()

    def job_changed(self, job: Mapping[str, Any]) -> None:
        """Pods are not watched (the runner reads Jobs only): when a current launch's Job
        counts a new ready pod, list that trial's pods once and follow the started ones."""
        if self._closed or job_ended(job):
            return
        ids = _trial_launch(job)
        if ids is None:
            return
        ready = int((job.get("status") or {}).get("ready") or 0)
        seen = self._ready_seen.get(ids, 0)
        self._ready_seen[ids] = ready
        if ready <= seen or not self._current(*ids):
            return
        task = asyncio.get_running_loop().create_task(
            self._look(ids), name=f"podlog-look:{self.runner.name}/{ids[0]}")
        self._looks.add(task)
        task.add_done_callback(self._looks.discard)

    async def _list_pods(self, trial_id: int, timeout: float) -> list[dict[str, Any]] | None:
        """The trial's pods (``KubeApi.list_pods``, as the runner reads them), or None when the
        API could not say within ``timeout`` (logged; the caller goes on without them)."""
        try:
            async with asyncio.timeout(timeout):
                return await self.runner.api.list_pods(self.runner.namespace, self.runner.name,
                                                       trial=trial_id)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - ApiError, a timeout, a reset connection
            log.warning("study %s/%s trial %d: could not list its pods (%s)",
                        self.runner.namespace, self.runner.name, trial_id,
                        str(exc) or type(exc).__name__)
            return None

    async def _look(self, ids: tuple[int, int]) -> None:
        pods = await self._list_pods(ids[0], 15)
        if pods is None:
            self._ready_seen.pop(ids, None)  # the next Job event looks again
            return
        for pod in pods:
            if _trial_launch(pod) == ids:
                self.pod_event(pod)

    def hold_job(self, job: Mapping[str, Any]) -> bool:
        """True when ``job`` ended but its pods' logs are not read to the end yet: the runner
        must not hand it to the engine now; it is handed back (``runner.job_event``) once they
        are, or after ``DRAIN_TIMEOUT``."""
        if self._closed or not job_ended(job):
            return False
        ids = _trial_launch(job)
        if ids is None or ids in self._drained or not self._current(*ids):
            return False
        self._held[ids] = job
        if ids not in self._draining:
            self._draining[ids] = asyncio.get_running_loop().create_task(
                self._drain(*ids), name=f"podlog-drain:{self.runner.name}/{ids[0]}")
        return True

    async def close(self) -> None:
        self._closed = True
        tasks = [f.task for f in self._pods.values() if f.task is not None]
        tasks += [f.feeding for f in self._pods.values() if f.feeding is not None]
        tasks += list(self._draining.values()) + list(self._looks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    # -- HTTP -----------------------------------------------------------------------------------
    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=_ssl_context(self._configuration), limit=0),
                timeout=aiohttp.ClientTimeout(total=None, connect=10, sock_connect=10))
        return self._session

    async def _read(self, follow: _PodFollow, *, stream: bool) -> None:
        """One GET of the log: skip what was read before, feed the rest. Returns when the
        server ends the response (at once without ``stream``)."""
        query = {"container": self.container}
        if stream:
            query["follow"] = "true"
        url = (f"{self._base}/api/v1/namespaces/{quote(self.runner.namespace)}/pods/"
               f"{quote(follow.name)}/log?{urlencode(query)}")
        timeout = aiohttp.ClientTimeout(total=None if stream else 60, connect=10,
                                        sock_connect=10)
        async with self._client().get(url, headers=_auth_headers(self._configuration),
                                      timeout=timeout) as response:
            if response.status == 404:
                raise _Gone(await response.text())
            if response.status != 200:
                raise _NotYet(f"HTTP {response.status}: {(await response.text())[:300]}")
            skip = follow.offset
            async for chunk in response.content.iter_any():
                if skip:
                    if len(chunk) <= skip:
                        skip -= len(chunk)
                        continue
                    chunk, skip = chunk[skip:], 0
                follow.offset += len(chunk)
                found = follow.collector.feed_text(follow.decoder.decode(chunk))
                if found:
                    # These bytes count as read: their reports must all be delivered even when
                    # the stream is cancelled now (the pod ended), or the rest read after it
                    # would skip them. The caller waits for ``feeding`` before reading on.
                    follow.feeding = asyncio.ensure_future(self._feed(follow, found))
                    await asyncio.shield(follow.feeding)
                if follow.done:
                    return

    # -- following one pod ------------------------------------------------------------------------
    async def _follow(self, follow: _PodFollow) -> None:
        delay = RETRY_MIN
        final_attempts = 0
        try:
            while not follow.done and not self._closed:
                if not self._current(follow.trial_id, follow.launch):
                    return  # stopped, failed or superseded: its log says nothing more
                final = follow.ended.is_set()
                try:
                    if final:
                        await self._read(follow, stream=False)
                        await self._finish(follow)
                        self._read_pods.add(follow.uid)
                        return
                    reading = asyncio.ensure_future(self._read(follow, stream=True))
                    ended = asyncio.ensure_future(follow.ended.wait())
                    try:
                        await asyncio.wait({reading, ended}, return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        ended.cancel()
                        if not reading.done():
                            reading.cancel()  # the pod ended: one plain read takes the rest
                        await asyncio.gather(reading, return_exceptions=True)
                        if follow.feeding is not None:  # what was read is delivered first
                            await asyncio.gather(follow.feeding, return_exceptions=True)
                    if reading.done() and not reading.cancelled() \
                            and reading.exception() is not None:
                        raise reading.exception()  # type: ignore[misc]
                    delay = RETRY_MIN  # read until the server closed it: open it again
                except _Gone:
                    self._read_pods.add(follow.uid)
                    return
                except (_NotYet, aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                    if final:
                        final_attempts += 1
                        if final_attempts >= FINAL_ATTEMPTS:
                            log.warning("study %s/%s pod %s: the rest of its log could not be "
                                        "read (%s)", self.runner.namespace, self.runner.name,
                                        follow.name, exc)
                            return
                    log.debug("pod %s log: %s; retrying in %.2fs", follow.name, exc, delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, RETRY_MAX)
                    continue
                await asyncio.sleep(RETRY_MIN)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - one pod's trouble must not end the study runner
            log.exception("study %s/%s pod %s: following its log failed", self.runner.namespace,
                          self.runner.name, follow.name)
        finally:
            follow.drained.set()
            # Read to its end, or nothing more to read: forget it (a 20,000-trial study keeps
            # no collector per finished pod, only its uid in _read_pods).
            if self._pods.get(follow.uid) is follow:
                del self._pods[follow.uid]

    async def _finish(self, follow: _PodFollow) -> None:
        """The whole log was read: its last line (no newline needed) and, for a study without
        fidelity, the one report of the whole run."""
        found = follow.collector.feed_text(follow.decoder.decode(b"", final=True))
        found += follow.collector.close()
        await self._feed(follow, found, final=True)

    async def _feed(self, follow: _PodFollow, found: list[CollectedReport], *,
                    final: bool = False) -> None:
        if self._whole_run is not None:
            summary = follow.collector.summary(self._whole_run) if final else None
            found = [summary] if summary is not None else []
        for report in found:
            if follow.done:
                return
            await self._deliver(follow, report)

    async def _deliver(self, follow: _PodFollow, report: CollectedReport) -> None:
        runner = self.runner
        tid = follow.trial_id
        resource = min(report.resource, self._max_resource)
        with runner.backend.lock:
            if not self._current(tid, follow.launch):
                follow.done = True
                return
            if resource <= runner.study.trial(tid).last_resource:
                return  # read again after a restart, or a pod that ran the script again
        try:
            reply = await runner.submit_report(str(tid), ReportPayload(resource, report.metrics))
        except ProtocolError as exc:
            log.info("study %s/%s trial %d: report at %d from pod %s's log refused: %s",
                     runner.namespace, runner.name, tid, resource, follow.name, exc)
            if not self._current(tid, follow.launch):
                follow.done = True
            return
        follow.reports += 1
        if reply.decision.halts:
            follow.done = True
            if reply.decision is Decision.PAUSE:
                # No SDK to checkpoint and exit: end the pod as a stop does (the resumed launch
                # runs the script again; the levels the study holds are skipped).
                with runner.backend.lock:
                    runner.backend.intend(runner.backend.delete_intent(tid, reply.reason))

    # -- the end of a trial's launch --------------------------------------------------------------
    async def _drain(self, trial_id: int, launch: int) -> None:
        key = (trial_id, launch)
        pods = None
        try:
            # Pods this operator never saw run (it started after them): read them too. A
            # failed listing leaves the logs of the pods seen.
            pods = await self._list_pods(trial_id, DRAIN_TIMEOUT / 3)
            for pod in pods or []:
                if _trial_launch(pod) == key:
                    self.pod_event(pod)
            follows = [f for f in self._pods.values() if (f.trial_id, f.launch) == key]
            for follow in follows:
                follow.ended.set()
            waits = [f.drained.wait() for f in follows]
            if waits:
                try:
                    async with asyncio.timeout(DRAIN_TIMEOUT):
                        await asyncio.gather(*waits)
                except asyncio.TimeoutError:
                    log.warning("study %s/%s trial %d: its logs were not read to the end within "
                                "%gs; ending it with what was read", self.runner.namespace,
                                self.runner.name, trial_id, DRAIN_TIMEOUT)
        finally:
            self._drained.add(key)
            self._draining.pop(key, None)
            self._ready_seen.pop(key, None)
            for uid in [u for u, f in self._pods.items() if (f.trial_id, f.launch) == key]:
                follow = self._pods.pop(uid)
                if follow.task is not None and not follow.task.done():
                    follow.task.cancel()
            job = self._held.pop(key, None)
        if job is not None and not self._closed:
            # With the pods just listed: a failed Job's cost and disruption are read from
            # them, so the runner does not list the same trial's pods again.
            self.runner.job_event(job, pods=pods)
