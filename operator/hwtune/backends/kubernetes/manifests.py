"""The objects the operator writes for a study, as plain dicts (no I/O here).

Names are deterministic, so a create retried after a crash finds the object it made before:

=============================== =================================================================
``<study>-<trial>``             the TuningTrial and its Job (one Job per launch, same name;
                                annotation ``hwtune.io/launch`` tells the launches apart)
``<study>-<trial>-token-<n>``   the trial's report token for launch n (Secret, key ``token``),
                                owned by that launch's Job (so the GC deletes it with the Job)
                                and mounted at ``/var/run/hwtune/token/token``
(no Secret)                     the study's token key is HMAC-SHA256(operator key,
                                namespace/study/uid) and a trial's token HMAC-SHA256(key, trial
                                id): the same on every retry and after a restart, never read back
``<study>-log-<chunk>``         the study's event log (ConfigMaps, see ``hwtune.backends.kubernetes.log``)
=============================== =================================================================

Labels on everything: ``hwtune.io/study``, plus ``hwtune.io/trial`` and ``hwtune.io/pool`` on a
trial's objects and its pods.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import logging
import os
import secrets
from dataclasses import dataclass
from typing import Any, Mapping

from hwtune.api.records import Hardware
from hwtune.trainer.env import REPORT_TOKEN_FILE, TrialEnv

__all__ = [
    "GPU_RESOURCE",
    "LABEL_LAUNCH",
    "LABEL_POOL",
    "LABEL_STUDY",
    "LABEL_TRIAL",
    "TOKEN_PATH",
    "JobParams",
    "derive_token",
    "job_manifest",
    "job_name",
    "derive_study_key",
    "key_secret_name",
    "operator_key",
    "owner_reference",
    "token_secret_manifest",
    "token_secret_name",
    "trial_manifest",
]

GROUP_VERSION = "hwtune.io/v1alpha1"
LABEL_STUDY = "hwtune.io/study"
LABEL_TRIAL = "hwtune.io/trial"
LABEL_POOL = "hwtune.io/pool"
LABEL_LAUNCH = "hwtune.io/launch"  # an annotation on Jobs and their pods
GPU_RESOURCE = "nvidia.com/gpu"
TOKEN_DIR = "/var/run/hwtune/token"
TOKEN_PATH = f"{TOKEN_DIR}/token"
TOKEN_VOLUME = "hwtune-report-token"
CHECKPOINT_VOLUME = "hwtune-checkpoints"
DEFAULT_CHECKPOINT_ROOT = "/checkpoints"


def job_ended(job: Mapping[str, Any]) -> bool:
    """The Job finished: its Complete or Failed condition is True."""
    return any(c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
               for c in (job.get("status") or {}).get("conditions") or [])


def job_name(study: str, trial_id: int) -> str:
    return f"{study}-{trial_id}"


def token_secret_name(study: str, trial_id: int, launch: int) -> str:
    """One per launch: the Secret goes with its Job, and a relaunch's new Secret must not be
    mistaken (409) for the older launch's one that the GC is about to delete."""
    return f"{study}-{trial_id}-token-{launch}"


def key_secret_name(study: str) -> str:
    return f"{study}-report-key"


_ephemeral_key: bytes | None = None


def operator_key() -> bytes:
    """The operator's master key: HWTUNE_OPERATOR_KEY (the chart puts it there from the Secret
    it creates once, ``<release>-operator-key``), else one random key for this process (a dev
    operator; its tokens do not survive a restart of the process)."""
    global _ephemeral_key
    value = os.environ.get("HWTUNE_OPERATOR_KEY", "").strip()
    if value:
        return value.encode()
    if _ephemeral_key is None:
        _ephemeral_key = secrets.token_bytes(32)
        logging.getLogger(__name__).warning(
            "HWTUNE_OPERATOR_KEY is not set: report tokens use a key that dies with this process")
    return _ephemeral_key


def derive_study_key(master: bytes, namespace: str, study: str, uid: str) -> bytes:
    """The study's token key, derived from the operator's master key (HWTUNE_OPERATOR_KEY):
    nothing to store, nothing to read back after a restart."""
    return hmac.new(master, f"study:{namespace}/{study}/{uid}".encode(), hashlib.sha256).digest()


