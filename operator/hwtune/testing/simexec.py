"""The simulated trainer's exec mode: a trial pod's real command, run on this machine.

KWOK pods run no containers. In exec mode (``SimTrainer(mode="exec")``, ``--exec``) the
simulated trainer plays the kubelet for each held trial pod on a KWOK node:

1. the pod's primary container (the one given ``HWTUNE_TRIAL_ID``, else the first) is run as a
   local process: ``command`` + ``args`` with Kubernetes' ``$(VAR)`` expansion (``$$`` is a
   literal ``$``; an undefined variable is left as written), the container's ``env`` (plain
   values, expanded in order; ``fieldRef`` to the pod's name, namespace, uid, labels,
   annotations and node; ``configMapKeyRef`` / ``secretKeyRef`` read through the API) over this
   machine's ``PATH``, in a fresh temporary working directory (container paths, images and
   volumes mean nothing here; a trial's token Secret is written to a file there and
   ``HWTUNE_REPORT_TOKEN_FILE`` points at it, so SDK trainers work too);
2. its stdout and stderr are written, in the CRI log format a kubelet writes
   (``<RFC 3339 time> stdout|stderr F|P <line>``), to a file that a KWOK ``Logs`` object
   (kwok.x-k8s.io/v1alpha1, named after the pod, owned by it) names as that container's log:
   the kwok controller serves it at the kubelet's log endpoint, so ``kubectl logs -f`` and the
   operator's metrics collector read it through the API server as from a real node
   (``hack/cluster.sh`` enables the ``Logs`` kind);
3. the pod ends through the stage annotations of ``hack/kwok/stages.yaml`` with the process's
   exit code (0: succeed, else fail with that code; a signal N gives 128 + N, as a container
   runtime reports it);
4. when the pod is deleted (its Job deleted by the operator), the process group gets SIGTERM,
   then SIGKILL after ``GRACE_SECONDS``, and the pod ends with 143 / 137.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import re
import shutil
import signal
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Mapping

from hwtune.trainer import env as trial_env

__all__ = ["GRACE_SECONDS", "LOGS_API", "container_env", "expand", "run_pod"]

LOGS_API = ("kwok.x-k8s.io", "v1alpha1", "logs")
GRACE_SECONDS = 3.0  # SIGTERM -> SIGKILL; below KWOK's 5 s kill of a held terminating pod
MAX_ENTRY = 16 * 1024  # longer lines are split into partial (P) entries, as the kubelet does
_VAR = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(value: str, env: Mapping[str, str]) -> str:
    """Kubernetes' expansion of ``$(VAR)`` in command, args and env values."""
    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env[name] if name in env else match.group(0)

    return _VAR.sub(one, value)


def _field(pod: Mapping[str, Any], path: str) -> str:
    meta = pod.get("metadata") or {}
    simple = {"metadata.name": meta.get("name"), "metadata.namespace": meta.get("namespace"),
              "metadata.uid": meta.get("uid"),
              "spec.nodeName": (pod.get("spec") or {}).get("nodeName"),
              "spec.serviceAccountName": (pod.get("spec") or {}).get("serviceAccountName"),
              "status.podIP": (pod.get("status") or {}).get("podIP"),
              "status.hostIP": (pod.get("status") or {}).get("hostIP")}
    if path in simple:
        return str(simple[path] or "")
    found = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
    if found:
        return str((meta.get(found.group(1)) or {}).get(found.group(2), ""))
    raise ValueError(f"fieldRef {path!r} is not supported by the exec mode")


