"""Transfer from earlier studies: HT-AA's baselines across developer adjustments and the
MO-ASHA paper's transfer of Pareto fronts from related tasks.

Pure Python + numpy: never imports a Kubernetes client, kopf or torch (the cluster lister of
TuningTrials lives in ``hwtune.backends.kubernetes``).

- records: ``PastStudy`` / ``PastTrial``, the one record type of an earlier study;
- sources: ``from_table``, ``from_trial_objects``, ``from_events`` (work directories:
  ``hwtune.backends.local.studies.load_workdir``);
- matching: ``match_spaces`` (shared / new / removed parameters, hardware included);
- htaa: the baselines ``only-new``, ``drop-unimportant``, ``best-first``, ``transfer-tpe``,
  ``best-first-tpe``;
- mo: ``mo-copula``, Thompson sampling of per-objective Gaussian-copula models.

Importing this package registers searcher ``transfer`` (``transfer.method`` picks the method).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from hwtune.api.records import Hardware, Objective
from hwtune.optimize.searchers import register_searcher
from hwtune.space import SearchSpace
from hwtune.transfer.htaa import HTAA_METHODS, BestFirstSearcher, make_htaa_searcher
from hwtune.transfer.matching import HARDWARE, SharedParameter, SpaceMatch, match_spaces
from hwtune.transfer.records import (
    PastStudy,
    PastTrial,
    TransferError,
    study_from_dict,
    study_to_dict,
)
from hwtune.transfer.sources import (
    from_events,
    from_table,
    from_trial_objects,
    resolve_local,
)

__all__ = [
    "HARDWARE",
    "HTAA_METHODS",
    "METHODS",
    "BestFirstSearcher",
    "PastStudy",
    "PastTrial",
    "SharedParameter",
    "SpaceMatch",
    "TransferError",
    "from_events",
    "from_table",
    "from_trial_objects",
    "make_transfer_searcher",
    "match_spaces",
    "resolve_local",
    "study_from_dict",
    "study_to_dict",
]

METHODS = HTAA_METHODS + ("mo-copula",)


def make_transfer_searcher(
    space: SearchSpace,
    hardware: Sequence[Hardware] | None,
    seed: int | None,
    settings: Mapping[str, Any] | None = None,
    *,
    objectives: Sequence[Objective] | None = None,
    transfer_studies: Sequence[PastStudy] = (),
    transfer_method: str | None = None,
    candidates: Sequence[Mapping[str, Any]] | None = None,
    transfer_renames: Mapping[str, str] | None = None,
    context: Any = None,
    **_: Any,
):
    """The registry factory of searcher ``transfer``. ``transfer_renames`` maps old parameter
    names to new ones (the study's ``transfer.mapping``)."""
    method = transfer_method or "best-first-tpe"
    if not transfer_studies:
        raise TransferError("transfer.fromStudies: the earlier studies were not loaded (the "
                            "backend attaches them with StudyConfig.with_transfer_studies)")
    # The study's objectives: given directly, or through the factories' SearchContext.
    objectives = tuple(objectives or getattr(context, "objectives", None) or ())
    if not objectives:
        raise TransferError("searcher 'transfer' needs the study's objectives")
    if method == "mo-copula":
        from hwtune.transfer.mo import CopulaTransferSearcher

        return CopulaTransferSearcher(space, hardware, seed, objectives=objectives,
                                      studies=transfer_studies, settings=settings,
                                      candidates=candidates, renames=transfer_renames)
    return make_htaa_searcher(method, space, hardware, seed, objective=objectives[0],
                              studies=transfer_studies, settings=settings, candidates=candidates,
                              renames=transfer_renames)


register_searcher("transfer", make_transfer_searcher)
