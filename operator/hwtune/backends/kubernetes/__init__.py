"""The Kubernetes backend: trials as TuningTrials and batch/v1 Jobs, the study's history in an
append-only log of ConfigMaps (docs/operator-design.md). Only this package and
``hwtune.controller`` talk to the API server."""

from hwtune.backends.kubernetes.api import ApiError, KubeApi, StudyLogStore
from hwtune.backends.kubernetes.backend import Intent, IntentKind, KubernetesBackend
from hwtune.backends.kubernetes.log import LogCorrupted, StudyLog, parse_chunks
from hwtune.backends.kubernetes.runner import StudyRunner, StudyUnavailable

__all__ = [
    "ApiError",
    "Intent",
    "IntentKind",
    "KubeApi",
    "KubernetesBackend",
    "LogCorrupted",
    "StudyLog",
    "StudyLogStore",
    "StudyRunner",
    "StudyUnavailable",
    "parse_chunks",
]
