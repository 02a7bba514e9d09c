"""Start, stop or attach to the Kubernetes cluster the cluster tests and the demo run against.

The cluster is the local control plane of ``hack/cluster.sh`` (real etcd, kube-apiserver,
kube-controller-manager and kube-scheduler; KWOK for the simulated GPU nodes and pod
lifecycles), or any cluster named by ``$HWTUNE_TEST_KUBECONFIG`` (for instance a kind cluster
made by ``hack/kind/up.sh``), which is then only attached to: never started nor stopped.

API (kept small on purpose)::

    cluster = LocalCluster.from_env()        # attach if HWTUNE_TEST_KUBECONFIG is set
    cluster.up()                             # idempotent; raises ClusterUnavailable with why
    cluster.kubectl("get", "nodes", "-o", "json").stdout
    cluster.kubectl("apply", "-f", "-", input=manifest_yaml)
    cluster.get_json("pods", namespace="ns")          # parsed kubectl get -o json
    cluster.wait_for(lambda: ..., timeout=30, what="job x to complete")
    cluster.kubeconfig, cluster.bin_dir, cluster.env()
    cluster.down()                           # no-op when attached

Pods on the simulated nodes obey the annotations described in ``hack/kwok/stages.yaml``:
``hwtune.io/sim-outcome`` (succeed | fail | hold), ``hwtune.io/sim-duration`` ("3s"),
``hwtune.io/sim-exit-code`` and ``hwtune.io/sim-start-delay``; the constants below name them.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from hwtune.testing._paths import repo_root

__all__ = [
    "ATTACH_ENV",
    "SIM_DURATION",
    "SIM_EXIT_CODE",
    "SIM_OUTCOME",
    "SIM_START_DELAY",
    "ClusterUnavailable",
    "KubectlError",
    "LocalCluster",
    "default_cache_dir",
    "wait_for",
]

T = TypeVar("T")

ATTACH_ENV = "HWTUNE_TEST_KUBECONFIG"
SIM_OUTCOME = "hwtune.io/sim-outcome"
SIM_DURATION = "hwtune.io/sim-duration"
SIM_EXIT_CODE = "hwtune.io/sim-exit-code"
SIM_START_DELAY = "hwtune.io/sim-start-delay"

# What hack/cluster.sh needs in the bin dir before it can start anything.
REQUIRED_BINARIES = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kwok",
    "kwokctl",
    "kubectl",
)


class ClusterUnavailable(RuntimeError):
    """The cluster cannot be started or reached; the message says why and what to do."""


class KubectlError(subprocess.CalledProcessError):
    """A kubectl command failed; unlike CalledProcessError, str() includes its stderr."""

    def __str__(self) -> str:
        command = " ".join(str(a) for a in self.cmd[1:]) if isinstance(self.cmd, list) else self.cmd
        stderr = (self.stderr or "").strip()
        return f"kubectl {command} exited with {self.returncode}: {stderr or '(no stderr)'}"


def default_cache_dir() -> Path:
    """``$HWTUNE_CACHE_DIR`` or ``~/.cache/hwtune``: where binaries and cluster state live."""
    return Path(os.environ.get("HWTUNE_CACHE_DIR") or Path.home() / ".cache" / "hwtune")


def wait_for(
    predicate: Callable[[], T],
    timeout: float,
    what: str,
    interval: float = 0.2,
) -> T:
    """Call ``predicate`` until it returns something truthy, and return that.

    Exceptions from the predicate count as "not yet" (the object may not exist yet); on
    timeout a ``TimeoutError`` names ``what``, the time waited and the last value or error,
    so a failing test says what it was waiting for instead of hanging or sleeping blindly.
    """
    if timeout <= 0:
        raise ValueError(f"timeout: must be > 0 seconds, got {timeout!r}")
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = predicate()
        except Exception as exc:  # noqa: BLE001 - reported in the TimeoutError below
            last = exc
        else:
            if value:
                return value
            last = value
        if time.monotonic() >= deadline:
            raise TimeoutError(
                f"timed out after {timeout:g}s waiting for {what}; last saw: {last!r}"
            )
        time.sleep(interval)


class LocalCluster:
    """One cluster: the local control plane named ``name``, or an attached kubeconfig.

    ``name`` selects the state directory ``<cache>/clusters/<name>`` so several clusters (or
    a leftover one) can coexist; ``attach_kubeconfig`` makes this object use an existing
    cluster and never start or stop it.
    """

    def __init__(
        self,
        name: str = "hwtune",
        *,
        cache_dir: str | os.PathLike[str] | None = None,
        bin_dir: str | os.PathLike[str] | None = None,
        attach_kubeconfig: str | os.PathLike[str] | None = None,
        script: str | os.PathLike[str] | None = None,
    ) -> None:
        self.name = name
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.bin_dir = Path(
            bin_dir or os.environ.get("HWTUNE_BIN_DIR") or self.cache_dir / "bin"
        )
        self.script = Path(script) if script is not None else repo_root() / "hack" / "cluster.sh"
        self.attached = attach_kubeconfig is not None
        if attach_kubeconfig is not None:
            self.kubeconfig = Path(attach_kubeconfig).expanduser()
        else:
            self.kubeconfig = self.cache_dir / "clusters" / name / "kubeconfig"

    @classmethod
    def from_env(cls, name: str | None = None) -> LocalCluster:
        """Attach to ``$HWTUNE_TEST_KUBECONFIG`` when set, else the local cluster ``name``
        (default ``$HWTUNE_CLUSTER_NAME`` or ``hwtune``)."""
        attach = os.environ.get(ATTACH_ENV)
        cluster_name = name or os.environ.get("HWTUNE_CLUSTER_NAME") or "hwtune"
        return cls(cluster_name, attach_kubeconfig=attach or None)

    def __repr__(self) -> str:
        mode = "attached" if self.attached else "local"
        return f"LocalCluster(name={self.name!r}, {mode}, kubeconfig={str(self.kubeconfig)!r})"

    # --- lifecycle -------------------------------------------------------------------------

    @property
    def kubectl_path(self) -> Path:
        """kubectl from the cache; when attached and the cache has none, the one on PATH."""
        cached = self.bin_dir / "kubectl"
        if cached.is_file() or not self.attached:
            return cached
        found = shutil.which("kubectl")
        return Path(found) if found else cached

    def missing_binaries(self) -> list[str]:
        if self.attached:
            return [] if self.kubectl_path.is_file() else ["kubectl"]
        return [b for b in REQUIRED_BINARIES if not os.access(self.bin_dir / b, os.X_OK)]

    def up(self, timeout: float = 180) -> LocalCluster:
        """Start the local cluster (or check the attached one answers) and return self."""
        missing = self.missing_binaries()
        if missing:
            hint = (
                "install kubectl or put it in the cache bin dir"
                if self.attached
                else "build them once with hack/build-control-plane.sh"
            )
            raise ClusterUnavailable(
                f"missing binaries in {self.bin_dir}: {', '.join(missing)}; {hint}"
            )
        if self.attached:
            if not self.kubeconfig.is_file():
                raise ClusterUnavailable(f"{ATTACH_ENV}={self.kubeconfig}: no such file")
            self._check_readyz()
            return self
        try:
            result = self._script("up", timeout=timeout)
        except ClusterUnavailable:
            # The script was killed half way: stop whatever it had started, then report.
            self.down()
            raise
        if result.returncode != 0:
            raise ClusterUnavailable(
                f"hack/cluster.sh up --name {self.name} failed ({result.returncode}):\n"
                f"{result.stderr.strip()}"
            )
        return self

    def down(self, timeout: float = 60) -> None:
        """Stop every process of the local cluster and remove its state (attached: no-op)."""
        if self.attached:
            return
        result = self._script("down", timeout=timeout)
        if result.returncode != 0:
            raise ClusterUnavailable(
                f"hack/cluster.sh down --name {self.name} failed: {result.stderr.strip()}"
            )

    def is_up(self) -> bool:
        """True when the API server answers /readyz with ok."""
        try:
            self._check_readyz()
        except (ClusterUnavailable, subprocess.TimeoutExpired):
            return False
        return True

    def env(self) -> dict[str, str]:
        """``os.environ`` plus KUBECONFIG and the bin dir on PATH, for child processes."""
        env = dict(os.environ)
        env["KUBECONFIG"] = str(self.kubeconfig)
        env["PATH"] = f"{self.bin_dir}{os.pathsep}{env.get('PATH', '')}"
        return env

    # --- talking to the cluster ------------------------------------------------------------

    def kubectl(
        self,
        *args: str,
        input: str | None = None,  # noqa: A002 - mirrors subprocess.run
        check: bool = True,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this cluster; raise KubectlError (with stderr) when it fails."""
        command = [str(self.kubectl_path), "--kubeconfig", str(self.kubeconfig)]
        if not self.attached:
            # Local clusters reuse ports; kubectl's shared discovery cache is keyed by host:port.
            command += ["--cache-dir", str(self.kubeconfig.parent / ".kube-cache")]
        command += args
        result = subprocess.run(
            command,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise KubectlError(result.returncode, command, result.stdout, result.stderr)
        return result

    def get_json(
        self, resource: str, name: str | None = None, *, namespace: str | None = None,
        selector: str | None = None,
    ) -> dict[str, Any]:
        """``kubectl get RESOURCE [NAME] -o json``, parsed."""
        args = ["get", resource, *([name] if name else []), "-o", "json"]
        if namespace:
            args += ["--namespace", namespace]
        if selector:
            args += ["--selector", selector]
        return json.loads(self.kubectl(*args).stdout)

    def apply(self, manifest: Mapping[str, Any] | Sequence[Mapping[str, Any]] | str,
              *, namespace: str | None = None) -> subprocess.CompletedProcess[str]:
        """``kubectl apply -f -`` of a YAML/JSON string, an object or a list of objects."""
        if isinstance(manifest, str):
            text = manifest
        elif isinstance(manifest, Mapping):
            text = json.dumps(manifest)
        else:
            text = json.dumps({"apiVersion": "v1", "kind": "List", "items": list(manifest)})
        args = ["apply", "-f", "-", *(["--namespace", namespace] if namespace else [])]
        return self.kubectl(*args, input=text)

    def wait_for(
        self, predicate: Callable[[], T], timeout: float, what: str, interval: float = 0.2
    ) -> T:
        """See :func:`wait_for`."""
        return wait_for(predicate, timeout, what, interval)

    # --- internals -------------------------------------------------------------------------

    def _check_readyz(self) -> None:
        result = self.kubectl("get", "--raw", "/readyz", check=False, timeout=15)
        if result.returncode != 0 or result.stdout.strip() != "ok":
            raise ClusterUnavailable(
                f"API server of {self.kubeconfig} is not ready: "
                f"{(result.stderr or result.stdout).strip()}"
            )

    def _script(self, command: str, timeout: float) -> subprocess.CompletedProcess[str]:
        if not self.script.is_file():
            raise ClusterUnavailable(f"{self.script} not found: is this a repository checkout?")
        env = dict(os.environ)
        env["HWTUNE_CACHE_DIR"] = str(self.cache_dir)
        env["HWTUNE_BIN_DIR"] = str(self.bin_dir)
        # Own process group, so a timeout stops the script and its kwokctl together (the
        # components run in sessions of their own; `down` finds them by their pid files).
        process = subprocess.Popen(
            ["bash", str(self.script), command, "--name", self.name],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            start_new_session=True,
        )
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise ClusterUnavailable(
                f"hack/cluster.sh {command} --name {self.name} took longer than {timeout:g}s"
            ) from exc
        return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
