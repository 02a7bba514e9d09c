"""HT-AA's transfer baselines (Hyperparameter Transfer Across Developer Adjustments), each a
``Searcher`` usable under any scheduler, all on the same TPE (``hwtune.optimize.searchers.tpe``):

- ``only-new``: the shared parameters (and the hardware, when the old choice is still offered)
  are fixed to the best old trial's values; TPE searches the new ones. With nothing new to
  search, the best old configuration comes first and TPE searches everything after it.
- ``drop-unimportant``: like ``only-new`` but only the shared parameters the old study found
  unimportant (``importance.main_effects`` below ``importanceThreshold``) are fixed.
- ``best-first``: the ``transferTopK`` best old configurations (projected onto the new space,
  new parameters filled in) are suggested first, then plain TPE.
- ``transfer-tpe``: until the new study has ``tpeStartup`` reported trials, the shared
  parameters are drawn from a TPE model of the old study's ranks (good = its best ``tpeGamma``
  fraction, within the overlap of the ranges), the new ones at random; then plain TPE.
- ``best-first-tpe``: both.

Several earlier studies are pooled by rank quantile within each study (0 = its best trial).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from hwtune.api.records import Hardware, Objective, Observation, TrialRecord
from hwtune.optimize.searchers.base import Searcher
from hwtune.optimize.searchers.random import as_hardware_space
from hwtune.optimize.searchers.tpe import HARDWARE, ParzenEstimator, TPESearcher, rank_split
from hwtune.space import SearchSpace, config_key
from hwtune.space.domains import CategoricalDomain
from hwtune.transfer.importance import main_effects
from hwtune.transfer.matching import SpaceMatch, match_spaces
from hwtune.transfer.records import PastStudy, TransferError

__all__ = ["HTAA_METHODS", "BestFirstSearcher", "OldPoint", "make_htaa_searcher", "old_points"]

HTAA_METHODS = ("only-new", "drop-unimportant", "best-first", "transfer-tpe", "best-first-tpe")


@dataclass(frozen=True)
class OldPoint:
    study: str
    config: Mapping[str, Any]  # the old config as it was
    shared: Mapping[str, Any]  # its shared values within the overlap, in new-space terms
    clipped: Mapping[str, Any]  # its shared values moved into the new ranges
    hardware: Hardware | None  # when the new study offers it
    quantile: float  # rank within its study, 0 = best .. 1 = worst
    match: SpaceMatch


def old_points(studies: Sequence[PastStudy], space: SearchSpace, hardware: Sequence[Hardware],
               objective: Objective, renames: Mapping[str, str] | None = None) -> list[OldPoint]:
    """Every reported old trial, best quantile first."""
    if not studies:
        raise TransferError("transfer needs at least one earlier study")
    out: list[OldPoint] = []
    for study in studies:
        study.check_metric(objective.metric)
        match = match_spaces(study.space, space, old_hardware=study.hardware,
                             new_hardware=tuple(hardware), renames=_renames_for(study, renames))
        ranked = [r for r in study.ranked(objective) if np.isfinite(r[1])]
        n = len(ranked)
        for i, (trial, _) in enumerate(ranked):
            shared, hw = match.project(trial.config, trial.hardware)
            clipped, _ = match.project(trial.config, trial.hardware, clip=True)
            out.append(OldPoint(study.name, trial.config, shared, clipped, hw,
                                i / max(1, n - 1), match))
    out.sort(key=lambda p: p.quantile)
    return out


def _renames_for(study: PastStudy, renames: Mapping[str, str] | None) -> dict[str, str]:
    # One mapping for all earlier studies: each uses the entries naming its own parameters.
    return {k: v for k, v in (renames or {}).items() if k in study.parameters}


class BestFirstSearcher(Searcher):
    """Suggests ``first`` (config, hardware) pairs in order, then asks ``inner``; every call
    is passed on to ``inner``, so its model sees the first trials too."""

    def __init__(self, first: Sequence[tuple[Mapping[str, Any], Hardware | None]], inner: Searcher):
        self._queue = [(dict(c), h) for c, h in first]
        self.inner = inner
        self._seen: set[tuple] = set()

    def suggest(self):
        while self._queue:
            config, hw = self._queue.pop(0)
            key = (config_key(config), hw)
            if key not in self._seen:
                self._seen.add(key)
                return config, hw
        return self.inner.suggest()

    def on_trial_add(self, trial: TrialRecord) -> None:
        self._seen.add((config_key(trial.config), trial.hardware))
        self.inner.on_trial_add(trial)

    def on_trial_result(self, trial: TrialRecord, observation: Observation) -> None:
        self.inner.on_trial_result(trial, observation)

    def on_trial_complete(self, trial: TrialRecord) -> None:
        self.inner.on_trial_complete(trial)


def _nearest_candidate(config: Mapping[str, Any], hw: Hardware | None, space: SearchSpace,
                       candidates: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """With a finite candidate list (a benchmark table) a transferred config must be one of
    them: the nearest in the encoding, on the parameters ``config`` sets."""
    x = space.encode(space.validate(config))
    mask = space.active_mask(config)
    xs, ms = space.encode_many(candidates)
    d = np.abs(xs - x) * mask + (ms != mask) * 1.0
    return dict(candidates[int(np.argmin(d.sum(axis=1)))])


def make_htaa_searcher(
    method: str,
    space: SearchSpace,
    hardware: Sequence[Hardware] | None,
    seed: int | None,
    *,
    objective: Objective,
    studies: Sequence[PastStudy],
    settings: Mapping[str, Any] | None = None,
    candidates: Sequence[Mapping[str, Any]] | None = None,
    renames: Mapping[str, str] | None = None,
) -> Searcher:
    """``renames``: old parameter name -> new name, for parameters the developer renamed."""
    if method not in HTAA_METHODS:
        raise TransferError(f"unknown transfer method {method!r} (one of: {', '.join(HTAA_METHODS)})")
    settings = dict(settings or {})
    hw_space = as_hardware_space(hardware)
    rng = np.random.default_rng(None if seed is None else seed + 7919)
    points = old_points(studies, space, hw_space, objective, renames)
    if not points:
        raise TransferError(f"earlier studies {', '.join(s.name for s in studies)} have no trial "
                            f"with a value of {objective.metric!r}")
    tpe_args = dict(objective=objective, candidates=candidates,
                    gamma=float(settings.get("tpeGamma", 0.25)),
                    n_candidates=int(settings.get("tpeCandidates", 32)))
    if "tpeStartup" in settings:
        tpe_args["n_startup"] = int(settings["tpeStartup"])
    best = points[0]
    match = best.match

    def completed(point: OldPoint) -> tuple[dict[str, Any], Hardware | None]:
        config = point.match.complete(point.clipped, rng)
        hw = point.hardware if point.hardware is not None else hw_space.sample(rng)
        if candidates is not None:
            config = _nearest_candidate(config, hw, space, candidates)
        return config, hw

    if method in ("only-new", "drop-unimportant"):
        shared = [n for n in match.shared if n != HARDWARE]
        if method == "drop-unimportant":
            numeric = {n: not isinstance(space[n], CategoricalDomain) for n in shared}
            own = [p for p in points if p.study == best.study]
            names = shared + ([HARDWARE] if HARDWARE in match.shared else [])
            renamed = [({p.match.renames.get(k, k): v for k, v in p.config.items()}, p.hardware)
                       for p in own]
            importance = main_effects(renamed,
                                      [p.quantile for p in own], names, numeric=numeric)
            threshold = float(settings.get("importanceThreshold", 0.1))
            fixed_names = [n for n in names if importance[n] < threshold]
        else:
            fixed_names = shared + ([HARDWARE] if HARDWARE in match.shared else [])
        fixed = {n: best.clipped[n] for n in fixed_names if n != HARDWARE and n in best.clipped}
        fixed_hw = best.hardware if HARDWARE in fixed_names else None
        free = [n for n in space.names if n not in fixed]
        if not free and (fixed_hw is not None or not len(hw_space)):
            # Nothing left to tune: evaluate the best old config, then search everything.
            return BestFirstSearcher([completed(best)], TPESearcher(space, hw_space, seed, **tpe_args))
        return TPESearcher(space, hw_space, seed, fixed=fixed, fixed_hardware=fixed_hw, **tpe_args)

    prior = None
    if method in ("transfer-tpe", "best-first-tpe"):
        names = [n for n in match.shared]
        pts = [(p.shared, p.hardware) for p in points]
        k = rank_split(len(pts), tpe_args["gamma"])
        prior = (ParzenEstimator(space, hw_space, names, pts[:k]),
                 ParzenEstimator(space, hw_space, names, pts[k:]))
    inner = TPESearcher(space, hw_space, seed, prior=prior, **tpe_args)
    if method in ("best-first", "best-first-tpe"):
        top_k = int(settings.get("transferTopK", 1))
        first = [completed(p) for p in points[:max(1, top_k)]]
        return BestFirstSearcher(first, inner)
    return inner
