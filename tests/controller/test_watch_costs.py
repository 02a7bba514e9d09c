"""What the operator skips on every pod and Job event (the profile's biggest costs), and what it
still does: TuningStudies are diffed as before, watch handler failures are still logged, and the
runner still sees every field it reads."""

from __future__ import annotations

import logging

import kopf

from hwtune.controller.operator import _QuietWatchHandlers, _StudiesOnlyDiffBase
from hwtune.controller.studies import _observed


def body(kind: str) -> kopf.Body:
    return kopf.Body({"apiVersion": "v1", "kind": kind,
                      "metadata": {"name": "x", "labels": {"hwtune.io/study": "s"},
                                   "annotations": {"hwtune.io/launch": "1"}},
                      "spec": {"containers": [{"name": "trainer", "image": "t:1"}]},
                      "status": {"phase": "Running"}})


def test_pods_and_jobs_are_not_diffed_but_studies_are() -> None:
    storage = _StudiesOnlyDiffBase(prefix="hwtune.io", key="last-handled-configuration")
    assert storage.build(body=body("Pod")) is None
    assert storage.build(body=body("Job")) is None
    essence = storage.build(body=body("TuningStudy"))
    assert essence is not None and essence["spec"] == {"containers": [{"name": "trainer",
                                                                     "image": "t:1"}]}
    assert "status" not in essence


def test_only_watch_handler_successes_are_silenced() -> None:
    quiet = _QuietWatchHandlers()

    def record(level: int, msg: str) -> logging.LogRecord:
        return logging.LogRecord("kopf.objects", level, __file__, 1, msg, None, None)

    assert not quiet.filter(record(logging.INFO, "Handler 'study-pods' succeeded."))
    assert not quiet.filter(record(logging.INFO, "Handler 'study-jobs' succeeded."))
    assert quiet.filter(record(logging.INFO, "Handler 'run-study' succeeded."))
    assert quiet.filter(record(logging.ERROR, "Handler 'study-pods' failed with an exception."))


def test_runner_sees_metadata_and_status_without_the_spec() -> None:
    seen = _observed(body("Pod"))
    assert seen == {"kind": "Pod",
                    "metadata": {"name": "x", "labels": {"hwtune.io/study": "s"},
                                 "annotations": {"hwtune.io/launch": "1"}},
                    "status": {"phase": "Running"}}
    assert type(seen["metadata"]["labels"]) is dict  # plain, not kopf's live views
    managed = body("Job")
    managed["metadata"]["managedFields"] = [{"manager": "kube-controller-manager"}]
    assert "managedFields" not in _observed(managed)["metadata"]  # most of a watched Job
