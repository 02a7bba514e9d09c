"""The operator's Prometheus endpoint and its hooks into the study runners.

``start_metrics_endpoint`` serves ``/metrics`` of one ``StudyMetrics`` registry on
``settings.metrics_listen:metrics_port`` (the chart's port 9090) from a daemon thread.
``instrument_runner`` attaches a ``StudyRunner`` to it once its study is loaded: events and
state through ``StudyMetrics.watch``, the report handling (decision and write-ahead log, until
the answer) into ``hwtune_report_decision_seconds``, each tuner step into
``hwtune_reconcile_seconds``. The metrics themselves live in ``hwtune.observe`` (kopf-free).
"""

from __future__ import annotations

import functools
import logging
import time
from collections import OrderedDict
from typing import Any

from hwtune.controller.settings import OperatorSettings
from hwtune.observe import StudyMetrics

__all__ = ["forget_study", "instrument_runner", "start_metrics_endpoint"]

log = logging.getLogger(__name__)


def start_metrics_endpoint(settings: OperatorSettings, studies: Any) -> Any:
    """Create the registry (``studies.metrics``) and serve it; returns the HTTP server (its
    ``shutdown()`` stops it), or None when ``metrics_port`` is None (no endpoint)."""
    metrics = StudyMetrics()
    studies.metrics = metrics
    if settings.metrics_port is None:
        return None
    server = metrics.serve(settings.metrics_port, addr=settings.metrics_listen)
    log.info("metrics endpoint listening on http://%s:%s/metrics", settings.metrics_listen,
             server.server_address[1])
    return server


def instrument_runner(runner: Any, metrics: StudyMetrics | None) -> None:
    """Export ``runner``'s study once ``load()`` has built it (a new runner after a spec
    change replaces the previous one's series)."""
    if metrics is None:
        return
    inner_load = runner.load

    @functools.wraps(inner_load)
    async def load() -> None:
        await inner_load()
        if runner.study is None or runner.backend is None or runner.tuner is None:
            return  # the study failed to load: its status says why, nothing to export
        metrics.unwatch(runner.namespace, runner.name)
        observer = metrics.watch(runner.study, runner.namespace, runner.name,
                                 lock=runner.backend.lock, time_reports=False)
        inner_step = runner.tuner.step

        def step() -> Any:
            with observer.reconcile():
                return inner_step()

        runner.tuner.step = step
        inner_submit = runner.submit_report

        async def submit_report(trial: str, payload: Any) -> Any:
            start = time.perf_counter()
            try:
                return await inner_submit(trial, payload)
            finally:
                observer.observe_decision(time.perf_counter() - start)

        runner.submit_report = submit_report

    runner.load = load
    inner_pod_event = runner.pod_event
    disrupted: OrderedDict[str, None] = OrderedDict()  # pod uids counted (bounded)

    def pod_event(pod: Any) -> None:
        inner_pod_event(pod)
        trial = preempted_trial(pod)
        uid = (pod.get("metadata") or {}).get("uid", "")
        observer = metrics.observer(runner.namespace, runner.name)
        if trial is None or observer is None or uid in disrupted:
            return
        disrupted[uid] = None
        if len(disrupted) > 10_000:
            disrupted.popitem(last=False)
        try:
            observer.preempted(trial)
        except KeyError:  # not a trial of this study (yet): nothing to count
            pass

    runner.pod_event = pod_event


def preempted_trial(pod: Any) -> int | None:
    """The trial id of a pod Kubernetes is disrupting (preemption, eviction, node drain: the
    ``DisruptionTarget`` condition), else None."""
    conditions = (pod.get("status") or {}).get("conditions") or []
    if not any(c.get("type") == "DisruptionTarget" and c.get("status") == "True" for c in conditions):
        return None
    try:
        return int((pod.get("metadata") or {}).get("labels", {})["hwtune.io/trial"])
    except (KeyError, TypeError, ValueError):
        return None


def forget_study(metrics: StudyMetrics | None, namespace: str, name: str) -> None:
    """The study's daemon ended (deleted, or the operator stops): drop its series."""
    if metrics is not None:
        metrics.unwatch(namespace, name)
