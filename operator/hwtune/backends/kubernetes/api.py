"""The few Kubernetes calls the operator makes, as coroutines over the official client.

Blocking client calls run in a thread pool of their own (never the engine's lock, never kopf's
executor). Creates are idempotent: 409 AlreadyExists returns the existing object; deletes treat
404 as done. Bodies are plain dicts.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, AsyncIterator, Callable, Mapping, Protocol, TypeVar

from hwtune.backends.kubernetes.hotstats import STATS
from hwtune.backends.kubernetes.manifests import LABEL_STUDY, LABEL_TRIAL

__all__ = ["ApiError", "KubeApi", "StudyLogStore"]

log = logging.getLogger(__name__)

GROUP, VERSION = "hwtune.io", "v1alpha1"
LABEL_LOG = "hwtune.io/log"
LABEL_CHUNK = "hwtune.io/log-chunk"
LOG_WRITER = "hwtune.io/log-writer"  # annotation: <holder>#<incarnation> that last wrote a chunk
LIST_PAGE = 500  # objects per LIST page (study-sized lists: trials, log chunks)
STUDY_PAGE = 50  # TuningStudies per LIST page (each up to ~100 KiB)
T = TypeVar("T")


class ApiError(RuntimeError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status


_PLURALS = ("tuningtrials", "tuningstudies", "hardwarepools")


def _call_name(fn: Callable[..., Any], args: tuple[Any, ...]) -> str:
    """``api.<client method>[.<custom resource>]``: the kind of request, for ``hotstats``."""
    name = getattr(fn, "__name__", "call").replace("_namespaced", "")
    plural = next((a for a in args if isinstance(a, str) and a in _PLURALS), None)
    return f"api.{name}.{plural}" if plural else f"api.{name}"


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class KubeApi:
    """Thin async wrapper; one per operator (shared by every study)."""

    WORKERS = 48
    LOG_WORKERS = 6  # LANES log writes and the Lease renewals
    STATUS_WORKERS = 2
    # HTTP connections the client should keep (``Configuration.connection_pool_maxsize``): one
    # per worker thread and a few for the pool reader. With fewer, urllib3 discards connections
    # under load and every later call pays a new TLS handshake.
    CONNECTIONS = WORKERS + LOG_WORKERS + STATUS_WORKERS + 4

    def __init__(self, api_client: Any, *, workers: int = WORKERS, log_workers: int = LOG_WORKERS,
                 status_workers: int = STATUS_WORKERS,
                 request_timeout: tuple[float, float] = (5.0, 30.0)) -> None:
        from kubernetes import client

        self.client = api_client
        self.core = client.CoreV1Api(api_client)
        self.batch = client.BatchV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hwtune-api")
        # Study-log writes have threads of their own: an answer waits for its record to be
        # stored, and must not queue behind launches and TuningTrial status patches.
        self._log_pool = ThreadPoolExecutor(max_workers=log_workers,
                                            thread_name_prefix="hwtune-log")
        # Views (study and trial status, Events) have their own few threads: however many
        # are due, launches and deletions never queue behind them.
        self._status_pool = ThreadPoolExecutor(max_workers=status_workers,
                                               thread_name_prefix="hwtune-status")
        # (connect, read): a call to an API server that restarted mid-request must fail and be
        # retried, never hold a worker forever.
        self.request_timeout = request_timeout

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._log_pool.shutdown(wait=False, cancel_futures=True)
        self._status_pool.shutdown(wait=False, cancel_futures=True)

    async def _call(self, fn: Callable[..., T], *args: Any, _pool: ThreadPoolExecutor | None = None,
                    _name: str | None = None, **kwargs: Any) -> T:
        from kubernetes.client.exceptions import ApiException

        loop = asyncio.get_running_loop()
        kwargs.setdefault("_request_timeout", self.request_timeout)
        if _pool is None and type(getattr(fn, "__self__", None)).__name__ == "CoordinationV1Api":
            # Lease renewals share the log's threads: queued behind a burst of launches and
            # status patches on a slow API server, a renewal came too late and the study's
            # runner stopped (its Lease counted as lost) in the middle of a 1,000-trial run.
            _pool = self._log_pool
        pool = _pool or self._pool
        name = _name or _call_name(fn, args)
        submitted = time.perf_counter()

        def timed() -> T:
            began = time.perf_counter()
            STATS.time(f"queue.{pool._thread_name_prefix}", began - submitted)
            try:
                return fn(*args, **kwargs)
            finally:
                STATS.time(name, time.perf_counter() - began)

        try:
            return await loop.run_in_executor(pool, timed)
        except ApiException as exc:
            raise ApiError(exc.status or 0, exc.reason or str(exc)) from None

    async def _call_plain(self, fn: Callable[..., Any], *args: Any,
                          _pool: ThreadPoolExecutor | None = None, **kwargs: Any) -> Any:
        """``_call`` returning the response as plain JSON: the client's model objects (and
        turning them back into dicts) cost more than the request itself for a Job or a full
        log chunk. Errors are the same ``ApiError``."""
        kwargs.setdefault("_request_timeout", self.request_timeout)

        def call(**_: Any) -> Any:  # _call's own _request_timeout is already in kwargs
            response = fn(*args, _preload_content=False, **kwargs)
            try:
                return json.loads(response.data) if response.data else None
            finally:
                response.release_conn()

        return await self._call(call, _pool=_pool, _name=_call_name(fn, args))

    async def pages(self, fn: Callable[..., Any], *args: Any, limit: int = LIST_PAGE,
                    **kwargs: Any) -> AsyncIterator[list[dict[str, Any]]]:
        """A paged LIST, one page of items (plain JSON) at a time: a caller keeps what it
        reads of each page, never every whole object at once (20,000 TuningTrials are ~60 MB)."""
        token = None
        while True:
            listing = await self._call_plain(fn, *args, limit=limit, **kwargs,
                                             **({"_continue": token} if token else {}))
            token = (listing.get("metadata") or {}).get("continue")
            yield listing.get("items") or []
            del listing
            if not token:
                return

    def _plain(self, obj: Any) -> dict[str, Any]:
        return obj if isinstance(obj, dict) else self.client.sanitize_for_serialization(obj)

    # -- generic ------------------------------------------------------------------------------
    async def create_or_get(self, create: Callable[..., Any], read: Callable[..., Any],
                            namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        try:
            return await self._call_plain(create, namespace, body)
        except ApiError as exc:
            if exc.status != 409:
                raise
        return await self._call_plain(read, body["metadata"]["name"], namespace)

    def log_store(self, namespace: str, study: str, study_uid: str) -> "StudyLogStore":
        return StudyLogStore(self, namespace, study, study_uid)

    # -- TuningStudies / TuningTrials ---------------------------------------------------------
    async def patch_study_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        await self._call(self.custom.patch_namespaced_custom_object_status, GROUP, VERSION,
                         namespace, "tuningstudies", name, {"status": dict(status)},
                         _pool=self._status_pool)

    async def create_trial(self, body: Mapping[str, Any]) -> dict[str, Any]:
        ns = body["metadata"]["namespace"]
        try:
            return await self._call(self.custom.create_namespaced_custom_object, GROUP, VERSION,
                                    ns, "tuningtrials", body)
        except ApiError as exc:
            if exc.status != 409:
                raise
        return await self._call(self.custom.get_namespaced_custom_object, GROUP, VERSION, ns,
                                "tuningtrials", body["metadata"]["name"])

    async def patch_trial_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        await self._call(self.custom.patch_namespaced_custom_object_status, GROUP, VERSION,
                         namespace, "tuningtrials", name, {"status": dict(status)},
                         _pool=self._status_pool)

    async def list_trials(self, namespace: str, study: str) -> list[dict[str, Any]]:
        """Every TuningTrial of the study, as much of it as the runner reads (metadata name and
        uid, spec.trialId, status phase and resource), read in pages: 20,000 whole TuningTrials
        are ~60 MB of JSON, never held at once."""
        items: list[dict[str, Any]] = []
        async for page in self.pages(self.custom.list_namespaced_custom_object, GROUP, VERSION,
                                     namespace, "tuningtrials",
                                     label_selector=f"{LABEL_STUDY}={study}"):
            for item in page:
                meta, status = item.get("metadata") or {}, item.get("status") or {}
                items.append({
                    "metadata": {"name": meta.get("name"), "uid": meta.get("uid")},
                    "spec": {"trialId": (item.get("spec") or {}).get("trialId")},
                    "status": {k: status[k] for k in ("phase", "resource") if k in status}})
        return items

    # -- Secrets ------------------------------------------------------------------------------
    async def create_secret(self, body: Mapping[str, Any]) -> None:
        """Create; one that exists already counts as created (its content is derived, so the
        same): the operator may create Secrets but never read them (least privilege)."""
        try:
            await self._call(self.core.create_namespaced_secret, body["metadata"]["namespace"], body)
        except ApiError as exc:
            if exc.status != 409:
                raise

    @staticmethod
    def secret_value(secret: Mapping[str, Any], key: str) -> bytes | None:
        data = secret.get("data") or {}
        if key in data and data[key] is not None:
            return base64.b64decode(data[key])
        string = secret.get("stringData") or {}
        return string[key].encode() if key in string else None

    # -- Jobs and pods ------------------------------------------------------------------------
    async def read_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return await self._call_plain(self.batch.read_namespaced_job, name, namespace)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    async def create_job(self, body: Mapping[str, Any]) -> dict[str, Any] | None:
        """The created Job, or None if one of that name exists (409)."""
        try:
            return await self._call_plain(self.batch.create_namespaced_job,
                                          body["metadata"]["namespace"], body)
        except ApiError as exc:
            if exc.status == 409:
                return None
            raise

    async def delete_job(self, namespace: str, name: str, uid: str | None = None) -> None:
        from kubernetes import client

        options = client.V1DeleteOptions(
            propagation_policy="Background",
            preconditions=client.V1Preconditions(uid=uid) if uid else None)
        try:
            await self._call(self.batch.delete_namespaced_job, name, namespace, body=options)
        except ApiError as exc:
            if exc.status not in (404, 409):  # gone, or a newer Job took the name
                raise

    async def list_jobs(self, namespace: str, study: str) -> list[dict[str, Any]]:
        """The study's Jobs (metadata and status: what the runner reads), in pages."""
        return await self._list_observed(self.batch.list_namespaced_job, "Job", namespace, study)

    async def list_pods(self, namespace: str, study: str,
                        trial: int | None = None) -> list[dict[str, Any]]:
        """The study's pods, or one trial's (metadata and status), in pages."""
        return await self._list_observed(self.core.list_namespaced_pod, "Pod", namespace, study,
                                         trial)

    async def _list_observed(self, fn: Callable[..., Any], kind: str, namespace: str,
                             study: str, trial: int | None = None) -> list[dict[str, Any]]:
        # Plain JSON, a page at a time, without the spec: a study's finished Jobs and their
        # pods stay (thousands at 20,000 trials), and turning each into the client's models
        # cost the restarted operator tens of seconds and hundreds of MiB.
        selector = f"{LABEL_STUDY}={study}"
        if trial is not None:
            selector += f",{LABEL_TRIAL}={trial}"
        items: list[dict[str, Any]] = []
        async for page in self.pages(fn, namespace, label_selector=selector):
            items.extend({"kind": kind, "metadata": item.get("metadata") or {},
                          "status": item.get("status") or {}} for item in page)
        return items

    async def delete_study_objects(self, namespace: str, study: str) -> None:
        """Jobs (with their pods) of a study, now; the GC would do it later. Token Secrets are
        left to the GC (owned by their TuningTrial): deleting a collection of Secrets returns
        their contents, which the operator may not read."""
        from kubernetes import client

        selector = f"{LABEL_STUDY}={study}"
        options = client.V1DeleteOptions(propagation_policy="Background")
        await self._call(self.batch.delete_collection_namespaced_job, namespace,
                         label_selector=selector, body=options)
        await self._call(self.core.delete_collection_namespaced_pod, namespace,
                         label_selector=selector, grace_period_seconds=0)

    async def count_study_objects(self, namespace: str, study: str) -> int:
        selector = f"{LABEL_STUDY}={study}"
        jobs = await self._call(self.batch.list_namespaced_job, namespace, label_selector=selector)
        pods = await self._call(self.core.list_namespaced_pod, namespace, label_selector=selector)
        return len(jobs.items) + len(pods.items)

    async def list_study_keys(self, namespaces: tuple[str, ...] = (),
                              match: Callable[[str], bool] | None = None) -> set[tuple[str, str]]:
        """(namespace, name) of every TuningStudy not being deleted: in ``namespaces`` (plain
        names, one listing each) or, with none, cluster-wide filtered by ``match``."""
        async def listed(list_fn: Callable[..., Any], *args: Any) -> set[tuple[str, str]]:
            keys: set[tuple[str, str]] = set()
            async for page in self.pages(list_fn, GROUP, VERSION, *args, limit=STUDY_PAGE):
                for item in page:
                    meta = item.get("metadata") or {}
                    if not meta.get("deletionTimestamp") and (
                            match is None or match(meta.get("namespace", ""))):
                        keys.add((meta.get("namespace", ""), meta.get("name", "")))
            return keys

        if not namespaces:
            return await listed(self.custom.list_cluster_custom_object, "tuningstudies")
        keys: set[tuple[str, str]] = set()
        for ns in namespaces:
            keys |= await listed(self.custom.list_namespaced_custom_object, ns, "tuningstudies")
        return keys

    # -- HardwarePools ------------------------------------------------------------------------
    async def list_pools(self) -> dict[str, dict[str, Any]]:
        listing = await self._call(self.custom.list_cluster_custom_object, GROUP, VERSION,
                                   "hardwarepools")
        return {p["metadata"]["name"]: p.get("spec") or {} for p in listing.get("items") or []}

    # -- Events -------------------------------------------------------------------------------
    async def post_event(self, involved: Mapping[str, Any], reason: str, message: str,
                         *, warning: bool = False) -> None:
        """A core/v1 Event on ``involved`` (apiVersion, kind, name, namespace, uid); best effort."""
        meta = {"generateName": f"{involved['name']}.", "namespace": involved["namespace"]}
        body = {"apiVersion": "v1", "kind": "Event", "metadata": meta,
                "involvedObject": dict(involved), "reason": reason, "message": message[:1024],
                "type": "Warning" if warning else "Normal",
                "source": {"component": "hwtune-operator"},
                "firstTimestamp": _now(), "lastTimestamp": _now(), "count": 1}
        try:
            await self._call_plain(self.core.create_namespaced_event, involved["namespace"], body,
                                   _pool=self._status_pool)
        except Exception as exc:  # noqa: BLE001 - events are for people; never fail a trial for one
            log.debug("event %s on %s not posted: %s", reason, involved.get("name"), exc)


