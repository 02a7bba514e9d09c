"""An in-memory stand-in for the few API calls of ``hwtune.backends.kubernetes.KubeApi``, and a
fake "kubelet + trainer" that plays every Job's pod through the runner. For unit tests of the
runner's logic (order of writes, adoption, idempotency); the real path is tests/cluster."""

from __future__ import annotations

import asyncio
import copy
import json
import math
import uuid
from typing import Any, Mapping

from hwtune.api.records import Decision
from hwtune.backends.kubernetes.api import ApiError, KubeApi
from hwtune.backends.kubernetes.manifests import LABEL_LAUNCH, LABEL_TRIAL
from hwtune.report.protocol import ReportPayload

POOLS = {
    "t4": {"gpuType": "nvidia-tesla-t4", "gpuMemoryGiB": 16, "gpusPerNode": 1,
           "pricePerGPUHour": 0.53, "relativeThroughput": 1.0,
           "nodeSelector": {"hwtune.io/pool": "t4"},
           "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]},
    "a100": {"gpuType": "nvidia-a100", "gpuMemoryGiB": 80, "gpusPerNode": 8,
             "pricePerGPUHour": 4.1, "relativeThroughput": 4.0,
             "nodeSelector": {"hwtune.io/pool": "a100"},
             "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists",
                              "effect": "NoSchedule"}]},
}


def study_spec(**budget: Any) -> dict[str, Any]:
    return {
        "objectives": [{"metric": "val_error", "goal": "minimize"},
                       {"metric": "cost", "goal": "minimize"}],
        "parameters": {"lr": {"type": "float", "min": 1e-4, "max": 1e-1, "scale": "log"},
                       "width": {"type": "int", "values": [16, 32, 64]}},
        "hardware": {"pools": ["t4", "a100"], "gpuCounts": [1, 2]},
        "fidelity": {"resource": "epoch", "min": 1, "max": 9, "reductionFactor": 3},
        "algorithm": {"scheduler": "mo-asha", "searcher": "random", "seed": 3},
        "budget": {"maxTrials": 12, "maxParallelTrials": 4, **budget},
        "trialTemplate": {"metadata": {"annotations": {"hwtune.io/sim-outcome": "hold"}},
                          "spec": {"containers": [{"name": "trainer", "image": "trainer:1",
                                                   "args": ["--lr=$(HWTUNE_PARAM_LR)"]}]}},
    }


def val_error(params: Mapping[str, Any], epoch: int) -> float:
    """A deterministic learning curve: better with lr near 1e-2 and wider models."""
    distance = abs(math.log10(params["lr"]) + 2.0)
    return round(0.1 + 0.2 * distance + 0.5 / (epoch * params["width"] ** 0.25), 6)


class FakeLogStore:
    def __init__(self, chunks: dict[int, dict[str, str]]) -> None:
        self.chunks = chunks

    async def read_chunks(self) -> list[tuple[int, Mapping[str, str]]]:
        return [(i, dict(d)) for i, d in self.chunks.items()]

    async def write_chunk(self, index: int, entries: Mapping[str, str], *, new: bool) -> None:
        await asyncio.sleep(0)
        self.chunks.setdefault(index, {}).update(entries)


