"""kopf handlers that run TuningStudies (thin: the work is in ``hwtune.backends.kubernetes``).

- a daemon per TuningStudy runs its ``StudyRunner`` (load the log, adopt, tune); kopf stops it
  when the object goes, the operator stops, or a higher-priority peer appears;
- a spec change (raised budget, more trials) restarts the runner: it rebuilds from the log with
  the new spec, so a finished study resumes;
- deletion (finalizer): stop the runner, delete the study's Jobs and pods and wait until they
  are gone (token Secrets go with their TuningTrials, by the garbage collector: the operator
  may create Secrets, never read or delete them);
- Job events (label ``hwtune.io/study``) go to their study's runner; pods are not watched
  (their events were most of the operator's work): the runner reads a trial's pods when its
  Job says one failed or went away;
- the report endpoint (``hwtune.report.server.create_app``) is served from this event loop at
  ``/studies/{namespace}/{study}/v1/trials/{trial}/reports``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import kopf

from hwtune.api.crd import GROUP, VERSION
from hwtune.backends.kubernetes import KubeApi, StudyRunner, StudyUnavailable
from hwtune.backends.kubernetes.pacing import TokenBucket
from hwtune.backends.kubernetes.manifests import LABEL_STUDY
from hwtune.controller.metrics import forget_study, instrument_runner
from hwtune.controller.readiness import StudyReadiness
from hwtune.report.protocol import ReportPayload

__all__ = ["REPORT_ROUTE_PREFIX", "ReportRouter", "StudyHandlers", "register_studies"]

log = logging.getLogger(__name__)

STUDIES = "tuningstudies"
REPORT_ROUTE_PREFIX = "/studies/{namespace}/{study}"
RETRY_SECONDS = 5.0


class ReportRouter:
    """The report sink of the whole operator: ``ns/study/trial`` -> that study's runner."""

    def __init__(self) -> None:
        self.runners: dict[tuple[str, str], StudyRunner] = {}

    def _split(self, key: str) -> tuple[StudyRunner, str]:
        namespace, study, trial = key.split("/", 2)
        runner = self.runners.get((namespace, study))
        if runner is None:
            raise StudyUnavailable(f"study {namespace}/{study} is not running here (yet); retry")
        return runner, trial

    def expected_token(self, trial: str) -> str | None:
        runner, tid = self._split(trial)
        return runner.expected_token(tid)

    def submit_report(self, trial: str, payload: ReportPayload) -> Any:
        runner, tid = self._split(trial)
        return runner.submit_report(tid, payload)


@dataclass
class StudyHandlers:
    """What the handlers share (kopf's memo carries it)."""

    report_url: str
    retry_limit: int = 3
    lease_seconds: float = 15.0
    api: KubeApi | None = None
    launch_pacer: TokenBucket | None = None  # one for every study of this operator
    router: ReportRouter = field(default_factory=ReportRouter)
    restarts: dict[tuple[str, str], asyncio.Event] = field(default_factory=dict)
    specs: dict[tuple[str, str], tuple[Mapping[str, Any], int | None]] = field(default_factory=dict)
    metrics: Any = None  # hwtune.observe.StudyMetrics, set by start_metrics_endpoint
    report_address: str | None = None  # host:port published in Leases for standby forwarding
    readiness: StudyReadiness | None = None  # told when a study's daemon starts (GET /readyz)


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


_METADATA = ("name", "namespace", "uid", "labels", "annotations", "deletionTimestamp")


def _observed(body: Mapping[str, Any]) -> dict[str, Any]:
    """What the runner reads of a watched Job (some metadata and the status), as plain dicts:
    neither the spec nor the managed fields (most of a Job) are copied on every event."""
    meta = body.get("metadata") or {}
    return {"kind": body.get("kind"),
            "metadata": {k: _plain(meta[k]) for k in _METADATA if k in meta},
            "status": _plain(body.get("status") or {})}