def container_env(pod: Mapping[str, Any], container: Mapping[str, Any], core: Any = None
                  ) -> dict[str, str]:
    """The container's environment as the kubelet would build it (``core``: a CoreV1Api for
    ``configMapKeyRef`` / ``secretKeyRef``)."""
    import base64

    namespace = (pod.get("metadata") or {}).get("namespace", "")
    env: dict[str, str] = {}
    for entry in container.get("env") or []:
        name = entry.get("name", "")
        if "value" in entry:
            env[name] = expand(str(entry["value"]), env)
            continue
        source = entry.get("valueFrom") or {}
        if "fieldRef" in source:
            env[name] = _field(pod, source["fieldRef"].get("fieldPath", ""))
        elif "configMapKeyRef" in source and core is not None:
            ref = source["configMapKeyRef"]
            data = core.read_namespaced_config_map(ref["name"], namespace).data or {}
            if ref["key"] in data:
                env[name] = data[ref["key"]]
            elif not ref.get("optional"):
                raise ValueError(f"env {name}: ConfigMap {ref['name']} has no key {ref['key']}")
        elif "secretKeyRef" in source and core is not None:
            ref = source["secretKeyRef"]
            data = core.read_namespaced_secret(ref["name"], namespace).data or {}
            if ref["key"] in data:
                env[name] = base64.b64decode(data[ref["key"]]).decode()
            elif not ref.get("optional"):
                raise ValueError(f"env {name}: Secret {ref['name']} has no key {ref['key']}")
        elif "value" not in entry and not source:
            env[name] = ""
        else:
            raise ValueError(f"env {name}: {sorted(source)} is not supported by the exec mode")
    return env


