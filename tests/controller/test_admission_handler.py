"""The TuningStudy admission handler, called as kopf calls it, without a cluster.

The HardwarePools come from a PoolCache (what the watch has seen) and a fake live reader that
counts its calls, so the tests can tell a cached answer from a confirmed one.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import kopf
import pytest
import yaml

from hwtune.controller.admission import (
    INVALID,
    UNAVAILABLE,
    PoolCache,
    PoolsUnavailable,
    StudyAdmission,
    track_hardware_pool,
    validate_tuning_study,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
LOGGER = logging.getLogger("test-admission")


def example_study() -> dict[str, Any]:
    return yaml.safe_load((EXAMPLES / "study.yaml").read_text())


def example_pools() -> dict[str, dict[str, Any]]:
    docs = yaml.safe_load_all((EXAMPLES / "pools.yaml").read_text())
    return {d["metadata"]["name"]: d["spec"] for d in docs}  # t4 (1 GPU/node), a100, h100 (8)


def as_stored(doc: dict[str, Any], namespace: str = "team-a") -> dict[str, Any]:
    """The object as the API server sends it in an AdmissionReview: server-set metadata."""
    body = copy.deepcopy(doc)
    body["metadata"].update({
        "namespace": namespace, "uid": "0b1c", "generation": 1,
        "creationTimestamp": "2026-11-24T02:00:00Z",
        "managedFields": [{"manager": "kubectl", "operation": "Update"}],
    })
    return body


class FakeReader:
    """The live list of HardwarePools; raises ``error`` when set."""

    def __init__(self, pools: Mapping[str, Mapping[str, Any]],
                 error: Exception | None = None) -> None:
        self.pools = dict(pools)
        self.error = error
        self.calls = 0

    async def list_pools(self) -> Mapping[str, Mapping[str, Any]]:
        self.calls += 1
        if self.error is not None:
            raise self.error
        return copy.deepcopy(self.pools)


def make_memo(cached: Mapping[str, Any], live: Mapping[str, Any] | None = None,
              error: Exception | None = None) -> kopf.Memo:
    cache = PoolCache()
    for name, spec in cached.items():
        cache.remember(name, spec)
    reader = FakeReader(cached if live is None else live, error)
    return kopf.Memo(admission=StudyAdmission(cache, reader))


def call(body: dict[str, Any], memo: kopf.Memo, operation: str = "CREATE",
         old: dict[str, Any] | None = None) -> None:
    """Invoke the handler with the keyword arguments kopf passes (plus some it ignores)."""
    asyncio.run(validate_tuning_study(
        body=body, old=old, new=body, operation=operation, memo=memo, logger=LOGGER,
        dryrun=False, uid="0b1c", warnings=[]))


def refusal(body: dict[str, Any], memo: kopf.Memo, **kwargs: Any) -> kopf.AdmissionError:
    with pytest.raises(kopf.AdmissionError) as caught:
        call(body, memo, **kwargs)
    return caught.value


def reader_calls(memo: kopf.Memo) -> int:
    return memo.admission.reader.calls


def test_study_with_known_pools_is_admitted_from_the_cache() -> None:
    memo = make_memo(example_pools())
    call(as_stored(example_study()), memo)
    assert reader_calls(memo) == 0  # the common case costs no API call


def test_unknown_pool_is_refused_naming_index_pool_and_known_pools() -> None:
    memo = make_memo(example_pools())
    study = example_study()
    study["spec"]["hardware"]["pools"] = ["t4", "tpu9", "a100"]
    error = refusal(as_stored(study), memo)
    assert error.code == INVALID
    assert str(error) == ("spec.hardware.pools[1]: Not found: HardwarePool 'tpu9' does not exist "
                          "(known pools: a100, h100, t4)")
    assert reader_calls(memo) == 1  # a refusal is confirmed by a live read


def test_pool_missing_from_a_stale_cache_is_found_by_the_live_read() -> None:
    pools = example_pools()
    memo = make_memo({"t4": pools["t4"]}, live=pools)  # the watch has not seen a100/h100 yet
    call(as_stored(example_study()), memo)
    assert reader_calls(memo) == 1


def test_empty_cache_right_after_start_still_admits_good_studies() -> None:
    memo = make_memo({}, live=example_pools())
    call(as_stored(example_study()), memo)


def test_gpu_counts_larger_than_every_listed_pools_node_are_refused() -> None:
    memo = make_memo(example_pools())
    study = example_study()
    study["spec"]["hardware"]["pools"] = ["t4"]
    study["spec"]["hardware"]["gpuCounts"] = [2, 4]
    error = refusal(as_stored(study), memo)
    assert str(error) == ("spec.hardware.gpuCounts: Invalid value: no GPU count in [2, 4] fits "
                          "on a node of pools t4")
    # One listed pool that fits is enough: counts above a pool's node are skipped for it.
    study["spec"]["hardware"]["pools"] = ["t4", "a100"]
    call(as_stored(study), memo)


def test_unknown_override_pool_is_refused() -> None:
    memo = make_memo(example_pools())
    study = example_study()
    del study["spec"]["hardware"]["pools"]  # every pool; an override may name any of them
    study["spec"]["hardware"]["overrides"] = {"v100": {"pricePerGPUHour": 1.0}}
    error = refusal(as_stored(study), memo)
    assert str(error).startswith("spec.hardware.overrides[v100]: Not found: HardwarePool 'v100'")


def test_every_error_is_reported_in_one_refusal() -> None:
    memo = make_memo(example_pools())
    study = example_study()
    study["spec"]["hardware"]["pools"] = ["x1", "t4", "x2"]
    message = str(refusal(as_stored(study), memo))
    assert "spec.hardware.pools[0]" in message and "'x1'" in message
    assert "spec.hardware.pools[2]" in message and "'x2'" in message
    assert message.count("; ") == 1


def test_model_rules_are_checked_before_any_pool_read() -> None:
    memo = make_memo(example_pools())
    study = example_study()
    study["spec"]["parameters"]["lr"]["min"] = 0.5  # above max
    error = refusal(as_stored(study), memo)
    assert error.code == INVALID
    assert "spec.parameters[lr]" in str(error)
    assert reader_calls(memo) == 0


def test_operator_only_rule_condition_cycle_is_refused() -> None:
    # CEL cannot find cycles, so only the model (here: admission) refuses them.
    memo = make_memo(example_pools())
    study = example_study()
    params = study["spec"]["parameters"]
    params["optimizer"]["condition"] = {"parameter": "momentum", "in": [0.5]}
    message = str(refusal(as_stored(study), memo))
    assert "spec.parameters" in message and "cycle" in message.lower()


def test_study_without_hardware_needs_no_pools() -> None:
    memo = make_memo({}, live={})
    study = example_study()
    del study["spec"]["hardware"]
    call(as_stored(study), memo)
    assert reader_calls(memo) == 0


def test_hardware_without_pool_list_needs_some_pool_to_exist() -> None:
    study = example_study()
    del study["spec"]["hardware"]["pools"]  # = every pool in the cluster
    call(as_stored(study), make_memo(example_pools()))
    error = refusal(as_stored(study), make_memo({}, live={}))
    assert str(error) == "spec.hardware.pools: Not found: no HardwarePool exists in the cluster"


def test_update_that_keeps_the_spec_is_admitted_even_if_a_pool_is_gone() -> None:
    # E.g. the operator removing its finalizer after the pool was deleted.
    memo = make_memo({"t4": example_pools()["t4"]})
    old = as_stored(example_study())
    new = copy.deepcopy(old)
    new["metadata"]["finalizers"] = []
    new["metadata"]["labels"] = {"team": "vision"}
    call(new, memo, operation="UPDATE", old=old)
    assert reader_calls(memo) == 0


def test_update_that_changes_the_spec_is_checked() -> None:
    memo = make_memo(example_pools())
    old = as_stored(example_study())
    new = copy.deepcopy(old)
    new["spec"]["hardware"]["pools"] = ["t4", "tpu9"]
    error = refusal(new, memo, operation="UPDATE", old=old)
    assert "spec.hardware.pools[1]" in str(error)


def test_object_being_deleted_is_admitted() -> None:
    memo = make_memo({}, live={})
    body = as_stored(example_study())
    body["metadata"]["deletionTimestamp"] = "2026-11-24T03:00:00Z"
    call(body, memo, operation="UPDATE", old=as_stored(example_study()))


def test_status_is_not_the_users_and_is_not_checked() -> None:
    memo = make_memo(example_pools())
    body = as_stored(example_study())
    body["status"] = {"phase": "NoSuchPhase", "bogus": 1}
    call(body, memo, operation="UPDATE", old=as_stored(example_study()) | {"spec": {}})


def test_failed_live_read_refuses_with_503_and_says_why() -> None:
    study = example_study()
    study["spec"]["hardware"]["pools"] = ["t4", "tpu9"]
    memo = make_memo(example_pools(), error=PoolsUnavailable("listing HardwarePools failed: 500"))
    error = refusal(as_stored(study), memo)
    assert error.code == UNAVAILABLE
    assert str(error).startswith("spec.hardware: cannot be checked now (listing HardwarePools "
                                 "failed: 500)")


def test_failed_live_read_does_not_matter_when_the_cache_admits() -> None:
    memo = make_memo(example_pools(), error=PoolsUnavailable("down"))
    call(as_stored(example_study()), memo)


def test_invalid_pool_in_the_cluster_is_ignored_not_fatal() -> None:
    pools = example_pools()
    pools["broken"] = {"gpuType": "x", "gpusPerNode": 0}  # what the schema would refuse
    memo = make_memo(pools)
    assert "broken" not in memo.admission.cache
    study = example_study()
    study["spec"]["hardware"]["pools"] = ["broken"]
    assert "HardwarePool 'broken' does not exist" in str(refusal(as_stored(study), memo))


def event(kind: str | None, name: str, spec: dict[str, Any] | None) -> dict[str, Any]:
    return {"type": kind, "object": {"apiVersion": "hwtune.io/v1alpha1", "kind": "HardwarePool",
                                     "metadata": {"name": name}, "spec": spec}}


def test_pool_watch_keeps_the_cache_current() -> None:
    memo = make_memo({})
    cache: PoolCache = memo.admission.cache
    pools = example_pools()

    def deliver(kind: str | None, name: str, spec: dict[str, Any] | None) -> None:
        asyncio.run(track_hardware_pool(event=event(kind, name, spec), name=name, memo=memo,
                                        logger=LOGGER, type=kind))

    deliver(None, "t4", pools["t4"])  # initial listing
    deliver("ADDED", "a100", pools["a100"])
    assert sorted(cache.snapshot()) == ["a100", "t4"]
    deliver("MODIFIED", "t4", {**pools["t4"], "gpusPerNode": 4})
    assert cache.snapshot()["t4"].gpus_per_node == 4
    deliver("DELETED", "a100", pools["a100"])
    assert sorted(cache.snapshot()) == ["t4"]
    deliver("MODIFIED", "t4", {"gpuType": "x"})  # now invalid: dropped, not kept stale
    assert len(cache) == 0
    deliver("DELETED", "never-seen", None)  # harmless


def test_cluster_reader_maps_the_listing_and_reports_api_errors(monkeypatch) -> None:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    from hwtune.controller.admission import ClusterPoolReader

    reader = ClusterPoolReader(client.ApiClient(client.Configuration()), timeout_s=2)
    seen: dict[str, Any] = {}

    def listing(group: str, version: str, plural: str, **kwargs: Any) -> dict[str, Any]:
        seen.update(group=group, version=version, plural=plural, **kwargs)
        return {"items": [{"metadata": {"name": "t4"}, "spec": example_pools()["t4"]},
                          {"metadata": {"name": "bare"}}]}

    monkeypatch.setattr(reader._api, "list_cluster_custom_object", listing)
    pools = asyncio.run(reader.list_pools())
    assert pools == {"t4": example_pools()["t4"], "bare": {}}
    assert seen == {"group": "hwtune.io", "version": "v1alpha1", "plural": "hardwarepools",
                    "_request_timeout": 2}

    def forbidden(*args: Any, **kwargs: Any) -> None:
        raise ApiException(status=403, reason="Forbidden")

    monkeypatch.setattr(reader._api, "list_cluster_custom_object", forbidden)
    with pytest.raises(PoolsUnavailable, match="listing HardwarePools failed: 403 Forbidden"):
        asyncio.run(reader.list_pools())


def test_search_fields_are_frozen_once_the_study_has_trials_but_budgets_may_grow() -> None:
    memo = make_memo(example_pools())
    old = as_stored(example_study())
    old["status"] = {"trials": {"total": 3}}
    changed = copy.deepcopy(old)
    changed["spec"]["parameters"]["lr"]["max"] = 0.5
    changed["spec"]["objectives"] = changed["spec"]["objectives"][:1]
    error = refusal(changed, memo, operation="UPDATE", old=old)
    assert error.code == INVALID
    assert "spec.objectives: Forbidden: cannot change once the study has trials (3 so far)" \
        in str(error)
    assert "spec.parameters: Forbidden" in str(error)
    more = copy.deepcopy(old)
    more["spec"]["budget"]["maxTrials"] = 400
    call(more, memo, operation="UPDATE", old=old)  # raising a budget resumes the study
    fresh = copy.deepcopy(old)
    fresh["status"] = {}
    call(changed | {"status": {}}, memo, operation="UPDATE", old=fresh)  # no trials yet: free
