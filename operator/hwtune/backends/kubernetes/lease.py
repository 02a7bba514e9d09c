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

from hwtune.backends.kubernetes.log import LogDeferred

__all__ = ["ADDRESS_ANNOTATION", "IDENTITY", "INSTANCE_ANNOTATION", "LeaseHolders", "LeaseLost",
           "LeaseOverdue", "StudyLease", "default_identity", "lease_name", "report_address"]

log = logging.getLogger(__name__)

INSTANCE_ANNOTATION = "hwtune.io/holder-instance"
# host:port where the holder serves reports, so a standby replica can forward to it
ADDRESS_ANNOTATION = "hwtune.io/report-address"
POD_NAME_ENV = "HWTUNE_POD_NAME"
POD_IP_ENV = "HWTUNE_POD_IP"


def default_identity() -> str:
    """The pod's name when the chart gives it (stable across container restarts), else one
    unique to this process (two operators on one machine must never share an identity)."""
    pod = os.environ.get(POD_NAME_ENV, "").strip()
    return pod or f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


IDENTITY = default_identity()


def report_address(listen: str, port: int) -> str:
    """Where the other replicas reach this one's report endpoint: the pod's IP when the chart
    gives it (``HWTUNE_POD_IP``, downward API ``status.podIP``), else the address it listens
    on, else loopback (an operator outside the cluster, tests)."""
    host = os.environ.get(POD_IP_ENV, "").strip()
    if not host:
        host = listen if listen not in ("", "0.0.0.0", "::") else "127.0.0.1"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

# Studies whose Lease a newer incarnation of this very identity took from this process: this
# process is the zombie there, so it never takes such a Lease back at once (no ping-pong).
_SUPERSEDED: set[tuple[str, str]] = set()


class LeaseLost(RuntimeError):
    """Another replica holds (or took) the study's Lease: this one must not act for it."""


class LeaseOverdue(LogDeferred):
    """The Lease was not renewed within its duration, but nobody is known to have taken it: this
    replica does nothing until a renewal (a compare-and-swap on the version it last wrote, so
    it succeeds only if nobody took the Lease meanwhile) makes it the holder again. Retryable."""


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


def _coordination(api: Any) -> Any:
    from kubernetes import client

    return client.CoordinationV1Api(api.client)


async def _read_lease(api: Any, namespace: str, name: str) -> dict[str, Any] | None:
    """The Lease as plain JSON, or None when there is none."""
    from hwtune.backends.kubernetes.api import ApiError

    try:
        lease = await api._call(_coordination(api).read_namespaced_lease, name, namespace)
    except ApiError as exc:
        if exc.status == 404:
            return None
        raise
    return api._plain(lease)


