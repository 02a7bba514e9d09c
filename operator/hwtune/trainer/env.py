"""The environment contract between a backend and the trainer it launches.

Every backend (local processes, Kubernetes Jobs) builds a ``TrialEnv`` and passes
``TrialEnv.to_env()`` to the trial; the SDK reads it back with ``TrialEnv.from_env()``. Keeping
both directions in one class means the two sides cannot drift. Variables (all strings):

=========================== ===============================================================
HWTUNE_TRIAL_ID             trial id within the study (the report URL's ``{trial}``)
HWTUNE_STUDY                study name
HWTUNE_PARAMS               hyperparameters as one JSON object (inactive conditionals absent)
HWTUNE_PARAM_<NAME>         each hyperparameter on its own, name upper-cased (for shell scripts)
HWTUNE_POOL                 hardware pool the trial runs on (absent: no hardware dimension)
HWTUNE_GPU_COUNT            GPUs assigned to the trial
HWTUNE_RESOURCE_NAME        name of the resource level, e.g. ``epoch``
HWTUNE_TARGET_RESOURCE      level this launch is expected to reach before a decision (a rung)
HWTUNE_MAX_RESOURCE         the study's maximum level; the trial is complete there
HWTUNE_RESUME               ``1`` when this launch resumes a paused or preempted trial
HWTUNE_REPORTED_RESOURCE    highest level the study already holds for this trial (0: none)
HWTUNE_REPORT_URL           base URL of the report endpoint (absent: offline, reports logged)
HWTUNE_REPORT_TOKEN         the trial's bearer token
HWTUNE_REPORT_TOKEN_FILE    or a file holding it (a mounted Secret); the variable wins
HWTUNE_CHECKPOINT_URI       the trial's checkpoint location: a directory or an fsspec URI
HWTUNE_REPORT_RETRY_SECONDS how long report() retries an unreachable endpoint (default 120)
=========================== ===============================================================
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from hwtune.api.records import Hardware

__all__ = ["ENV_PREFIX", "TrialEnv", "TrialEnvError"]

ENV_PREFIX = "HWTUNE_"
TRIAL_ID = "HWTUNE_TRIAL_ID"
STUDY = "HWTUNE_STUDY"
PARAMS = "HWTUNE_PARAMS"
PARAM_PREFIX = "HWTUNE_PARAM_"
POOL = "HWTUNE_POOL"
GPU_COUNT = "HWTUNE_GPU_COUNT"
RESOURCE_NAME = "HWTUNE_RESOURCE_NAME"
TARGET_RESOURCE = "HWTUNE_TARGET_RESOURCE"
MAX_RESOURCE = "HWTUNE_MAX_RESOURCE"
RESUME = "HWTUNE_RESUME"
REPORTED_RESOURCE = "HWTUNE_REPORTED_RESOURCE"
REPORT_URL = "HWTUNE_REPORT_URL"
REPORT_TOKEN = "HWTUNE_REPORT_TOKEN"
REPORT_TOKEN_FILE = "HWTUNE_REPORT_TOKEN_FILE"
CHECKPOINT_URI = "HWTUNE_CHECKPOINT_URI"
REPORT_RETRY_SECONDS = "HWTUNE_REPORT_RETRY_SECONDS"

_PARAM_ENV_NAME = re.compile(r"[^A-Za-z0-9_]")


class TrialEnvError(ValueError):
    """A HWTUNE_* variable is malformed; the message names it."""


def _int(environ: Mapping[str, str], name: str, default: int | None, minimum: int) -> int | None:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise TrialEnvError(f"{name}={raw!r}: must be an integer") from None
    if value < minimum:
        raise TrialEnvError(f"{name}={raw!r}: must be >= {minimum}")
    return value


@dataclass(frozen=True)
class TrialEnv:
    """Everything a trial learns from its environment. Defaults describe a script started by
    hand: trial ``0``, no hyperparameters, no endpoint (reports are only logged)."""

    trial_id: str = "0"
    study: str = ""
    params: Mapping[str, Any] = field(default_factory=dict)
    hardware: Hardware | None = None
    resource_name: str = "epoch"
    target_resource: int | None = None
    max_resource: int | None = None
    resume: bool = False
    reported_resource: int = 0
    report_url: str | None = None
    report_token: str | None = None
    checkpoint_uri: str | None = None
    report_retry_seconds: float = 120.0

    def to_env(self) -> dict[str, str]:
        """The variables a backend sets for this trial."""
        env = {
            TRIAL_ID: str(self.trial_id),
            STUDY: self.study,
            PARAMS: json.dumps(dict(self.params), sort_keys=True),
            RESOURCE_NAME: self.resource_name,
            RESUME: "1" if self.resume else "0",
            REPORTED_RESOURCE: str(self.reported_resource),
            REPORT_RETRY_SECONDS: repr(float(self.report_retry_seconds)),
        }
        for name, value in self.params.items():
            env[PARAM_PREFIX + _PARAM_ENV_NAME.sub("_", name).upper()] = (
                json.dumps(value) if isinstance(value, bool) else str(value))
        optional = {
            POOL: self.hardware.pool if self.hardware else None,
            GPU_COUNT: str(self.hardware.gpu_count) if self.hardware else None,
            TARGET_RESOURCE: None if self.target_resource is None else str(self.target_resource),
            MAX_RESOURCE: None if self.max_resource is None else str(self.max_resource),
            REPORT_URL: self.report_url,
            REPORT_TOKEN: self.report_token,
            CHECKPOINT_URI: self.checkpoint_uri,
        }
        env.update({k: v for k, v in optional.items() if v is not None})
        return env

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "TrialEnv":
        env = os.environ if environ is None else environ
        raw_params = env.get(PARAMS, "").strip()
        params: dict[str, Any] = {}
        if raw_params:
            try:
                params = json.loads(raw_params)
            except ValueError as exc:
                raise TrialEnvError(f"{PARAMS}: not valid JSON ({exc})") from None
            if not isinstance(params, dict):
                raise TrialEnvError(f"{PARAMS}: must be a JSON object of name to value")
        pool = env.get(POOL, "").strip()
        hardware = None
        if pool:
            hardware = Hardware(pool=pool, gpu_count=_int(env, GPU_COUNT, 1, 1) or 1)
        token = env.get(REPORT_TOKEN, "").strip() or None
        token_file = env.get(REPORT_TOKEN_FILE, "").strip()
        if token is None and token_file:
            try:
                with open(token_file, encoding="utf-8") as fh:
                    token = fh.read().strip() or None
            except OSError as exc:
                raise TrialEnvError(f"{REPORT_TOKEN_FILE}={token_file!r}: {exc.strerror}") from None
        raw_retry = env.get(REPORT_RETRY_SECONDS, "").strip()
        try:
            retry = float(raw_retry) if raw_retry else 120.0
        except ValueError:
            raise TrialEnvError(f"{REPORT_RETRY_SECONDS}={raw_retry!r}: must be a number") from None
        if not retry >= 0:
            raise TrialEnvError(f"{REPORT_RETRY_SECONDS}={raw_retry!r}: must be >= 0")
        target = _int(env, TARGET_RESOURCE, None, 1)
        maximum = _int(env, MAX_RESOURCE, None, 1)
        if target is not None and maximum is not None and target > maximum:
            raise TrialEnvError(f"{TARGET_RESOURCE}={target} exceeds {MAX_RESOURCE}={maximum}")
        return cls(
            trial_id=env.get(TRIAL_ID, "").strip() or "0",
            study=env.get(STUDY, ""),
            params=params,
            hardware=hardware,
            resource_name=env.get(RESOURCE_NAME, "").strip() or "epoch",
            target_resource=target,
            max_resource=maximum,
            resume=env.get(RESUME, "").strip().lower() in ("1", "true", "yes"),
            reported_resource=_int(env, REPORTED_RESOURCE, 0, 0) or 0,
            report_url=env.get(REPORT_URL, "").strip() or None,
            report_token=token,
            checkpoint_uri=env.get(CHECKPOINT_URI, "").strip() or None,
            report_retry_seconds=retry,
        )
