"""The operator with the surrogate service stopped, on the local control plane: the study still
finishes, on the built-in fallback, and the fallback is a Kubernetes Event on the TuningStudy."""

from __future__ import annotations

import json
import socket

from hwtune.controller.operator import EmbeddedOperator
from hwtune.testing.cluster import LocalCluster
from tests.cluster.test_operator_studies import (  # noqa: F401 - fixtures
    apply,
    cluster,
    operator,
    study_doc,
    wait_completed,
)
from tests.cluster.trial_driver import TrialDriver


def test_with_the_surrogate_stopped_the_study_finishes_and_says_so_in_an_event(
        cluster: LocalCluster, namespace: str, operator: EmbeddedOperator) -> None:
    with socket.socket() as s:  # a port nothing listens on: the service is down
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
    name = "fms-down"
    doc = study_doc(name, max_trials=8)
    doc["spec"]["algorithm"] = {"scheduler": "mo-asha", "searcher": "fms", "seed": 3,
                                "settings": {"surrogateUrl": url, "surrogateTimeoutSeconds": 2,
                                             "initialTrials": 1}}
    driver = TrialDriver(cluster.kubeconfig, namespace).start()
    try:
        apply(cluster, doc, namespace)
        status = wait_completed(cluster, name, namespace, driver)
    finally:
        driver.stop()
    assert not driver.errors, driver.errors
    assert status["trials"]["total"] == 8

    def fallback_events() -> list[dict]:
        out = cluster.kubectl("-n", namespace, "get", "events", "-o", "json",
                              "--field-selector", f"involvedObject.name={name},reason=SurrogateFallback")
        return json.loads(out.stdout)["items"]

    cluster.wait_for(lambda: bool(fallback_events()), timeout=30, what="a SurrogateFallback Event")
    event = fallback_events()[0]
    assert event["type"] == "Warning" and event["involvedObject"]["kind"] == "TuningStudy"
    assert url in event["message"] and "fell back to random search" in event["message"]