def derive_token(key: bytes, trial_id: int | str) -> str:
    """The trial's bearer token, derived from the study's key (hex, 64 characters)."""
    return hmac.new(key, f"trial:{trial_id}".encode(), hashlib.sha256).hexdigest()


def owner_reference(kind: str, name: str, uid: str, *, api_version: str = GROUP_VERSION,
                    controller: bool = True, block: bool = True) -> dict[str, Any]:
    return {"apiVersion": api_version, "kind": kind, "name": name, "uid": uid,
            "controller": controller, "blockOwnerDeletion": block}


def _labels(study: str, trial_id: int | None = None, hardware: Hardware | None = None
            ) -> dict[str, str]:
    labels = {LABEL_STUDY: study}
    if trial_id is not None:
        labels[LABEL_TRIAL] = str(trial_id)
    if hardware is not None:
        labels[LABEL_POOL] = hardware.pool
    return labels


def trial_manifest(*, namespace: str, study: str, study_uid: str, trial_id: int,
                   config: Mapping[str, Any], hardware: Hardware | None,
                   target_resource: int | None, resume_from: str | None) -> dict[str, Any]:
    spec: dict[str, Any] = {"studyName": study, "trialId": trial_id, "parameters": dict(config)}
    if hardware is not None:
        spec["hardware"] = {"pool": hardware.pool, "gpuCount": hardware.gpu_count}
    if target_resource is not None:
        spec["targetResource"] = target_resource
    if resume_from:
        spec["resumeFromCheckpoint"] = resume_from
    return {
        "apiVersion": GROUP_VERSION, "kind": "TuningTrial",
        "metadata": {"name": job_name(study, trial_id), "namespace": namespace,
                     "labels": _labels(study, trial_id, hardware),
                     "ownerReferences": [owner_reference("TuningStudy", study, study_uid)]},
        "spec": spec,
    }


def token_secret_manifest(*, namespace: str, study: str, trial_id: int, launch: int,
                          token: str, job_uid: str) -> dict[str, Any]:
    """The token Secret of one launch, owned by its Job: deleting a finished trial's Job takes
    its pod and its token with it (the operator may create Secrets, never delete or read them).
    Not a controller reference (the Job controller owns pods only) and not blocking (a Job's
    deletion never waits for its Secret)."""
    return {
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": token_secret_name(study, trial_id, launch), "namespace": namespace,
                     "labels": _labels(study, trial_id),
                     "annotations": {LABEL_LAUNCH: str(launch)},
                     "ownerReferences": [owner_reference(
                         "Job", job_name(study, trial_id), job_uid, api_version="batch/v1",
                         controller=False, block=False)]},
        "stringData": {"token": token},
    }


@dataclass(frozen=True)
class JobParams:
    """What one launch of a trial needs beyond the study's template."""

    namespace: str
    study: str
    trial_id: int
    trial_uid: str
    launch: int
    env: TrialEnv  # the report protocol's variables (the token travels as a file, not here)
    hardware: Hardware | None
    node_selector: Mapping[str, str]
    tolerations: tuple[Mapping[str, Any], ...]
    gpu_pool: bool  # False for a CPU pool: no nvidia.com/gpu limit
    retry_limit: int
    checkpoint_claim: str | None = None
    checkpoint_mount: str | None = None


def checkpoint_uri(checkpoints: Mapping[str, Any] | None, study: str, trial_id: int) -> str:
    """Where a trial's checkpoints go: ``<uri or path>/<study>/<trial>``."""
    checkpoints = checkpoints or {}
    root = checkpoints.get("uri") or checkpoints.get("path") or DEFAULT_CHECKPOINT_ROOT
    return f"{str(root).rstrip('/')}/{study}/{trial_id}"