class FakeKube:
    """The cluster's state: objects by (kind, name). Survives runner restarts."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.chunks: dict[int, dict[str, str]] = {}
        self.job_creates = 0
        self.deleted_jobs: list[str] = []
        self.events: list[tuple[str, str]] = []
        self.study_status: dict[str, Any] = {}
        self.pods: dict[int, list[dict[str, Any]]] = {}  # a trial's pods, when set by a test
        self.pod_reads: list[int] = []  # trials whose pods the runner listed

    # the KubeApi surface the runner uses
    def log_store(self, namespace: str, study: str, uid: str) -> FakeLogStore:
        return FakeLogStore(self.chunks)

    async def list_pools(self) -> dict[str, dict[str, Any]]:
        return copy.deepcopy(POOLS)

    def _create(self, kind: str, body: Mapping[str, Any]) -> dict[str, Any] | None:
        key = (kind, body["metadata"]["name"])
        if key in self.objects:
            return None
        obj = copy.deepcopy(dict(body))
        obj["metadata"]["uid"] = str(uuid.uuid4())
        if kind == "Secret" and "stringData" in obj:
            import base64
            obj["data"] = {k: base64.b64encode(v.encode()).decode()
                           for k, v in obj.pop("stringData").items()}
        self.objects[key] = obj
        return copy.deepcopy(obj)

    async def create_secret(self, body: Mapping[str, Any]) -> dict[str, Any]:
        return self._create("Secret", body) or copy.deepcopy(
            self.objects[("Secret", body["metadata"]["name"])])

    secret_value = staticmethod(KubeApi.secret_value)

    async def create_trial(self, body: Mapping[str, Any]) -> dict[str, Any]:
        return self._create("TuningTrial", body) or copy.deepcopy(
            self.objects[("TuningTrial", body["metadata"]["name"])])

    async def patch_trial_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        obj = self.objects.get(("TuningTrial", name))
        if obj is None:
            raise ApiError(404, "not found")
        obj["status"] = json.loads(json.dumps(status))

    async def list_trials(self, namespace: str, study: str) -> list[dict[str, Any]]:
        return [copy.deepcopy(o) for (k, _), o in self.objects.items() if k == "TuningTrial"]

    async def patch_study_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        self.study_status = json.loads(json.dumps(status))

    async def read_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        job = self.objects.get(("Job", name))
        return copy.deepcopy(job) if job is not None else None

    async def create_job(self, body: Mapping[str, Any]) -> dict[str, Any] | None:
        created = self._create("Job", body)
        if created is not None:
            self.job_creates += 1
        return created

    async def delete_job(self, namespace: str, name: str, uid: str | None = None) -> None:
        job = self.objects.get(("Job", name))
        if job is not None and (uid is None or job["metadata"]["uid"] == uid):
            del self.objects[("Job", name)]
            self.deleted_jobs.append(name)
            # The garbage collector: what the Job owns (its token Secret) goes with it.
            owned = [key for key, o in self.objects.items()
                     if any(r.get("uid") == job["metadata"]["uid"]
                            for r in o["metadata"].get("ownerReferences") or [])]
            for key in owned:
                del self.objects[key]

    def secrets(self, trial: int | None = None) -> dict[str, dict[str, Any]]:
        return {n: o for (k, n), o in self.objects.items() if k == "Secret"
                and (trial is None or o["metadata"]["labels"][LABEL_TRIAL] == str(trial))}

    async def list_jobs(self, namespace: str, study: str) -> list[dict[str, Any]]:
        return [copy.deepcopy(o) for (k, _), o in self.objects.items() if k == "Job"]

    async def list_pods(self, namespace: str, study: str,
                        trial: int | None = None) -> list[dict[str, Any]]:
        if trial is not None:
            self.pod_reads.append(trial)
            if trial in self.pods:
                return copy.deepcopy(self.pods[trial])
        return [self.pod_of(o) for (k, _), o in self.objects.items()
                if k == "Job" and (trial is None or trial_of(o) == trial)]

    async def post_event(self, involved: Mapping[str, Any], reason: str, message: str,
                         *, warning: bool = False) -> None:
        self.events.append((reason, message))

    # what a kubelet would do
    @staticmethod
    def pod_of(job: Mapping[str, Any]) -> dict[str, Any]:
        meta = job["metadata"]
        return {"metadata": {"labels": dict(meta["labels"]),
                             "annotations": {LABEL_LAUNCH: meta["annotations"][LABEL_LAUNCH]}},
                "status": {"phase": "Running"}}

    def jobs(self) -> dict[str, dict[str, Any]]:
        return {n: o for (k, n), o in self.objects.items() if k == "Job"}


def job_env(job: Mapping[str, Any]) -> dict[str, str]:
    container = job["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e["value"] for e in container["env"]}


class FakeTrainers:
    """Plays every Job of the current launch: pod Running, one report per epoch until a halting
    decision, then the Job completes. Records every (trial, resource, decision)."""

    def __init__(self, kube: FakeKube) -> None:
        self.kube = kube
        self.decisions: list[tuple[int, int, str]] = []
        self._playing: set[tuple[str, str]] = set()
        self._done: set[str] = set()  # Job uids that ended

    async def step(self, runner: Any) -> None:
        """One round: start new Jobs, one report each for running ones."""
        for name, job in list(self.kube.jobs().items()):
            uid = job["metadata"]["uid"]
            if uid in self._done:
                continue
            env = job_env(job)
            key = (name, uid)
            if key not in self._playing:
                self._playing.add(key)
                # The Job controller counts the pod ready: the runner watches Jobs only.
                job["status"] = {"active": 1, "ready": 1}
                runner.job_event(copy.deepcopy(job))
                job.setdefault("_next", int(env["HWTUNE_REPORTED_RESOURCE"]) + 1)
            trial = env["HWTUNE_TRIAL_ID"]
            params = json.loads(env["HWTUNE_PARAMS"])
            epoch = job["_next"]
            reply = await runner.submit_report(
                trial, ReportPayload(epoch, {"val_error": val_error(params, epoch)}))
            self.decisions.append((int(trial), epoch, reply.decision.value))
            job["_next"] = epoch + 1
            if reply.decision is not Decision.CONTINUE:
                self._done.add(uid)
                job["status"] = {"conditions": [{"type": "Complete", "status": "True"}]}
                runner.job_event(copy.deepcopy(job))


def trial_of(job: Mapping[str, Any]) -> int:
    return int(job["metadata"]["labels"][LABEL_TRIAL])