def _stamp() -> bytes:
    now = dt.datetime.now(dt.timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.%f000Z").encode()


class _CriLog:
    """Writes a process's output as a kubelet's CRI log file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh: BinaryIO = open(path, "ab", buffering=0)  # noqa: SIM115 - closed in close()
        self._partial: dict[str, bytes] = {"stdout": b"", "stderr": b""}

    def _entry(self, stream: str, tag: bytes, content: bytes) -> None:
        self._fh.write(_stamp() + b" " + stream.encode() + b" " + tag + b" " + content + b"\n")

    def write(self, stream: str, data: bytes) -> None:
        data = self._partial[stream] + data
        *lines, rest = data.split(b"\n")
        for line in lines:
            while len(line) > MAX_ENTRY:
                self._entry(stream, b"P", line[:MAX_ENTRY])
                line = line[MAX_ENTRY:]
            self._entry(stream, b"F", line)
        while len(rest) > MAX_ENTRY:
            self._entry(stream, b"P", rest[:MAX_ENTRY])
            rest = rest[MAX_ENTRY:]
        self._partial[stream] = rest

    def close(self) -> None:
        for stream, rest in self._partial.items():
            if rest:
                self._entry(stream, b"F", rest)  # a last line without its newline
        self._partial = {"stdout": b"", "stderr": b""}
        self._fh.close()


def _logs_object(pod: Mapping[str, Any], container: str, path: Path) -> dict[str, Any]:
    meta = pod["metadata"]
    return {
        "apiVersion": f"{LOGS_API[0]}/{LOGS_API[1]}", "kind": "Logs",
        "metadata": {"name": meta["name"], "namespace": meta["namespace"],
                     "labels": {"hwtune.io/sim-exec": "true"},
                     # The garbage collector removes it with the pod.
                     "ownerReferences": [{"apiVersion": "v1", "kind": "Pod",
                                          "name": meta["name"], "uid": meta["uid"]}]},
        "spec": {"logs": [{"containers": [container], "logsFile": str(path), "follow": True}]},
    }


def _publish_log(custom: Any, body: Mapping[str, Any]) -> None:
    """Create the pod's Logs object (replace one left by an earlier run of the trainer)."""
    from kubernetes.client.exceptions import ApiException

    group, version, plural = LOGS_API
    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
    try:
        custom.create_namespaced_custom_object(group, version, namespace, plural, body)
    except ApiException as exc:
        if exc.status == 404:
            raise ValueError("the cluster serves no container logs: the kwok.x-k8s.io Logs "
                             "kind is missing (start the cluster with hack/cluster.sh, which "
                             "enables it)") from None
        if exc.status != 409:
            raise
        custom.patch_namespaced_custom_object(group, version, namespace, plural, name,
                                              {"spec": body["spec"]})


async def _pump(stream: asyncio.StreamReader, name: str, log: _CriLog) -> None:
    while True:
        data = await stream.read(65536)
        if not data:
            return
        log.write(name, data)


def _exit_code(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode


async def run_pod(sim: Any, state: Any, pod: dict[str, Any]) -> None:
    """Run ``pod``'s primary container for ``sim`` (a SimTrainer) and end the pod with its exit
    code (see the module doc). ``state`` is the trainer's ``_PodState``."""
    from hwtune.testing.simtrainer import (
        EXIT_FAILED,
        SimTrainerError,
        _container_env,
        _local_checkpoint_location,
        _redirect,
        _secret_for_path,
    )

    run = state.run
    workdir = Path(tempfile.mkdtemp(prefix=f"hwtune-exec-{run.pod[:40]}-"))
    try:
        try:
            container, _ = _container_env(pod)
            env = await sim._io(container_env, pod, container, sim._core)
            argv = [expand(str(a), env) for a in
                    (container.get("command") or []) + (container.get("args") or [])]
            if not container.get("command"):
                raise SimTrainerError(f"container {container.get('name')!r} has no command: the "
                                      "exec mode cannot know its image's entrypoint")
            token_file = env.get(trial_env.REPORT_TOKEN_FILE, "").strip()
            if token_file and not env.get(trial_env.REPORT_TOKEN):
                secret, key = _secret_for_path(pod, container, token_file)
                token = await sim._io(sim._read_token, run.namespace, secret, key)
                local = workdir / ".hwtune-token"
                local.write_text(token)
                env[trial_env.REPORT_TOKEN_FILE] = str(local)
            if sim.report_url and env.get(trial_env.REPORT_URL):
                env[trial_env.REPORT_URL] = _redirect(env[trial_env.REPORT_URL], sim.report_url)
            if env.get(trial_env.CHECKPOINT_URI):
                location = _local_checkpoint_location(env[trial_env.CHECKPOINT_URI],
                                                      sim.checkpoint_root)
                if location:
                    env[trial_env.CHECKPOINT_URI] = location
                else:
                    env.pop(trial_env.CHECKPOINT_URI)
            run.trial = env.get(trial_env.TRIAL_ID, run.trial)
            name = container.get("name", "")
            log_dir = sim.log_root / f"{run.namespace}_{run.pod}_{run.uid}"
            log_dir.mkdir(parents=True, exist_ok=True)
            log_path = log_dir / f"{name}.log"
            log_path.touch()
            run.log_path = str(log_path)
            await sim._io(_publish_log, sim._custom, _logs_object(pod, name, log_path))
        except (SimTrainerError, ValueError, KeyError, OSError) as exc:
            await sim._end(state, "failed", EXIT_FAILED, str(exc).strip("'\""))
            return
        base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(workdir),
                "HOSTNAME": run.pod}
        log = _CriLog(log_path)
        try:
            process = await asyncio.create_subprocess_exec(
                *argv, cwd=workdir, env={**base, **env}, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                start_new_session=True)
        except OSError as exc:
            log.write("stderr", f"exec {argv[0]!r}: {exc}\n".encode())
            log.close()
            # What a runtime reports for a command it cannot start.
            await sim._end(state, "failed", 127 if isinstance(exc, FileNotFoundError) else 126,
                           f"exec {argv[0]!r}: {exc}")
            return
        pumps = [asyncio.ensure_future(_pump(process.stdout, "stdout", log)),
                 asyncio.ensure_future(_pump(process.stderr, "stderr", log))]
        killed = False
        try:
            waiting = asyncio.ensure_future(process.wait())
            deleted = asyncio.ensure_future(state.terminating.wait())
            await asyncio.wait({waiting, deleted}, return_when=asyncio.FIRST_COMPLETED)
            deleted.cancel()
            if not waiting.done():
                killed = True
                _signal(process.pid, signal.SIGTERM)
                try:
                    async with asyncio.timeout(GRACE_SECONDS):
                        await asyncio.shield(waiting)
                except asyncio.TimeoutError:
                    _signal(process.pid, signal.SIGKILL)
                    await waiting
            else:
                _signal(process.pid, signal.SIGKILL)  # what it left behind in its group
            await asyncio.gather(*pumps, return_exceptions=True)
        except asyncio.CancelledError:
            _signal(process.pid, signal.SIGKILL)  # the trainer stops: so do its processes
            raise
        finally:
            log.close()
        code = _exit_code(process.returncode if process.returncode is not None else -9)
        outcome = "killed" if killed else "exited"
        await sim._end(state, outcome, code, f"{' '.join(argv)[:200]}: exit {code}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _signal(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