async def run_study(spec: Mapping[str, Any], name: str, namespace: str, uid: str,
                    meta: Mapping[str, Any], stopped: Any, memo: Any,
                    logger: logging.Logger | logging.LoggerAdapter[Any], **_: Any) -> None:
    """kopf daemon of a TuningStudy: run its runner; rerun after a spec change."""
    handlers: StudyHandlers = memo.studies
    assert handlers.api is not None
    key = (namespace, name)
    restart = handlers.restarts.setdefault(key, asyncio.Event())
    handlers.specs.setdefault(key, (_plain(spec), meta.get("generation")))
    if handlers.readiness is not None:
        handlers.readiness.daemon_started(key)
    try:
        while not stopped:
            restart.clear()
            current_spec, generation = handlers.specs[key]
            runner = StudyRunner(handlers.api, namespace=namespace, name=name, uid=uid,
                                 spec=current_spec, generation=generation,
                                 report_url=handlers.report_url,
                                 retry_limit=handlers.retry_limit,
                                 lease_seconds=handlers.lease_seconds,
                                 launch_pacer=handlers.launch_pacer)
            if runner.lease is not None:  # a standby forwards this study's reports there
                runner.lease.address = handlers.report_address
            handlers.router.runners[key] = runner
            instrument_runner(runner, handlers.metrics)
            task = asyncio.create_task(runner.run(), name=f"study:{namespace}/{name}")
            try:
                # Poll the daemon's stop flag: kopf sets it on deletion, shutdown or a pause.
                while not stopped and not restart.is_set() and not task.done():
                    await asyncio.wait({task}, timeout=0.5)
            finally:
                if not task.done():
                    task.cancel()  # the trials keep running: a new runner adopts them
                    await asyncio.gather(task, return_exceptions=True)
            if task.done() and not task.cancelled() and task.exception() is not None:
                handlers.router.runners.pop(key, None)  # e.g. its Lease lost: it answers no more
                # The API said no (a namespace being deleted, a hiccup): nothing is lost, as
                # the next runner starts again from the log. Not an operator error.
                logger.warning("study runner stopped: %s; restarting in %gs", task.exception(),
                               RETRY_SECONDS)
                deadline = asyncio.get_running_loop().time() + RETRY_SECONDS
                while not stopped and not restart.is_set() \
                        and asyncio.get_running_loop().time() < deadline:
                    await asyncio.sleep(0.5)
                continue
            if task.done() and not task.cancelled():
                logger.info("study ended: %s", task.result())
                # Finished: stay until the spec changes (more trials, a bigger budget).
                while not stopped and not restart.is_set():
                    await asyncio.sleep(0.5)
            elif restart.is_set():
                logger.info("spec changed: reloading the study from its log")
    finally:
        handlers.router.runners.pop(key, None)
        forget_study(handlers.metrics, namespace, name)


async def spec_changed(spec: Mapping[str, Any], name: str, namespace: str,
                       meta: Mapping[str, Any], memo: Any, **_: Any) -> None:
    handlers: StudyHandlers = memo.studies
    key = (namespace, name)
    new = _plain(spec)
    current = handlers.specs.get(key)
    if current is not None and current[0] == new:
        return  # kopf may replay a change it could not mark handled: nothing to reload
    handlers.specs[key] = (new, meta.get("generation"))
    handlers.restarts.setdefault(key, asyncio.Event()).set()


async def delete_study(name: str, namespace: str, memo: Any,
                       logger: logging.Logger | logging.LoggerAdapter[Any], **_: Any) -> None:
    """Finalizer: nothing of the study may outlive it (its daemon is already stopped)."""
    handlers: StudyHandlers = memo.studies
    assert handlers.api is not None
    key = (namespace, name)
    handlers.router.runners.pop(key, None)
    handlers.specs.pop(key, None)
    handlers.restarts.pop(key, None)
    await handlers.api.delete_study_objects(namespace, name)
    left = await handlers.api.count_study_objects(namespace, name)
    if left:
        raise kopf.TemporaryError(f"{left} Jobs/pods of the study are still being deleted",
                                  delay=2)
    logger.info("study deleted with its Jobs and pods (the GC takes its token Secrets)")


async def job_event(body: Mapping[str, Any], labels: Mapping[str, str], namespace: str,
                    memo: Any, **_: Any) -> None:
    runner = memo.studies.router.runners.get((namespace, labels.get(LABEL_STUDY, "")))
    if runner is not None:
        runner.job_event(_observed(body))


def register_studies(registry: kopf.OperatorRegistry) -> None:
    """Add the study handlers to ``registry``; they read ``memo.studies`` (StudyHandlers)."""
    kopf.daemon(GROUP, VERSION, STUDIES, id="run-study", registry=registry,
                cancellation_timeout=10.0)(run_study)
    kopf.on.update(GROUP, VERSION, STUDIES, id="spec-changed", field="spec",
                   registry=registry)(spec_changed)
    kopf.on.delete(GROUP, VERSION, STUDIES, id="delete-study", registry=registry)(delete_study)
    kopf.on.event("batch", "v1", "jobs", id="study-jobs", registry=registry,
                  labels={LABEL_STUDY: kopf.PRESENT})(job_event)

