"""A small stand-in trainer for trial pods on KWOK nodes (H8b's simulated trainer replaces it).

It does what a trainer in the pod would do, through the same contract: read the HWTUNE_*
environment from the pod spec, the token from the Secret the pod mounts, report each epoch with
the trainer SDK's ``ReportClient`` to ``HWTUNE_REPORT_URL``, obey continue/pause/stop, then end
the pod the way KWOK's stages allow (``hwtune.io/sim-outcome: succeed``: exit 0).
"""

from __future__ import annotations

import base64
import json
import logging
import math
import re
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from hwtune.api.records import Decision
from hwtune.trainer.client import ReportClient, ReportError

SIM_OUTCOME = "hwtune.io/sim-outcome"


def val_error(params: dict[str, Any], epoch: int) -> float:
    distance = abs(math.log10(params["lr"]) + 2.0)
    return round(0.1 + 0.2 * distance + 0.5 / (epoch * params["width"] ** 0.25), 6)


class RetryCounter(logging.Handler):
    """Counts the SDK's retried attempts by cause ("HTTP 503", "ConnectionRefusedError", ...)
    from its retry warnings: a retried report succeeds, so only this sees it."""

    _CAUSE = re.compile(r"failed \((HTTP \d+|\w+)")

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.causes: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        found = self._CAUSE.search(record.getMessage())
        if found:
            self.causes[found.group(1)] += 1


@dataclass
class Played:
    pod: str
    job_uid: str
    trial: int
    launch: int
    node: str
    gpu_limit: str | None
    env: dict[str, str]
    replies: list[tuple[int, str]] = field(default_factory=list)


class TrialDriver:
    """Plays every Running pod of ``namespace`` labelled ``hwtune.io/study`` once (by pod uid)."""

    def __init__(self, kubeconfig: str, namespace: str, *, workers: int = 8,
                 report_url: str | None = None, epoch_seconds: float = 0.0) -> None:
        from kubernetes import client, config

        configuration = client.Configuration()
        config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
        api_client = client.ApiClient(configuration)
        self.core = client.CoreV1Api(api_client)
        self.namespace = namespace
        self.report_url = report_url
        self.epoch_seconds = epoch_seconds
        self.played: dict[str, Played] = {}  # by pod uid
        self.errors: list[str] = []  # a trainer's failure (a refused or unanswered report)
        self.list_failures = 0
        self.retries = RetryCounter()  # the trainers' retried attempts, by cause
        self.paused = threading.Event()  # set: play no new pods
        # trial id -> how many of its pods fail at once with exit 75 (preempted) before one runs
        self.fail_plan: dict[int, int] = {}
        self._pool = ThreadPoolExecutor(max_workers=workers)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._main, daemon=True)

    def start(self) -> "TrialDriver":
        logging.getLogger("hwtune.trainer").addHandler(self.retries)
        self._thread.start()
        return self

    def stop(self) -> None:
        logging.getLogger("hwtune.trainer").removeHandler(self.retries)
        self._stop.set()
        self._thread.join(timeout=10)
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _main(self) -> None:
        while not self._stop.is_set():
            try:
                pods = self.core.list_namespaced_pod(self.namespace,
                                                     label_selector="hwtune.io/study").items
            except Exception:  # noqa: BLE001 - the API server may restart: look again
                self.list_failures += 1
                time.sleep(0.5)
                continue
            for pod in pods:
                uid = pod.metadata.uid
                if pod.status.phase != "Running" or pod.metadata.deletion_timestamp \
                        or self.paused.is_set():
                    continue
                with self._lock:
                    if uid in self.played:
                        continue
                    container = pod.spec.containers[0]
                    env = {e.name: e.value for e in container.env or [] if e.value is not None}
                    limits = (container.resources.limits or {}) if container.resources else {}
                    owner = (pod.metadata.owner_references or [None])[0]
                    played = Played(
                        pod=pod.metadata.name, job_uid=owner.uid if owner else "",
                        trial=int(env["HWTUNE_TRIAL_ID"]),
                        launch=int((pod.metadata.annotations or {}).get("hwtune.io/launch", 0)),
                        node=pod.spec.node_name, gpu_limit=limits.get("nvidia.com/gpu"), env=env)
                    self.played[uid] = played
                self._pool.submit(self._play, played)
            self._stop.wait(0.2)

    def _token(self, played: Played) -> str:
        # A kubelet retries a Secret volume until it exists (the operator makes the launch's
        # Secret right after its Job, which owns it) and the API server answers.
        deadline = time.monotonic() + 120.0
        while True:
            try:
                secret = self.core.read_namespaced_secret(
                    f"{played.env['HWTUNE_STUDY']}-{played.trial}-token-{played.launch}",
                    self.namespace)
                return base64.b64decode(secret.data["token"]).decode()
            except Exception:  # noqa: BLE001
                if time.monotonic() > deadline or self._stop.is_set():
                    raise
                time.sleep(0.5)

    def _fail(self, played: Played) -> bool:
        with self._lock:
            left = self.fail_plan.get(played.trial, 0)
            if left <= 0:
                return False
            self.fail_plan[played.trial] = left - 1
        self.core.patch_namespaced_pod(played.pod, self.namespace, {"metadata": {"annotations": {
            SIM_OUTCOME: "fail", "hwtune.io/sim-exit-code": "75"}}})
        return True

    def _play(self, played: Played) -> None:
        env = played.env
        if self._fail(played):
            return
        try:
            client = ReportClient(self.report_url or env["HWTUNE_REPORT_URL"], str(played.trial),
                                  self._token(played), retry_seconds=120.0, timeout=30.0)
            params = json.loads(env["HWTUNE_PARAMS"])
            epoch = int(env["HWTUNE_REPORTED_RESOURCE"]) + 1
            maximum = int(env["HWTUNE_MAX_RESOURCE"])
            while epoch <= maximum and not self._stop.is_set():
                if self.epoch_seconds:
                    time.sleep(self.epoch_seconds)
                reply = client.report(epoch, {"val_error": val_error(params, epoch)})
                played.replies.append((epoch, reply.decision.value))
                if reply.decision is not Decision.CONTINUE:
                    break
                epoch += 1
            client.close()
        except ReportError as exc:
            self.errors.append(f"trial {played.trial}: {exc}")
            return
        except Exception as exc:  # noqa: BLE001 - e.g. the pod was deleted meanwhile
            self.errors.append(f"trial {played.trial}: {type(exc).__name__}: {exc}")
            return
        try:  # exit 0, as a trainer does after its last report or a pause/stop
            self.core.patch_namespaced_pod(played.pod, self.namespace,
                                           {"metadata": {"annotations": {SIM_OUTCOME: "succeed"}}})
        except Exception:  # noqa: BLE001 - a stopped trial's pod may be gone already
            pass
