"""The tuning engine: study config, state, budgets and the loop. No Kubernetes, kopf or torch.

Typical use::

    config = StudyConfig.from_model(study.spec)     # a validated hwtune.api.crd.TuningStudySpec
    study = Study(config, clock=backend.clock)      # scheduler from config.make_scheduler()
    result = Tuner(study, backend).run()
    later = Study.rebuild(config, study.events)     # same state, same future decisions
"""

from hwtune.engine.budget import Budget, Spend
from hwtune.engine.config import StudyConfig
from hwtune.engine.errors import InvalidReportError, StudyError, TrialStateError, UnknownTrialError
from hwtune.engine.events import EventKind, StudyEvent
from hwtune.engine.study import FrontPoint, Study, StudySummary, TrialStart
from hwtune.engine.tuner import Tuner, TuningResult
from hwtune.space.errors import SpecError

__all__ = [
    "Budget",
    "EventKind",
    "FrontPoint",
    "InvalidReportError",
    "Spend",
    "SpecError",
    "Study",
    "StudyConfig",
    "StudyError",
    "StudyEvent",
    "StudySummary",
    "TrialStart",
    "TrialStateError",
    "Tuner",
    "TuningResult",
    "UnknownTrialError",
]
