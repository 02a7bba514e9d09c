"""One writer per study: a coordination.k8s.io Lease ``<study>-writer`` held by the runner that
acts for the study, renewed while it runs (docs/operator-design.md, section 6).

kopf peering is advisory (two replicas of equal priority both run), so the study's runner first
takes this Lease and only then loads the log, answers reports and launches Jobs; a runner that
cannot renew it in time stops acting (``LeaseLost``). The log's writes are fenced as well
(``StudyLogStore``: a chunk write carries the writer identity and the chunk's last seen
resourceVersion), so even a writer that has not noticed its loss yet cannot interleave.
Every update is a compare-and-swap on the Lease's resourceVersion.

Identity: ``HWTUNE_POD_NAME`` (the chart sets it to the pod's name from the downward API) is
stable across restarts of the operator's container, so a restarted operator recognises the Lease
of its own pod and takes it over at once instead of waiting for it to expire; a different
replica still waits. Each ``StudyLease`` is one *incarnation*: a random instance id stored in
the Lease (annotation ``hwtune.io/holder-instance``) and a fencing number (``leaseTransitions``,
raised by every acquisition by another incarnation). A zombie of the same pod (an old process
not dead yet) is fenced like a former holder of another replica: its next renewal finds another
instance (``LeaseLost``), and its next log write finds the chunk stamped by the new
incarnation's ``writer`` (409, ``LogFenced``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import secrets
import socket
import time
from typing import Any

__all__ = ["IDENTITY", "INSTANCE_ANNOTATION", "LeaseLost", "StudyLease", "default_identity",
           "lease_name"]

log = logging.getLogger(__name__)

INSTANCE_ANNOTATION = "hwtune.io/holder-instance"
POD_NAME_ENV = "HWTUNE_POD_NAME"


def default_identity() -> str:
    """The pod's name when the chart gives it (stable across container restarts), else one
    unique to this process (two operators on one machine must never share an identity)."""
    pod = os.environ.get(POD_NAME_ENV, "").strip()
    return pod or f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


IDENTITY = default_identity()

# Studies whose Lease a newer incarnation of this very identity took from this process: this
# process is the zombie there, so it never takes such a Lease back at once (no ping-pong).
_SUPERSEDED: set[tuple[str, str]] = set()


class LeaseLost(RuntimeError):
    """Another replica holds (or took) the study's Lease: this one must not act for it."""


def lease_name(study: str) -> str:
    return f"{study}-writer"


