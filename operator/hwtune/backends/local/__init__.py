"""The local backend: trials are processes on this machine (``hwtune tune study.yaml``)."""

from hwtune.backends.base import InfrastructureError
from hwtune.backends.local.backend import InactivityLimit, LocalBackend, log_tail
from hwtune.backends.local.runner import (
    EventLog,
    LocalStudyRun,
    StudyInterrupted,
    WallClock,
    WorkdirError,
)
from hwtune.backends.local.template import ProcessTemplate, expand_k8s_vars

__all__ = [
    "EventLog",
    "InactivityLimit",
    "InfrastructureError",
    "LocalBackend",
    "LocalStudyRun",
    "ProcessTemplate",
    "StudyInterrupted",
    "WallClock",
    "WorkdirError",
    "expand_k8s_vars",
    "log_tail",
]
