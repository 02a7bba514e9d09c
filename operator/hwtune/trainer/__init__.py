"""The trainer SDK: the only hwtune module a training script imports.

::

    import hwtune.trainer as hwt

    trial = hwt.init()                       # reads the HWTUNE_* environment (see hwtune.trainer.env)
    lr = trial.param("lr", 1e-3)
    checkpoint = trial.load_checkpoint()     # set after a pause or a preemption
    start = checkpoint.resource + 1 if checkpoint else 1
    for epoch in trial.resource_levels(start):
        loss = train_one_epoch(...)
        trial.save_checkpoint({"model": model.state_dict()}, epoch)
        trial.report(epoch, val_error=evaluate(...))  # PAUSE / STOP end the loop

On SIGTERM (preemption, eviction, ``hwtune tune`` interrupted) the trial keeps its checkpoint
and exits with ``EXIT_PREEMPTED`` (75); the backend resumes it later. Imports are standard
library only; torch is used for checkpoints only when the script has imported it.
"""

from __future__ import annotations

from typing import Any, Mapping

from hwtune.api.records import Decision, Hardware
from hwtune.trainer.checkpoint import Checkpoint, CheckpointStore
from hwtune.trainer.client import ReportError
from hwtune.trainer.env import TrialEnv, TrialEnvError
from hwtune.trainer.trial import EXIT_INFRASTRUCTURE, EXIT_PREEMPTED, Trial

__all__ = [
    "EXIT_INFRASTRUCTURE",
    "EXIT_PREEMPTED",
    "Checkpoint",
    "CheckpointStore",
    "Decision",
    "Hardware",
    "ReportError",
    "Trial",
    "TrialEnv",
    "TrialEnvError",
    "current",
    "init",
    "load_checkpoint",
    "report",
    "save_checkpoint",
]

_current: Trial | None = None


def init(environ: Mapping[str, str] | None = None, *, handle_sigterm: bool = True) -> Trial:
    """The process's trial, created on the first call from ``environ`` (default: os.environ)."""
    global _current
    if _current is None:
        env = TrialEnv.from_env(environ)
        _current = Trial(env, handle_sigterm=handle_sigterm)
    return _current


def current() -> Trial:
    return init()


def report(resource: int, **metrics: float) -> Decision:
    """``init().report(...)``: report metrics at a resource level, get the decision."""
    return init().report(resource, **metrics)


def save_checkpoint(state: Mapping[str, Any], resource: int) -> None:
    init().save_checkpoint(state, resource)


def load_checkpoint() -> Checkpoint | None:
    return init().load_checkpoint()
