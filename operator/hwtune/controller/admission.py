"""The validating admission webhook of TuningStudies: the checks no schema can make.

The CRD schema and the ValidatingAdmissionPolicy see one object at a time. This webhook adds the
checks that need other objects: every pool named in ``spec.hardware`` exists as a HardwarePool,
and at least one requested GPU count fits on a node of a listed pool. It also re-runs the pydantic
model (defence in depth: the same rules as the schema, plus the operator-only ones such as
condition cycles). The check itself is ``hwtune.api.pools.validate_study_against_pools``; this
module only feeds it pools and turns its errors into an admission refusal.

Where the pools come from, and how stale they may be:

- ``PoolCache`` holds the HardwarePools as seen by a kopf watch (``track_hardware_pool``). It
  answers the common case (the study is fine) without an API call.
- A study the cache would refuse is checked again against a live list of HardwarePools
  (``PoolReader``) before it is refused. So a refusal is never stale: a pool created a moment
  ago is found even if its watch event has not arrived (and right after start, while the cache
  is still empty, every check is simply a live one).
- An acceptance can be stale by the watch's lag (usually well under a second): a study naming a
  pool deleted in that window is admitted. Pools can also be deleted after a study was admitted,
  so the reconciler must check them again anyway (and report ``Valid=False``); admission is the
  fast, early answer, not the only one.

UPDATEs that leave ``spec`` unchanged (labels, annotations, finalizers) are always
admitted: a study whose pool was deleted later must still let the operator remove its finalizer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any, Protocol

import kopf

from hwtune.api._base import FieldError, ManifestError
from hwtune.api.crd import (
    GROUP,
    VERSION,
    HardwarePool,
    HardwarePoolSpec,
    TuningStudy,
    TuningStudySpec,
    parse_manifest,
    parse_spec,
)
from hwtune.api.pools import validate_study_against_pools

__all__ = [
    "HANDLER_ID",
    "ClusterPoolReader",
    "PoolCache",
    "PoolReader",
    "PoolsUnavailable",
    "StudyAdmission",
    "register_admission",
    "track_hardware_pool",
    "validate_tuning_study",
]

log = logging.getLogger(__name__)

STUDIES = TuningStudy.__crd__.plural
POOLS = HardwarePool.__crd__.plural
# Part of the webhook's name in the configuration: "validate-tuning-study.auto.hwtune.io".
HANDLER_ID = "validate-tuning-study"
POOL_TRACKER_ID = "track-hardware-pools"

# HTTP codes in the refusal: 422 the study is invalid, 503 it could not be checked.
INVALID = 422
UNAVAILABLE = 503


class PoolsUnavailable(RuntimeError):
    """The HardwarePools could not be read, so a refusal could not be confirmed."""


class PoolReader(Protocol):
    """A live read of every HardwarePool: name -> spec (as stored: camelCase mapping)."""

    async def list_pools(self) -> Mapping[str, Mapping[str, Any]]: ...


def _parse_pool(name: str, spec: Any) -> HardwarePoolSpec | None:
    """The pool's model, or None (with a warning) when its stored spec is invalid: possible
    only if the CRD was installed without its schema or an older hwtune wrote it."""
    try:
        return parse_spec(HardwarePoolSpec, spec, prefix=f"HardwarePool {name}: spec")
    except ManifestError as exc:
        log.warning("ignoring HardwarePool %r with an invalid spec: %s", name, exc)
        return None


class PoolCache:
    """HardwarePools by name as last seen by the watch. Single event loop: no locking."""

    def __init__(self) -> None:
        self._pools: dict[str, HardwarePoolSpec] = {}

    def remember(self, name: str, spec: Any) -> None:
        pool = _parse_pool(name, spec)
        if pool is None:
            self._pools.pop(name, None)
        else:
            self._pools[name] = pool

    def forget(self, name: str) -> None:
        self._pools.pop(name, None)

    def snapshot(self) -> dict[str, HardwarePoolSpec]:
        return dict(self._pools)

    def __len__(self) -> int:
        return len(self._pools)

    def __contains__(self, name: object) -> bool:
        return name in self._pools


class ClusterPoolReader:
    """Lists HardwarePools through the official client (a blocking call, run in a thread)."""

    def __init__(self, api_client: Any, timeout_s: float) -> None:
        # Imported here: the client is only needed where a cluster is (not in unit tests).
        from kubernetes import client

        self._api = client.CustomObjectsApi(api_client)
        self._timeout_s = timeout_s

    async def list_pools(self) -> dict[str, Mapping[str, Any]]:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            listing = await asyncio.to_thread(
                self._api.list_cluster_custom_object, GROUP, VERSION, POOLS,
                _request_timeout=self._timeout_s)
        except ApiException as exc:
            raise PoolsUnavailable(f"listing HardwarePools failed: {exc.status} {exc.reason}") \
                from exc
        except (HTTPError, OSError) as exc:
            raise PoolsUnavailable(f"listing HardwarePools failed: {exc}") from exc
        return {item["metadata"]["name"]: item.get("spec") or {} for item in listing["items"]}


def _plain(value: Any) -> Any:
    """kopf hands bodies as read-only views; the models want plain dicts and lists."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


