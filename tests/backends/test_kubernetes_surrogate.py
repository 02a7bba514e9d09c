"""The kubernetes backend and the surrogate: searchers see where the Jobs save checkpoints, and a
surrogate that cannot answer shows as a SurrogateFallback Event on the study while the study
still finishes (the real control plane: tests/cluster/test_surrogate_cluster.py)."""

from __future__ import annotations

import asyncio
import socket

from hwtune.backends.kubernetes import StudyRunner
from tests.backends.kube_fakes import FakeKube, FakeTrainers, study_spec
from tests.backends.test_kubernetes_runner import play


def dead_url() -> str:
    with socket.socket() as s:  # bound then closed: nothing listens there
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def surrogate_spec() -> dict:
    spec = study_spec()
    spec["algorithm"] = {"scheduler": "mo-asha", "searcher": "fms", "seed": 3,
                         "settings": {"surrogateUrl": dead_url(), "surrogateTimeoutSeconds": 2,
                                      "initialTrials": 1, "surrogateRetryAfter": 2}}
    spec["checkpoints"] = {"uri": "s3://bucket/ckpt"}
    return spec


def test_a_down_surrogate_becomes_an_event_and_the_study_finishes() -> None:
    kube = FakeKube()
    trainers = FakeTrainers(kube)
    runner = StudyRunner(kube, namespace="ns", name="st", uid="uid-1", spec=surrogate_spec(),
                         generation=1, report_url="http://127.0.0.1:9", status_interval=0.01)

    async def main() -> str:
        task = await play(kube, trainers, runner)
        await runner.flush_status()
        return task.result()

    reason = asyncio.run(main())
    assert "maxTrials" in reason or "no more trials" in reason
    assert kube.study_status["phase"] == "Completed"
    fallbacks = [m for r, m in kube.events if r == "SurrogateFallback"]
    assert fallbacks, kube.events
    assert "unreachable or slow" in fallbacks[0] and "fell back to random search" in fallbacks[0]
    # Only the failures say why; the suggestions skipped after one are not an Event each.
    assert not any("still falling back" in m for m in fallbacks)
    # The searcher's view of checkpoints is where the Jobs save them (HWTUNE_CHECKPOINT_URI).
    view = runner.study.view
    trial = runner.study.trial(0)
    assert view.checkpoint_uri(trial, 1) == "s3://bucket/ckpt/st/0"
    assert view.checkpoint_uri(trial, 0) is None
    assert runner.study.context.name == "ns/st"  # models kept per namespace/study
