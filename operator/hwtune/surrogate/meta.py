"""Meta-training the surrogate on earlier studies (``transfer.fromStudies`` with searcher
``dyhpo`` / ``fms`` / ``fms-flat`` / ``fms-nocurve``): the FMS paper's transfer setting, where
the deep kernel has seen other tasks of the same model hub before the target study starts.

The earlier studies' trials become extra surrogate points (``SourcePoint``): their
hyperparameters mapped into this study's space (``hwtune.transfer.match_spaces``, with
``transfer.mapping``'s renames), their learning curves, their budgets and, for FMS, the
checkpoints they kept. Every point, earlier or new, gets one more input: a task indicator
(1 for an earlier study, 0 for this one), so the kernel can learn how far the tasks differ. Two
ways to use them (``algorithm.settings.transferMode``):

- ``joint`` (default): the full fits and refits see the earlier points and this study's together;
  the posterior conditions on both, so a config this study never ran is predicted from how it
  did on the earlier tasks (as far as the learned task distance allows).
- ``pretrain``: the full fit is on the earlier points only (done once and cached, the
  "pretrained surrogate"); refits and predictions then use this study's points only, starting
  from the pretrained network and kernel.

``transferPoints`` (default 128) caps the earlier points: every earlier trial's final value
seen from no curve at all first (what ranking configs this study has not tried needs), then a
seeded sample of the others: the next level from the curve so far (what a resume asks), and the
final value from the first k levels (what a forecast of a started config asks).

numpy only: this runs in the engine; the model (in process or the service) just sees points.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from hwtune.api.records import TrialPhase
from hwtune.optimize.context import SearchContext

__all__ = ["TRANSFER_MODES", "SourcePoint", "check_studies", "source_points"]

TRANSFER_MODES = ("joint", "pretrain")
DEFAULT_POINTS = 128


@dataclass(frozen=True)
class SourcePoint:
    x: np.ndarray  # encoded in this study's space (without the task indicator)
    level: int  # in this study's levels
    curve: Mapping[int, np.ndarray]  # level -> objective losses, levels before ``level``
    losses: np.ndarray  # the objectives' losses at ``level``
    checkpoint: tuple[str, int] | None  # the weights this level started from


def _where(i: int, study: Any) -> str:
    return f"transfer.fromStudies[{i}] ({study.name!r}, {study.source})"


def check_studies(context: SearchContext, studies: Sequence[Any],
                  renames: Mapping[str, str] | None = None) -> list[Any]:
    """The space matches of usable earlier studies; ``TransferError`` naming the study and the
    field when one cannot be used (no shared parameter, a missing objective, no report)."""
    from hwtune.transfer import TransferError, match_spaces

    matches = []
    for i, study in enumerate(studies):
        where = _where(i, study)
        for objective in context.objectives:
            try:
                study.check_metric(objective.metric)
            except TransferError as exc:
                raise TransferError(f"{where}: {exc} (spec.objectives needs it for the "
                                    "surrogate to learn from that study)") from None
        try:
            match = match_spaces(study.space, context.space, old_hardware=study.hardware,
                                 new_hardware=tuple(context.hardware), renames=renames)
        except ValueError as exc:
            raise TransferError(f"{where}: spec.transfer.mapping: {exc}") from None
        shared = [n for n in match.shared if n in set(context.space.names)]
        if not shared:
            raise TransferError(
                f"{where}: shares no parameter with spec.parameters (it has "
                f"{', '.join(study.space.names) or 'none'}; this study has "
                f"{', '.join(context.space.names)}): map renamed ones with spec.transfer.mapping")
        matches.append(match)
    return matches


def _level(level: int, old_max: int, new_max: int) -> int:
    if old_max == new_max or old_max <= 0:
        return level
    return int(min(new_max, max(1, round(level * new_max / old_max))))


def _point(trial: Any, study: Any, x: np.ndarray, losses: Mapping[int, np.ndarray], level: int,
           k: int, new_max: int) -> SourcePoint:
    """The value at ``level`` seen from the curve's first ``k`` levels (and, for FMS, the
    checkpoint of level k: the weights a forecast from k levels would see)."""
    old_k = None
    for lv, _ in trial.curve:  # the earlier study's level that maps to k
        if _level(lv, study.max_resource, new_max) == k:
            old_k = lv
    location = trial.checkpoint_at(0 if k == 0 else old_k) if (k == 0 or old_k is not None) else None
    return SourcePoint(x, level, {lv: v for lv, v in losses.items() if lv <= k}, losses[level],
                       None if location is None else (location, 0 if k == 0 else int(old_k)))


def source_points(context: SearchContext, studies: Sequence[Any], matches: Sequence[Any],
                  limit: int, encode) -> list[SourcePoint]:
    """At most ``limit`` points of the earlier studies (see the module docstring), as a function
    of the studies and the study's seed. ``encode(config, hardware)`` encodes in this study's
    space."""
    rng = np.random.default_rng([int(context.seed), 7919])
    new_max = context.max_resource
    per_trial: list[tuple[list[SourcePoint], int]] = []
    names = set(context.space.names)
    for study, match in zip(studies, matches):
        for trial in study.reported():
            if trial.phase is TrialPhase.FAILED:
                continue
            partial, hw = match.project(trial.config, trial.hardware)
            old = {match.renames.get(k, k): v for k, v in trial.config.items()}
            # A shared value outside this study's range says nothing about a config here.
            if any(n in old and n in names and n not in partial for n in match.shared):
                continue
            fill = np.random.default_rng([int(context.seed), 104729, trial.trial_id])
            try:
                config = match.complete(partial, fill, fill="default")
                x = encode(config, hw)
            except ValueError:
                continue
            losses: dict[int, np.ndarray] = {}
            for level, metrics in trial.curve:
                try:
                    losses[_level(level, study.max_resource, new_max)] = np.array(
                        [o.loss(float(metrics[o.metric])) for o in context.objectives])
                except KeyError:
                    continue
            losses = {lv: v for lv, v in losses.items() if np.all(np.isfinite(v))}
            levels = sorted(losses)
            if not levels:
                continue
            # What the model is asked for: the next level from the curve so far (a resume), and
            # a config's final value from its first k levels (k = 0: a config not started yet,
            # which is what ranking the untried configs needs). So every trial gives its final
            # value with no curve first, then those two kinds of points at each earlier level.
            last = levels[-1]
            points = [_point(trial, study, x, losses, last, 0, new_max)]
            for i, level in enumerate(levels):
                points.append(_point(trial, study, x, losses, level, levels[i - 1] if i else 0,
                                     new_max))
                if level != last:
                    points.append(_point(trial, study, x, losses, last, level, new_max))
            per_trial.append((points, trial.trial_id))

    if not per_trial:
        return []
    # Every trial's last point first (a random subset when even those are too many), then a
    # seeded sample of the other points.
    order = rng.permutation(len(per_trial))
    chosen = [per_trial[i][0][0] for i in order[:limit]]
    rest = [p for i in order for p in per_trial[i][0][1:]]
    room = limit - len(chosen)
    if room > 0 and rest:
        pick = rng.choice(len(rest), size=min(room, len(rest)), replace=False)
        chosen += [rest[i] for i in sorted(pick)]
    return chosen