def _micro(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(value: Any) -> float:
    if value is None:
        return 0.0
    if isinstance(value, dt.datetime):
        return value.timestamp()
    text = str(value).replace("Z", "+00:00")
    return dt.datetime.fromisoformat(text).timestamp()


def _instance(lease: dict[str, Any]) -> str | None:
    return ((lease.get("metadata") or {}).get("annotations") or {}).get(INSTANCE_ANNOTATION)


class StudyLease:
    """The Lease of one study for this process. ``await acquire()`` (waits while another live
    holder has it), then ``await keep()`` as a task: it renews every ``renew_s`` and raises
    ``LeaseLost`` when the Lease is another's or could not be renewed within its duration."""

    def __init__(self, api: Any, namespace: str, study: str, study_uid: str, *,
                 identity: str = IDENTITY, duration_s: float = 15.0,
                 renew_s: float = 3.0) -> None:
        self.api, self.namespace, self.study, self.study_uid = api, namespace, study, study_uid
        self.identity = identity
        self.duration_s = duration_s
        self.renew_s = renew_s
        self.name = lease_name(study)
        self.instance = secrets.token_hex(6)  # this incarnation (one per runner)
        self.incarnation = -1  # the Lease's leaseTransitions when this incarnation took it
        self._version: str | None = None
        self._renewed = 0.0  # monotonic time of the last successful acquire/renew

    def held(self) -> bool:
        """Held for sure: renewed less than a duration (minus a margin for clock drift) ago."""
        return self._version is not None and \
            time.monotonic() - self._renewed < self.duration_s * 0.8

    @property
    def writer(self) -> str:
        """The fencing token the log's chunks are stamped with: identity and incarnation."""
        return f"{self.identity}#{self.incarnation}"

    def _body(self, *, acquired: float, transitions: int) -> dict[str, Any]:
        from hwtune.backends.kubernetes.manifests import owner_reference

        now = time.time()
        meta: dict[str, Any] = {"name": self.name, "namespace": self.namespace,
                                "labels": {"hwtune.io/study": self.study},
                                "annotations": {INSTANCE_ANNOTATION: self.instance},
                                "ownerReferences": [owner_reference(
                                    "TuningStudy", self.study, self.study_uid)]}
        if self._version is not None:
            meta["resourceVersion"] = self._version  # compare-and-swap
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": meta,
                "spec": {"holderIdentity": self.identity,
                         "leaseDurationSeconds": max(1, int(round(self.duration_s))),
                         "acquireTime": _micro(acquired), "renewTime": _micro(now),
                         "leaseTransitions": transitions}}

    async def _read(self) -> dict[str, Any] | None:
        from hwtune.backends.kubernetes.api import ApiError

        coordination = self._coordination()
        try:
            lease = await self.api._call(coordination.read_namespaced_lease, self.name,
                                         self.namespace)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise
        return self.api._plain(lease)

    def _coordination(self) -> Any:
        from kubernetes import client

        return client.CoordinationV1Api(self.api.client)

    async def try_acquire(self) -> bool:
        """One attempt: True when this process now holds the Lease."""
        from hwtune.backends.kubernetes.api import ApiError

        coordination = self._coordination()
        started = time.monotonic()
        current = await self._read()
        if current is None:
            self._version = None
            try:
                created = await self.api._call(coordination.create_namespaced_lease,
                                               self.namespace,
                                               self._body(acquired=time.time(), transitions=0))
            except ApiError as exc:
                if exc.status == 409:
                    return False
                raise
            self._version = self.api._plain(created)["metadata"]["resourceVersion"]
            self._renewed = started
            self.incarnation = 0
            return True
        spec = current.get("spec") or {}
        holder = spec.get("holderIdentity")
        instance = _instance(current)
        renewed = _parse(spec.get("renewTime"))
        duration = float(spec.get("leaseDurationSeconds") or self.duration_s)
        mine = holder == self.identity and instance == self.instance
        if holder and not mine and time.time() < renewed + duration:
            if holder != self.identity or (self.namespace, self.study) in _SUPERSEDED:
                return False  # a live holder
            # A former incarnation of this pod (the container restarted): take over now; it is
            # fenced by the new instance in the Lease and the new writer stamp in the log.
        self._version = current["metadata"]["resourceVersion"]
        transitions = int(spec.get("leaseTransitions") or 0) + (not mine)
        acquired = _parse(spec.get("acquireTime")) if mine else time.time()
        try:
            replaced = await self.api._call(coordination.replace_namespaced_lease, self.name,
                                            self.namespace,
                                            self._body(acquired=acquired, transitions=transitions))
        except ApiError as exc:
            self._version = None
            if exc.status == 409:  # someone else was faster
                return False
            raise
        self._version = self.api._plain(replaced)["metadata"]["resourceVersion"]
        self._renewed = started
        self.incarnation = transitions
        _SUPERSEDED.discard((self.namespace, self.study))  # held again (after an expiry)
        if holder and not mine:
            log.info("study %s/%s: took over the Lease from %s%s", self.namespace, self.study,
                     holder, " (a former incarnation of this pod)"
                     if holder == self.identity else "")
        return True

    async def acquire(self) -> None:
        """Wait until this process holds the Lease (a standby replica waits here)."""
        waited = False
        while True:
            try:
                if await self.try_acquire():
                    return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - an API hiccup: try again
                log.warning("study %s/%s: taking the Lease failed: %s", self.namespace,
                            self.study, exc)
            if not waited:
                log.info("study %s/%s: another replica holds the Lease; standing by",
                         self.namespace, self.study)
                waited = True
            await asyncio.sleep(self.renew_s)

    async def renew(self) -> None:
        """One renewal (compare-and-swap); ``LeaseLost`` if the Lease is no longer ours."""
        from hwtune.backends.kubernetes.api import ApiError

        started = time.monotonic()
        current = await self._read()
        spec = (current or {}).get("spec") or {}
        if current is None or spec.get("holderIdentity") != self.identity \
                or _instance(current) != self.instance \
                or current["metadata"]["resourceVersion"] != self._version:
            self._version = None
            if current is not None and spec.get("holderIdentity") == self.identity \
                    and _instance(current) != self.instance:
                _SUPERSEDED.add((self.namespace, self.study))
                raise LeaseLost(f"study {self.namespace}/{self.study}: a newer incarnation of "
                                f"{self.identity} took the Lease {self.name} over")
            raise LeaseLost(f"study {self.namespace}/{self.study}: the Lease {self.name} is "
                            f"now held by {spec.get('holderIdentity') or 'nobody'}")
        try:
            replaced = await self.api._call(
                self._coordination().replace_namespaced_lease, self.name, self.namespace,
                self._body(acquired=_parse(spec.get("acquireTime")),
                           transitions=int(spec.get("leaseTransitions") or 0)))
        except ApiError as exc:
            if exc.status in (404, 409):
                self._version = None
                raise LeaseLost(f"study {self.namespace}/{self.study}: the Lease {self.name} "
                                f"changed under this replica ({exc})") from None
            raise
        self._version = self.api._plain(replaced)["metadata"]["resourceVersion"]
        self._renewed = started

    async def keep(self) -> None:
        """Renew forever (a task); raises ``LeaseLost`` when it is lost or expires unrenewed."""
        while True:
            await asyncio.sleep(self.renew_s)
            try:
                await self.renew()
            except (LeaseLost, asyncio.CancelledError):
                raise
            except Exception as exc:  # noqa: BLE001 - an API hiccup: retried until expiry
                log.warning("study %s/%s: renewing the Lease failed: %s", self.namespace,
                            self.study, exc)
            if not self.held():
                self._version = None
                raise LeaseLost(f"study {self.namespace}/{self.study}: the Lease {self.name} "
                                "was not renewed in time")

    async def release(self) -> None:
        """Give the Lease up at a clean stop, so a standby need not wait for it to expire."""
        if self._version is None:
            return
        try:
            current = await self._read()
            if current and (current.get("spec") or {}).get("holderIdentity") == self.identity \
                    and _instance(current) == self.instance:
                body = self._body(acquired=time.time(), transitions=int(
                    (current.get("spec") or {}).get("leaseTransitions") or 0))
                body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
                body["spec"]["holderIdentity"] = None
                await self.api._call(self._coordination().replace_namespaced_lease, self.name,
                                     self.namespace, body)
        except Exception as exc:  # noqa: BLE001 - it expires anyway
            log.debug("study %s/%s: releasing the Lease failed: %s", self.namespace,
                      self.study, exc)
        self._version = None