class LogFence(Protocol):
    """What fences the study log's writes (``StudyLease``)."""

    @property
    def writer(self) -> str: ...  # this replica's identity, stamped on every chunk it writes

    def held(self) -> bool: ...  # the Lease is held and renewed in time: writes may go

    def overdue(self) -> bool: ...  # held, but a renewal is late: writes wait


class StudyLogStore:
    """``LogStore`` over ConfigMaps ``<study>-log-<chunk>`` (see ``log``).

    With a ``fence`` (the study's ``StudyLease``) every write is fenced: refused unless the
    Lease is held, stamped with the writer's identity (annotation ``hwtune.io/log-writer``) and
    conditional on the chunk's resourceVersion this writer last saw, so a writer that lost the
    study to another replica fails (``LogFenced``) instead of interleaving."""

    def __init__(self, api: KubeApi, namespace: str, study: str, study_uid: str) -> None:
        self.api, self.namespace, self.study, self.study_uid = api, namespace, study, study_uid
        self.fence: LogFence | None = None  # the study's StudyLease
        self._versions: dict[int, str] = {}  # chunk -> resourceVersion last read or written
        self.read_bytes = 0  # bytes of entries read (load timings)

    def _check_fence(self) -> None:
        from hwtune.backends.kubernetes.log import LogFenced

        if self.fence is not None and not self.fence.held():
            if self.fence.overdue():
                from hwtune.backends.kubernetes.lease import LeaseOverdue

                # Retried by the log's writer: the answers wait, nothing is lost.
                raise LeaseOverdue(f"study {self.namespace}/{self.study}: the study's Lease is "
                                   "overdue for renewal; log write deferred")
            raise LogFenced(f"study {self.namespace}/{self.study}: this replica does not hold "
                            "the study's Lease; log write refused")

    async def _ours(self, index: int, entries: Mapping[str, str]) -> bool:
        """After a conflict: is the chunk as this writer's own (timed-out) write left it?"""
        cm = self.api._plain(await self.api._call(self.api.core.read_namespaced_config_map,
                                                  self._name(index), self.namespace))
        meta = cm.get("metadata") or {}
        data = cm.get("data") or {}
        writer = self.fence.writer if self.fence is not None else ""
        if (meta.get("annotations") or {}).get(LOG_WRITER) == writer \
                and all(data.get(k) == v for k, v in entries.items()):
            self._versions[index] = meta["resourceVersion"]
            return True
        return False

    async def stamp(self, index: int) -> None:
        """Take the log over (after acquiring the Lease): mark the last chunk with this writer,
        conditional on the version just read, so an older writer's next write conflicts."""
        from hwtune.backends.kubernetes.log import LogFenced

        if self.fence is None or index not in self._versions:
            return
        body = {"metadata": {"resourceVersion": self._versions[index],
                             "annotations": {LOG_WRITER: self.fence.writer}}}
        try:
            cm = await self.api._call(self.api.core.patch_namespaced_config_map,
                                      self._name(index), self.namespace, body)
        except ApiError as exc:
            if exc.status == 409:
                raise LogFenced(f"study {self.namespace}/{self.study}: the log changed while "
                                "this replica took it over") from None
            raise
        self._versions[index] = self.api._plain(cm)["metadata"]["resourceVersion"]

    async def _seal_before(self, index: int) -> None:
        """Before a lane opens chunk ``index``: stamp the lane's previous chunk, conditional on
        the version this writer last saw. A writer that lost the study finds it stamped by the
        new one (409: ``LogFenced``) instead of opening a chunk the new writer never stamped."""
        from hwtune.backends.kubernetes.log import LANES, LogFenced

        previous = [i for i in self._versions if i < index and i % LANES == index % LANES]
        if not previous:
            return
        last = max(previous)
        body = {"metadata": {"resourceVersion": self._versions[last],
                             "annotations": {LOG_WRITER: self.fence.writer}}}
        try:
            cm = await self.api._call_plain(self.api.core.patch_namespaced_config_map,
                                            self._name(last), self.namespace, body,
                                            _pool=self.api._log_pool)
        except ApiError as exc:
            if exc.status == 409:
                raise LogFenced(f"study {self.namespace}/{self.study}: log chunk "
                                f"{self._name(last)} was written by another writer") from None
            raise
        self._versions[last] = cm["metadata"]["resourceVersion"]

    def _name(self, index: int) -> str:
        return f"{self.study}-log-{index}"

    async def read_chunks(self) -> list[tuple[int, Mapping[str, str]]]:
        """Every chunk, by one paged LIST by label (not a GET per chunk), as plain JSON."""
        core = self.api.core
        chunks: list[tuple[int, Mapping[str, str]]] = []
        async for page in self.api.pages(
                core.list_namespaced_config_map, self.namespace, limit=100,
                label_selector=f"{LABEL_STUDY}={self.study},{LABEL_LOG}=true"):
            for cm in page:
                meta = cm.get("metadata") or {}
                index = int((meta.get("labels") or {}).get(LABEL_CHUNK, "0"))
                chunks.append((index, cm.get("data") or {}))
                self._versions[index] = meta.get("resourceVersion")
                self.read_bytes += sum(len(v) for v in (cm.get("data") or {}).values())
        return chunks

    async def write_chunk(self, index: int, entries: Mapping[str, str], *, new: bool) -> None:
        from hwtune.backends.kubernetes.manifests import owner_reference

        from hwtune.backends.kubernetes.log import LogFenced

        core = self.api.core
        name = self._name(index)
        self._check_fence()
        writer = {LOG_WRITER: self.fence.writer} if self.fence is not None else {}
        if new and self.fence is not None:
            await self._seal_before(index)
        if new:
            body = {"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": name, "namespace": self.namespace,
                                 "labels": {LABEL_STUDY: self.study, LABEL_LOG: "true",
                                            LABEL_CHUNK: str(index)},
                                 "annotations": writer,
                                 "ownerReferences": [owner_reference(
                                     "TuningStudy", self.study, self.study_uid)]},
                    "data": dict(entries)}
            try:
                cm = await self.api._call_plain(core.create_namespaced_config_map,
                                                self.namespace, body, _pool=self.api._log_pool)
                self._versions[index] = cm["metadata"]["resourceVersion"]
                return
            except ApiError as exc:
                if exc.status != 409:
                    raise
            if self.fence is not None:
                if await self._ours(index, entries):
                    return
                raise LogFenced(f"study {self.namespace}/{self.study}: log chunk {name} was "
                                "created by another writer")
        patch: dict[str, Any] = {"data": dict(entries)}
        if self.fence is not None:
            patch["metadata"] = {"annotations": writer}
            if index in self._versions:
                patch["metadata"]["resourceVersion"] = self._versions[index]
        try:
            # The reply (the whole chunk, up to 64 KiB) is not turned into a V1ConfigMap.
            cm = await self.api._call_plain(core.patch_namespaced_config_map, name,
                                            self.namespace, patch, _pool=self.api._log_pool)
        except ApiError as exc:
            if exc.status != 409 or self.fence is None:
                raise
            if await self._ours(index, entries):
                return
            raise LogFenced(f"study {self.namespace}/{self.study}: log chunk {name} was "
                            "written by another writer") from None
        self._versions[index] = cm["metadata"]["resourceVersion"]