def job_manifest(template: Mapping[str, Any], p: JobParams) -> dict[str, Any]:
    """The batch/v1 Job of one launch, from the study's ``spec.trialTemplate`` (a pod template).

    The primary container (``primaryContainerName``, else the first) is the trainer: it gets the HWTUNE_* variables first in its env (so the
    template's own env and command can use ``$(HWTUNE_PARAM_X)``), the token file and the GPU
    limit. The pod gets the pool's node selector and tolerations, our labels, restartPolicy
    Never (a podFailurePolicy needs it) and the token volume."""
    template = copy.deepcopy(dict(template))
    # A Job-level template (trialTemplate.job: Job fields + pod template) or a bare pod spec.
    job_fields = dict(template.get("job") or {})
    pod_template = job_fields.pop("template", None) or template
    meta = copy.deepcopy(dict(pod_template.get("metadata") or {}))
    pod = copy.deepcopy(dict(pod_template.get("spec") or {}))
    labels = {**(meta.get("labels") or {}), **_labels(p.study, p.trial_id, p.hardware)}
    annotations = {**(meta.get("annotations") or {}), LABEL_LAUNCH: str(p.launch)}
    containers = [dict(c) for c in pod.get("containers") or []]
    if not containers:
        raise ValueError("spec.trialTemplate.spec.containers: needs at least one container")
    primary = template.get("primaryContainerName")
    index = next((i for i, c in enumerate(containers) if c.get("name") == primary), 0)
    trainer = containers[index]
    ours = [{"name": k, "value": v} for k, v in sorted(p.env.to_env().items())]
    ours.append({"name": REPORT_TOKEN_FILE, "value": TOKEN_PATH})
    own_names = {e["name"] for e in ours}
    trainer["env"] = ours + [e for e in trainer.get("env") or [] if e.get("name") not in own_names]
    mounts = [m for m in trainer.get("volumeMounts") or []
              if m.get("name") not in (TOKEN_VOLUME, CHECKPOINT_VOLUME)]
    mounts.append({"name": TOKEN_VOLUME, "mountPath": TOKEN_DIR, "readOnly": True})
    volumes = [v for v in pod.get("volumes") or []
               if v.get("name") not in (TOKEN_VOLUME, CHECKPOINT_VOLUME)]
    volumes.append({"name": TOKEN_VOLUME, "secret": {
        "secretName": token_secret_name(p.study, p.trial_id, p.launch),
        "defaultMode": 0o440}})
    if p.checkpoint_claim:
        mounts.append({"name": CHECKPOINT_VOLUME,
                       "mountPath": p.checkpoint_mount or DEFAULT_CHECKPOINT_ROOT})
        volumes.append({"name": CHECKPOINT_VOLUME,
                        "persistentVolumeClaim": {"claimName": p.checkpoint_claim}})
    trainer["volumeMounts"] = mounts
    resources = copy.deepcopy(dict(trainer.get("resources") or {}))
    limits = dict(resources.get("limits") or {})
    requests = dict(resources.get("requests") or {})
    limits.pop(GPU_RESOURCE, None)
    requests.pop(GPU_RESOURCE, None)
    if p.gpu_pool and p.hardware is not None:
        limits[GPU_RESOURCE] = str(p.hardware.gpu_count)
    if limits:
        resources["limits"] = limits
    if requests:
        resources["requests"] = requests
    if resources:
        trainer["resources"] = resources
    containers[index] = trainer
    pod["containers"] = containers
    pod["volumes"] = volumes
    pod["restartPolicy"] = "Never"
    if p.node_selector:
        pod["nodeSelector"] = {**(pod.get("nodeSelector") or {}), **dict(p.node_selector)}
    if p.tolerations:
        pod["tolerations"] = list(pod.get("tolerations") or []) + [dict(t) for t in p.tolerations]
    name = job_name(p.study, p.trial_id)
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "namespace": p.namespace,
                     "labels": _labels(p.study, p.trial_id, p.hardware),
                     "annotations": {LABEL_LAUNCH: str(p.launch)},
                     "ownerReferences": [owner_reference("TuningTrial", name, p.trial_uid)]},
        "spec": {
            # Failures other than disruptions (crash, OOM, exit 75 after SIGTERM) start a new
            # pod that resumes from the checkpoint, up to retry_limit; then the Job fails.
            "backoffLimit": job_fields.get("backoffLimit", p.retry_limit),
            **{k: job_fields[k] for k in ("activeDeadlineSeconds", "ttlSecondsAfterFinished")
               if k in job_fields},
            "podFailurePolicy": {"rules": [
                {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
            ]},
            "template": {"metadata": {"labels": labels, "annotations": annotations},
                         "spec": pod},
        },
    }
