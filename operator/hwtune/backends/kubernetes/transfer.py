"""Earlier studies from the cluster, for transfer: a TuningStudy and its TuningTrials read
through the API server and folded into ``hwtune.transfer.PastStudy`` by
``hwtune.transfer.from_trial_objects`` (the pure part, tested without a cluster).

Trials are listed page by page and kept when ``spec.studyName`` names the study, so the loader
works whatever labels the operator puts on them. Needs get on tuningstudies and list on
tuningtrials in the study's namespace.
"""

from __future__ import annotations

from typing import Any, Iterator, Sequence

from hwtune.transfer.records import PastStudy, TransferError
from hwtune.transfer.sources import from_trial_objects

__all__ = ["load_cluster_studies", "load_cluster_study"]

GROUP, VERSION = "hwtune.io", "v1alpha1"


def _trials(api: Any, namespace: str, study: str, page: int) -> Iterator[dict[str, Any]]:
    token = None
    while True:
        kwargs = {"limit": page}
        if token:
            kwargs["_continue"] = token
        result = api.list_namespaced_custom_object(GROUP, VERSION, namespace, "tuningtrials", **kwargs)
        for item in result.get("items") or ():
            if (item.get("spec") or {}).get("studyName") == study:
                yield item
        token = (result.get("metadata") or {}).get("continue")
        if not token:
            return


def load_cluster_study(api_client: Any, namespace: str, name: str, *, page: int = 500) -> PastStudy:
    """TuningStudy ``namespace/name`` and its trials. ``api_client`` is a
    ``kubernetes.client.ApiClient``."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    api = client.CustomObjectsApi(api_client)
    try:
        study = api.get_namespaced_custom_object(GROUP, VERSION, namespace, "tuningstudies", name)
    except ApiException as exc:
        if exc.status == 404:
            raise TransferError(f"transfer.fromStudies: TuningStudy {namespace}/{name} not found") from None
        raise TransferError(f"transfer.fromStudies: reading TuningStudy {namespace}/{name}: "
                            f"{exc.status} {exc.reason}") from None
    try:
        trials = list(_trials(api, namespace, name, page))
    except ApiException as exc:
        raise TransferError(f"transfer.fromStudies: listing TuningTrials of {namespace}/{name}: "
                            f"{exc.status} {exc.reason}") from None
    return from_trial_objects(name, trials, study_spec=study.get("spec") or {}, namespace=namespace)


def load_cluster_studies(api_client: Any, namespace: str, names: Sequence[str]) -> list[PastStudy]:
    """``transfer.fromStudies`` of a study in ``namespace``, in order."""
    return [load_cluster_study(api_client, namespace, n) for n in names]