class StudyLease:
    """The Lease of one study for this process. ``await acquire()`` (waits while another live
    holder has it), then ``await keep()`` as a task: it renews every ``renew_s`` and raises
    ``LeaseLost`` when the Lease turns out to be another's.

    A renewal that does not land within the duration (an API server too busy to answer in
    time) makes the Lease *overdue*, not lost: ``held()`` is false, so nothing is answered,
    launched or written, and renewing goes on. If nobody took the Lease meanwhile, the next
    renewal's compare-and-swap succeeds and this replica acts again with its state intact;
    if somebody did, the swap fails and it is ``LeaseLost``. (Treating every slow renewal as a
    loss made a loaded operator drop and reload its studies, which loaded the API server more.)"""

    def __init__(self, api: Any, namespace: str, study: str, study_uid: str, *,
                 identity: str = IDENTITY, duration_s: float = 15.0,
                 renew_s: float = 3.0) -> None:
        self.api, self.namespace, self.study, self.study_uid = api, namespace, study, study_uid
        self.identity = identity
        self.duration_s = duration_s
        self.renew_s = renew_s
        self.name = lease_name(study)
        self.instance = secrets.token_hex(6)  # this incarnation (one per runner)
        self.address: str | None = None  # published for standbys to forward reports to
        self.incarnation = -1  # the Lease's leaseTransitions when this incarnation took it
        self._version: str | None = None
        self._renewed = 0.0  # monotonic time of the last successful acquire/renew
        self.overdue_since: float | None = None  # monotonic time it went overdue
        self.overdue_count = 0  # times it went overdue and came back (for logs and tests)

    def held(self) -> bool:
        """Held for sure: renewed less than a duration (minus a margin for clock drift) ago."""
        return self._version is not None and \
            time.monotonic() - self._renewed < self.duration_s * 0.8

    def overdue(self) -> bool:
        """Not held for sure, not known to be lost: wait for the next renewal."""
        return self._version is not None and not self.held()

    @property
    def writer(self) -> str:
        """The fencing token the log's chunks are stamped with: identity and incarnation."""
        return f"{self.identity}#{self.incarnation}"

    def _body(self, *, acquired: float, transitions: int) -> dict[str, Any]:
        from hwtune.backends.kubernetes.manifests import owner_reference

        now = time.time()
        annotations = {INSTANCE_ANNOTATION: self.instance}
        if self.address:
            annotations[ADDRESS_ANNOTATION] = self.address
        meta: dict[str, Any] = {"name": self.name, "namespace": self.namespace,
                                "labels": {"hwtune.io/study": self.study},
                                "annotations": annotations,
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
        return await _read_lease(self.api, self.namespace, self.name)

    def _coordination(self) -> Any:
        return _coordination(self.api)

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

        current = await self._read()
        spec = (current or {}).get("spec") or {}
        if current is None or spec.get("holderIdentity") != self.identity \
                or _instance(current) != self.instance:
            self._version = None
            if current is not None and spec.get("holderIdentity") == self.identity \
                    and _instance(current) != self.instance:
                _SUPERSEDED.add((self.namespace, self.study))
                raise LeaseLost(f"study {self.namespace}/{self.study}: a newer incarnation of "
                                f"{self.identity} took the Lease {self.name} over")
            raise LeaseLost(f"study {self.namespace}/{self.study}: the Lease {self.name} is "
                            f"now held by {spec.get('holderIdentity') or 'nobody'}")
        # Still this incarnation's (only it writes its instance id), even at another version:
        # a renewal that timed out here may have landed there.
        self._version = current["metadata"]["resourceVersion"]
        # The renewTime written is taken now: a standby counts the duration from it.
        sent = time.monotonic()
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
        self._renewed = sent
        if self.overdue_since is not None and self.held():
            log.warning("study %s/%s: the Lease %s renewed again after %.1f s overdue (nobody "
                        "took it); acting for the study again", self.namespace, self.study,
                        self.name, time.monotonic() - self.overdue_since)
            self.overdue_since = None
            self.overdue_count += 1

    async def keep(self) -> None:
        """Renew forever (a task); raises ``LeaseLost`` when the Lease is found another's. An
        overdue Lease (see the class) is renewed on; a standby may take it meanwhile."""
        while True:
            # Overdue: try again soon, as a standby would take it after its duration.
            await asyncio.sleep(self.renew_s if self.overdue_since is None
                                else min(self.renew_s, 1.0))
            try:
                await self.renew()
            except (LeaseLost, asyncio.CancelledError):
                raise
            except Exception as exc:  # noqa: BLE001 - an API hiccup: retried
                log.warning("study %s/%s: renewing the Lease failed: %s", self.namespace,
                            self.study, exc)
            if self.overdue() and self.overdue_since is None:
                self.overdue_since = time.monotonic()
                log.warning("study %s/%s: the Lease %s was not renewed within %.0f s; not "
                            "acting for the study until it is renewed (or found taken)",
                            self.namespace, self.study, self.name, self.duration_s * 0.8)

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


class LeaseHolders:
    """Where each study's Lease holder serves reports (its ``ADDRESS_ANNOTATION``), for a
    standby replica forwarding a report (``hwtune.report.forward.HolderForwarder``).

    An address is cached until ``forget`` (the forwarder calls it when the address failed or
    answered 503, e.g. it stopped acting for the study); "no holder" is cached for
    ``miss_s``, so a flood of reports for an unknown study costs one Lease read a second.
    Concurrent look-ups of one study share one read. None: no live holder, or it is this
    replica (``own``: its own published address), so nothing is forwarded to itself."""

    def __init__(self, api: Any, own: str | None = None, *, miss_s: float = 1.0) -> None:
        self.api = api
        self.own = own
        self.miss_s = miss_s
        self.reads = 0
        self._known: dict[tuple[str, ...], tuple[str | None, float]] = {}
        self._reading: dict[tuple[str, ...], asyncio.Future[str | None]] = {}

    async def locate(self, scope: tuple[str, ...]) -> str | None:
        known = self._known.get(scope)
        # A holder elsewhere is kept until it fails; none (or this replica) only briefly.
        if known is not None and ((known[0] is not None and known[0] != self.own)
                                  or time.monotonic() < known[1]):
            return known[0] if known[0] != self.own else None
        reading = self._reading.get(scope)
        if reading is None:
            reading = asyncio.ensure_future(self._read(scope))
            self._reading[scope] = reading
            reading.add_done_callback(lambda _: self._reading.pop(scope, None))
        address = await asyncio.shield(reading)
        return address if address != self.own else None

    def forget(self, scope: tuple[str, ...]) -> None:
        self._known.pop(scope, None)

    async def _read(self, scope: tuple[str, ...]) -> str | None:
        namespace, study = scope
        self.reads += 1
        try:
            current = await _read_lease(self.api, namespace, lease_name(study))
        except Exception as exc:  # noqa: BLE001 - e.g. a namespace not watched: no holder
            log.debug("reading the Lease of %s/%s failed: %s", namespace, study, exc)
            current = None
        address = None
        if current is not None:
            spec = current.get("spec") or {}
            expires = _parse(spec.get("renewTime")) + float(
                spec.get("leaseDurationSeconds") or 0)
            if spec.get("holderIdentity") and time.time() < expires:
                address = ((current.get("metadata") or {}).get("annotations") or {}).get(
                    ADDRESS_ANNOTATION) or None
        if len(self._known) >= 10_000:  # studies come and go: never an unbounded map
            self._known.clear()
        self._known[scope] = (address, time.monotonic() + self.miss_s)
        return address
