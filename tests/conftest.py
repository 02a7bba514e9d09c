"""Fixtures shared by every test directory.

Cluster tests (tests/cluster, tests/e2e, ...) use two fixtures:

``kube`` (session)
    A :class:`hwtune.testing.LocalCluster` that is up: the local control plane of
    ``hack/cluster.sh`` (real apiserver, controller-manager and scheduler; KWOK nodes of
    ``hack/cluster/nodes.yaml``), started once per session and torn down at its end, or the
    cluster of ``$HWTUNE_TEST_KUBECONFIG`` (kind, a dev cluster), which is never started or
    stopped. Missing binaries are an error with the reason, never a skip.
``namespace`` (function)
    A fresh namespace (its name is printed) whose default service account exists; deleted
    after the test. On failure, the namespace's pods and events are printed first.

Tests that use either fixture get the ``cluster`` marker automatically, so
``pytest -m "not cluster"`` runs everything else without any binaries.

Knobs: ``--cluster-name NAME`` / ``$HWTUNE_CLUSTER_NAME`` (default ``pytest-<pid>``: every
session gets its own cluster, so concurrent sessions never stop each other's; a cluster of
that name that is already up is reused and left running); ``--keep-cluster`` /
``HWTUNE_KEEP_CLUSTER=1`` (leave the cluster running; the next session with the same name
starts warm).
"""

from __future__ import annotations

import os
import re
import secrets
import warnings
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from hwtune.testing.cluster import (
    ATTACH_ENV,
    ClusterUnavailable,
    LocalCluster,
    default_cache_dir,
)

_CLUSTER_FIXTURES = {"kube", "namespace"}
_SESSION_CLUSTER_RE = re.compile(r"^pytest-(\d+)$")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("hwtune cluster")
    group.addoption(
        "--cluster-name",
        default=os.environ.get("HWTUNE_CLUSTER_NAME"),
        help="name of the local cluster the `kube` fixture uses (default: pytest-<pid>)",
    )
    group.addoption(
        "--keep-cluster",
        action="store_true",
        default=os.environ.get("HWTUNE_KEEP_CLUSTER", "") not in ("", "0", "false"),
        help="leave the local cluster running after the session",
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # A test that needs the cluster is a cluster test, whether or not its author marked it.
    for item in items:
        if _CLUSTER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.cluster)
    # Tests that restart control-plane components of the shared session cluster run last, so
    # a component that comes back slowly (a loaded CI machine) cannot fail every later test.
    items.sort(key=lambda item: item.get_closest_marker("disruptive") is not None)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    # Remember each phase's outcome so the namespace fixture can tell a failed test.
    report = yield
    setattr(item, f"hwtune_report_{report.when}", report)
    return report


def _session_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, another user's process
    return True


def _reap_abandoned_session_clusters(cache_dir: Path) -> None:
    """Stop pytest-<pid> clusters whose session died without tearing them down."""
    clusters, locks = cache_dir / "clusters", cache_dir / "cluster-locks"
    entries = [e for folder in (clusters, locks) if folder.is_dir() for e in folder.iterdir()]
    for entry in entries:
        match = _SESSION_CLUSTER_RE.match(entry.name.removesuffix(".lock"))
        if not match or int(match.group(1)) == os.getpid() or _session_alive(int(match.group(1))):
            continue
        if entry.is_dir():
            try:
                LocalCluster(entry.name, cache_dir=cache_dir).down()
            except ClusterUnavailable as exc:  # a leftover must not fail this session
                warnings.warn(f"abandoned cluster {entry.name} not removed: {exc}", stacklevel=1)
        elif entry.parent == locks:
            entry.unlink(missing_ok=True)  # cluster.sh's lock file of a finished session


@pytest.fixture(scope="session")
def kube(request: pytest.FixtureRequest) -> Iterator[LocalCluster]:
    """The cluster under test, up and ready (see the module docstring)."""
    if os.environ.get(ATTACH_ENV):
        yield LocalCluster.from_env().up()
        return
    name = request.config.getoption("--cluster-name") or f"pytest-{os.getpid()}"
    _reap_abandoned_session_clusters(default_cache_dir())
    cluster = LocalCluster(name)
    started_here = not (cluster.kubeconfig.is_file() and cluster.is_up())
    cluster.up()
    try:
        yield cluster
    finally:
        if started_here and not request.config.getoption("--keep-cluster"):
            cluster.down()


def _namespace_name(test_name: str) -> str:
    stem = re.sub(r"[^a-z0-9]+", "-", test_name.lower()).strip("-")
    stem = stem.removeprefix("test-")[:40].strip("-") or "test"
    return f"{stem}-{secrets.token_hex(3)}"


@pytest.fixture
def namespace(kube: LocalCluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace for one test; deleted afterwards."""
    name = _namespace_name(request.node.name)
    print(f"namespace: {name}")
    kube.kubectl("create", "namespace", name)
    kube.kubectl("label", "namespace", name, "hwtune.io/test=true")
    # Pods are refused until the service-account controller has made the default account.
    kube.wait_for(
        lambda: kube.kubectl("-n", name, "get", "serviceaccount", "default", check=False)
        .returncode == 0,
        timeout=30,
        what=f"service account {name}/default",
    )
    try:
        yield name
    finally:
        report = getattr(request.node, "hwtune_report_call", None)
        if report is not None and report.failed:
            for what in (
                ["get", "jobs,pods", "-o", "wide"],
                ["get", "events", "--sort-by=.lastTimestamp"],
            ):
                result = kube.kubectl("-n", name, *what, check=False)
                print(f"$ kubectl -n {name} {' '.join(what)}\n{result.stdout}{result.stderr}")
        # No waiting for the namespace controller: the next test uses a new namespace anyway.
        kube.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)