class StudyAdmission:
    """Decides on one TuningStudy admission request; no kopf in here, so it is unit-testable."""

    def __init__(self, cache: PoolCache, reader: PoolReader) -> None:
        self.cache = cache
        self.reader = reader

    async def review(self, body: Mapping[str, Any], old: Mapping[str, Any] | None = None,
                     operation: str | None = None) -> list[FieldError]:
        """Every refusal of ``body`` (empty: admit it).

        Raises PoolsUnavailable when the study would be refused on the cache's word but the
        live read that must confirm it failed.
        """
        body = _plain(body)
        if operation == "UPDATE" and old is not None:
            old = _plain(old)
            if old.get("spec") == body.get("spec"):
                return []
            frozen = _frozen_changes(old, body)
            if frozen:
                return frozen
        if (body.get("metadata") or {}).get("deletionTimestamp"):
            return []  # being deleted: only finalizers change from here on
        # Status is the operator's (a subresource): only what the user wrote is checked.
        manifest = {k: body[k] for k in ("apiVersion", "kind", "metadata", "spec") if k in body}
        try:
            study = parse_manifest(manifest)
        except ManifestError as exc:
            return exc.errors
        if not isinstance(study, TuningStudy):  # the webhook is registered for studies only
            return [FieldError("kind", f"must be TuningStudy, got {body.get('kind')!r}")]
        return await self._check_pools(study.spec)

    async def _check_pools(self, spec: TuningStudySpec) -> list[FieldError]:
        if spec.hardware is None:
            return []
        errors = validate_study_against_pools(spec, self.cache.snapshot())
        if not errors:
            return []
        # The cache may lag behind the cluster: confirm a refusal with a live read.
        live = {name: pool for name, raw in (await self.reader.list_pools()).items()
                if (pool := _parse_pool(name, raw)) is not None}
        return validate_study_against_pools(spec, live)


# Fields whose change would make the recorded trials answer a different question (the log's
# replay would diverge): fixed once a study has trials. Budgets and the trial template may change.
FROZEN_FIELDS = ("objectives", "parameters", "hardware", "fidelity", "algorithm")


def _frozen_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[FieldError]:
    trials = ((old.get("status") or {}).get("trials") or {}).get("total") or 0
    if not trials:
        return []
    old_spec, new_spec = old.get("spec") or {}, new.get("spec") or {}
    return [FieldError(f"spec.{name}",
                       f"Forbidden: cannot change once the study has trials ({trials} so far); "
                       "create a new study (budgets and the trial template may change)")
            for name in FROZEN_FIELDS if old_spec.get(name) != new_spec.get(name)]


def refusal_message(errors: list[FieldError]) -> str:
    return "; ".join(str(e) for e in errors)


async def validate_tuning_study(
    body: Mapping[str, Any],
    old: Mapping[str, Any] | None,
    operation: str | None,
    memo: Any,
    logger: logging.Logger | logging.LoggerAdapter[Any],
    **_: Any,
) -> None:
    """kopf's ``@on.validate`` handler of TuningStudies (CREATE, UPDATE)."""
    admission: StudyAdmission = memo.admission
    try:
        errors = await admission.review(body, old, operation)
    except PoolsUnavailable as exc:
        logger.warning("cannot check spec.hardware: %s", exc)
        raise kopf.AdmissionError(
            f"spec.hardware: cannot be checked now ({exc}); try again", code=UNAVAILABLE) from None
    if errors:
        message = refusal_message(errors)
        logger.debug("refusing %s: %s", operation or "request", message)
        raise kopf.AdmissionError(message, code=INVALID)


async def track_hardware_pool(
    event: Mapping[str, Any],
    name: str,
    memo: Any,
    **_: Any,
) -> None:
    """kopf's ``@on.event`` handler of HardwarePools: keeps ``memo.admission.cache`` current.
    The initial listing arrives as events of type None, later ones as ADDED/MODIFIED/DELETED."""
    cache: PoolCache = memo.admission.cache
    if event.get("type") == "DELETED":
        cache.forget(name)
    else:
        cache.remember(name, _plain((event.get("object") or {}).get("spec") or {}))


def register_admission(registry: kopf.OperatorRegistry, *, ignore_failures: bool,
                       persistent: bool = False) -> None:
    """Add the study webhook and the pool watch to ``registry``; both read ``memo.admission``
    (a StudyAdmission), which the operator puts in kopf's memo. ``persistent``: the webhook
    stays registered when this process stops (another replica serves it)."""
    kopf.on.validate(
        GROUP, VERSION, STUDIES, id=HANDLER_ID, operations=["CREATE", "UPDATE"],
        side_effects=False, ignore_failures=ignore_failures, persistent=persistent,
        registry=registry,
    )(validate_tuning_study)
    kopf.on.event(GROUP, VERSION, POOLS, id=POOL_TRACKER_ID, registry=registry)(
        track_hardware_pool)
