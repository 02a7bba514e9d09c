"""DyHPO / FMS as hwtune algorithms: the freeze-thaw scheduler ``dyhpo`` and the surrogate
searchers ``dyhpo``, ``fms``, ``fms-flat``, ``fms-nocurve``.

Freeze-thaw (``scheduler: dyhpo``): every trial trains one step (``stepSize`` levels, default 1)
and PAUSEs with its checkpoint. Each ``suggest()`` scores the candidates with multi-fidelity
expected improvement and starts the winner:

- every paused trial, at its budget + step, with its learning curve and latest checkpoint;
- ``freshCandidates`` new (config, hardware) pairs from the space (or the benchmark's candidate
  list) at the first level.

EI of a candidate at budget b uses as incumbent the best target seen *at budget b* (the best
overall when nothing reached b yet). The first ``initialTrials`` suggestions are random new
trials; so is a suggestion when the model cannot answer (see below). When the study's maxTrials
is reached only paused trials are scored (``suggest_resume``).

The searcher (``searcher: dyhpo`` etc. under another scheduler, e.g. asha) proposes new configs
only: EI at the first level over fresh candidates.

Transfer (``transfer.fromStudies``): the earlier studies' points join the training data with a
task indicator (``hwtune.surrogate.meta``; ``transferMode`` joint or pretrain).

Where the model runs: in process (torch), or the surrogate service when
``algorithm.settings.surrogateUrl`` is set. When the service is down or slower than
``surrogateTimeoutSeconds`` (default 10), that suggestion falls back to the built-in random
searcher, and the study records a note with its next event (``extra.notes``): visible in the
event log, ``hwtune`` output and the operator's events.

Rebuild: the scheduler reuses recorded suggestions (``replay_suggestion``) and its state is a
function of the trial records and the number of suggestions: random numbers come from a
generator seeded by (seed, suggestion number), and the model's answer is a function of the
request (``hwtune.surrogate.store``). So a rebuilt study asks the model nothing for its past and
decides the same afterwards.

No torch in this module.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any, Mapping, Sequence

import numpy as np

from hwtune.api.records import Decision, Hardware, Observation, TrialPhase, TrialRecord
from hwtune.optimize.context import SearchContext
from hwtune.optimize.schedulers.base import Scheduler, TrialSuggestion
from hwtune.optimize.searchers.base import Searcher
from hwtune.space import config_key
from hwtune.surrogate import CHECKPOINT_SEARCHERS
from hwtune.surrogate.points import (
    PROTOCOL_VERSION,
    PointBlock,
    Scalariser,
    encode_trial,
    observation_losses,
)
from hwtune.surrogate.meta import TRANSFER_MODES, SourcePoint, check_studies, source_points
from hwtune.surrogate.predictors import PredictorUnavailable, make_predictor

__all__ = ["DyHPOScheduler", "SurrogateCore", "SurrogateSearcher", "expected_improvement"]

log = logging.getLogger(__name__)

SETTINGS = {"freshCandidates": 64, "initialTrials": 3, "maxPoints": 512, "stepSize": 1,
            "maxFullFitPoints": 256, "surrogateRetryAfter": 5, "transferPoints": 128}
MODEL_SETTINGS = ("fullFitSteps", "refitSteps", "gmnPoints", "refitPoints", "lr", "quickFitSteps",
                  "quickFitPoints")


def expected_improvement(mean: np.ndarray, std: np.ndarray, incumbent: np.ndarray) -> np.ndarray:
    """EI for minimisation, elementwise."""
    std = np.maximum(std, 1e-9)
    imp = incumbent - mean
    z = imp / std
    pdf = np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    cdf = 0.5 * (1.0 + np.vectorize(math.erf)(z / math.sqrt(2)))
    return imp * cdf + std * pdf


def _int_setting(settings: Mapping[str, Any], key: str, minimum: int) -> int:
    value = settings.get(key, SETTINGS[key])
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not float(value).is_integer() \
            or value < minimum:
        raise ValueError(f"algorithm.settings.{key}: must be an integer >= {minimum}, got {value!r}")
    return int(value)


class SurrogateCore:
    """What the scheduler and the searcher share: the data, the candidates, the model call."""

    def __init__(self, context: SearchContext, variant: str = "dyhpo", *,
                 candidates: Sequence[Mapping[str, Any]] | None = None, predictor: Any = None,
                 transfer_studies: Sequence[Any] = (), transfer_renames: Mapping[str, str] | None = None
                 ) -> None:
        self.context = context
        self.variant = variant
        s = dict(context.settings)
        self.fresh_candidates = _int_setting(s, "freshCandidates", 1)
        # Earlier studies (transfer.fromStudies): meta-training points (hwtune.surrogate.meta).
        self.transfer_studies = tuple(transfer_studies or ())
        self.transfer_mode = str(s.get("transferMode", "joint"))
        if self.transfer_mode not in TRANSFER_MODES:
            raise ValueError(f"algorithm.settings.transferMode: must be one of "
                             f"{', '.join(TRANSFER_MODES)}, got {self.transfer_mode!r}")
        self.transfer_points = _int_setting(s, "transferPoints", 1)
        self._matches = check_studies(context, self.transfer_studies, transfer_renames) \
            if self.transfer_studies else []
        self._source: list[SourcePoint] | None = None
        # A jointly meta-trained model can rank configs before this study has any data of its
        # own: no random start unless asked for.
        if self.transfer and self.transfer_mode == "joint" and "initialTrials" not in s:
            self.initial_trials = 0
        else:
            self.initial_trials = _int_setting(s, "initialTrials", 1)
        self.max_points = _int_setting(s, "maxPoints", 8)
        self.step = _int_setting(s, "stepSize", 1)
        self.max_full = _int_setting(s, "maxFullFitPoints", 2)
        # After the service failed, this many suggestions go straight to the fallback, so a
        # slow service costs one timeout now and then, not one per suggestion.
        self.retry_after = _int_setting(s, "surrogateRetryAfter", 0)
        self._skip = 0
        self.model_settings = {k: s[k] for k in MODEL_SETTINGS if k in s}
        self.candidates = [dict(c) for c in candidates] if candidates is not None else None
        self._predictor = predictor
        self.count = 0  # suggestions recorded so far (live and replayed)
        self.arrivals: list[tuple[int, int]] = []  # (trial id, level) in report order
        self.used: set[tuple] = set()
        self.fallbacks = 0
        self.last_answer: dict[str, Any] | None = None

    # -- bookkeeping ----------------------------------------------------------------------------
    @property
    def transfer(self) -> bool:
        return bool(self.transfer_studies)

    def encode(self, config: Mapping[str, Any], hardware: Hardware | None) -> np.ndarray:
        """The model's x of a config of this study: with transfer, plus the task indicator 0."""
        x = encode_trial(self.context, config, hardware)
        return np.append(x, 0.0) if self.transfer else x

    def source(self) -> list[SourcePoint]:
        """The earlier studies' points (computed once, on first use: a replay never needs them)."""
        if self._source is None:
            self._source = source_points(
                self.context, self.transfer_studies, self._matches, self.transfer_points,
                lambda config, hw: encode_trial(self.context, config, hw)) if self.transfer else []
        return self._source

    @property
    def predictor(self):
        if self._predictor is None:
            self._predictor = make_predictor(self.context.settings)
        return self._predictor

    def add(self, trial: TrialRecord) -> None:
        self.used.add((config_key(trial.config), trial.hardware))

    def observe(self, trial: TrialRecord, observation: Observation) -> None:
        self.arrivals.append((trial.trial_id, observation.resource))

    def rng(self) -> np.random.Generator:
        return np.random.default_rng([self.context.seed, self.count + 1])

    @property
    def first_level(self) -> int:
        return min(self.context.fidelity.min, self.context.max_resource)

    # -- candidates ---------------------------------------------------------------------------------
    def fresh(self, rng: np.random.Generator, n: int) -> list[tuple[dict[str, Any], Hardware | None]]:
        out: list[tuple[dict[str, Any], Hardware | None]] = []
        keys: set[tuple] = set()
        space, hardware = self.context.space, self.context.hardware
        if self.candidates is not None:
            pairs = [(c, h) for c in self.candidates for h in (list(hardware) or [None])]
            left = [p for p in pairs if (config_key(p[0]), p[1]) not in self.used]
            if len(left) > n:
                left = [left[i] for i in sorted(rng.choice(len(left), size=n, replace=False))]
            return [(dict(c), h) for c, h in left]
        for _ in range(20 * n):
            if len(out) >= n:
                break
            config, hw = space.sample(rng), hardware.sample(rng)
            key = (config_key(config), hw)
            if key in self.used or key in keys:
                continue
            keys.add(key)
            out.append((config, hw))
        return out

    def resumable(self) -> list[TrialRecord]:
        top = self.context.max_resource
        return [t for t in self.context.study.trials()
                if t.phase is TrialPhase.PAUSED and t.last_resource < top]

    # -- data ---------------------------------------------------------------------------------------
    def _scalariser(self, rng: np.random.Generator | None, losses: np.ndarray) -> Scalariser:
        k = len(self.context.objectives)
        weights = None if rng is None or k == 1 else rng.dirichlet(np.ones(k))
        return Scalariser(self.context, weights).fit(losses)

    def _row(self, x: np.ndarray, level: int, curve: Mapping[int, float],
             ckpt: tuple[str, int] | None) -> tuple:
        length = self.context.max_resource
        c, m = np.zeros(length), np.zeros(length)
        for r, v in curve.items():
            if 1 <= r < level and r <= length:
                c[r - 1], m[r - 1] = v, 1.0
        return (x, level / length, c, m, ckpt)

    def _checkpoint(self, trial: TrialRecord, level: int) -> tuple[str, int] | None:
        if self.variant not in CHECKPOINT_SEARCHERS:
            return None
        uri = self.context.study.checkpoint_uri(trial, level)
        return None if uri is None else (uri, level)

    def training_set(self, rng: np.random.Generator | None):
        """(train block, y, full-fit block, full-fit y) from the arrivals, or None when there
        are fewer than 2 points."""
        view = self.context.study
        records = {t.trial_id: t for t in view.trials()}
        losses_of: dict[int, dict[int, np.ndarray]] = {}
        pts: list[tuple[int, int, np.ndarray]] = []
        for tid, level in self.arrivals:
            trial = records.get(tid)
            if trial is None:
                continue
            if tid not in losses_of:
                losses_of[tid] = observation_losses(self.context, trial)
            loss = losses_of[tid].get(level)
            if loss is not None:
                pts.append((tid, level, loss))
        src = self.source() if self.transfer else []
        joint = bool(src) and self.transfer_mode == "joint"
        if len(pts) < (0 if joint else 2):
            return None
        if pts:
            dx = len(self.encode(records[pts[0][0]].config, records[pts[0][0]].hardware))
        else:
            dx = len(src[0].x) + 1
        length = self.context.max_resource
        src_losses = [p.losses for p in src]
        # The full-fit set: the first t points, t a power of two, scalarised with equal weights;
        # with transfer, the earlier studies' points before them (pretrain: those alone).
        t = 2 ** int(math.floor(math.log2(min(len(pts), self.max_full)))) if pts else 0
        head = pts[:t] if not (src and self.transfer_mode == "pretrain") else []
        scal_full = self._scalariser(None, np.stack([p[2] for p in head] + src_losses))
        full_rows, full_y = self._source_rows(src, scal_full) if src else ([], [])
        rows, ys = self._rows(head, records, scal_full)
        full = (PointBlock.stack(full_rows + rows, dx, length), np.array(full_y + ys))
        chosen = self._subset(pts, rng)
        scal = self._scalariser(rng, np.stack([p[2] for p in pts] + (src_losses if joint else [])))
        train_rows, train_y = self._source_rows(src, scal) if joint else ([], [])
        rows, ys = self._rows([pts[i] for i in chosen], records, scal)
        train = (PointBlock.stack(train_rows + rows, dx, length), np.array(train_y + ys))
        return train, full, scal, dx, records

    def _subset(self, pts: list[tuple[int, int, np.ndarray]], rng: np.random.Generator | None) -> list[int]:
        """Past ``maxPoints`` the exact GP gets slow: keep every trial's latest point (lowest
        losses first when even those are too many), fill up at random, keep arrival order."""
        n = len(pts)
        if n <= self.max_points:
            return list(range(n))
        latest: dict[int, int] = {}
        for i, (tid, _, _) in enumerate(pts):
            latest[tid] = i
        keep = sorted(latest.values(), key=lambda i: (float(pts[i][2].sum()), i))[: self.max_points]
        rest = [i for i in range(n) if i not in set(keep)]
        room = self.max_points - len(keep)
        if room > 0 and rest:
            gen = rng if rng is not None else np.random.default_rng([self.context.seed, n])
            keep += [rest[i] for i in gen.choice(len(rest), size=min(room, len(rest)), replace=False)]
        return sorted(keep)

    def _source_rows(self, src: list[SourcePoint], scal: Scalariser) -> tuple[list, list]:
        rows, ys = [], []
        weights = self.variant in CHECKPOINT_SEARCHERS
        for p in src:
            curve = {lv: float(scal(v[None, :])[0]) for lv, v in p.curve.items()}
            rows.append(self._row(np.append(p.x, 1.0), p.level, curve,
                                  p.checkpoint if weights else None))
            ys.append(float(scal(p.losses[None, :])[0]))
        return rows, ys

    def _rows(self, pts, records, scal: Scalariser) -> tuple[list, list]:
        rows, ys = [], []
        curves: dict[int, dict[int, float]] = {}
        for tid, level, _ in pts:
            trial = records[tid]
            if tid not in curves:
                lo = observation_losses(self.context, trial)
                curves[tid] = {r: float(scal(v[None, :])[0]) for r, v in lo.items()}
            x = self.encode(trial.config, trial.hardware)
            rows.append(self._row(x, level, curves[tid], self._checkpoint(trial, level - 1)))
            ys.append(curves[tid][level])
        return rows, ys

    # -- choosing -------------------------------------------------------------------------------
    def choose(self, *, allow_new: bool, allow_resume: bool
               ) -> tuple[str, Any, Hardware | None, int] | None:
        """("new", config, hardware, level) or ("resume", trial id, None, level), or None."""
        rng = self.rng()
        paused = self.resumable() if allow_resume else []
        fresh = self.fresh(rng, self.fresh_candidates) if allow_new else []
        if not paused and not fresh:
            return None
        data = self.training_set(rng) if len(self.arrivals) >= 2 or self.transfer else None
        started = len(self.used)
        if data is None or (allow_new and started < self.initial_trials and fresh):
            return self._random(rng, paused, fresh)
        (train, y), (full, full_y), scal, dx, records = data
        cands: list[tuple] = []
        rows = []
        for trial in paused:
            level = min(trial.last_resource + self.step, self.context.max_resource)
            lo = observation_losses(self.context, trial)
            curve = {r: float(scal(v[None, :])[0]) for r, v in lo.items()}
            rows.append(self._row(self.encode(trial.config, trial.hardware), level,
                                  curve, self._checkpoint(trial, trial.last_resource)))
            cands.append(("resume", trial.trial_id, None, level))
        for config, hw in fresh:
            level = self.first_level
            probe = TrialRecord(-1, config, hw)
            rows.append(self._row(self.encode(config, hw), level, {},
                                  self._checkpoint(probe, 0)))
            cands.append(("new", config, hw, level))
        test = PointBlock.stack(rows, dx, self.context.max_resource)
        if self.transfer and not np.any(train.x[:, -1] == 0):
            # Nothing of this study's own yet: ask as the earlier task, the best guess there is.
            test.x[:, -1] = 1.0
        answer = self.ask(train, y, full, full_y, test, dx)
        if answer is None:
            return self._random(rng, paused, fresh)
        mean, std = np.asarray(answer["mean"]), np.asarray(answer["std"])
        # The incumbent is this study's best at that budget (the earlier studies' only while
        # this one has no point of its own).
        own = train.x[:, -1] == 0 if self.transfer else np.ones(len(y), dtype=bool)
        if not own.any():
            own = np.ones(len(y), dtype=bool)
        best_at: dict[float, float] = {}
        for b, v in zip(train.budget[own], y[own]):
            best_at[round(float(b), 9)] = min(best_at.get(round(float(b), 9), math.inf), float(v))
        overall = float(np.min(y[own]))
        inc = np.array([best_at.get(round(float(b), 9), overall) for b in test.budget])
        ei = expected_improvement(mean, std, inc)
        self.last_scores = (cands, mean, std, ei)
        return cands[int(np.argmax(ei))]

    def ask(self, train: PointBlock, y: np.ndarray, full: PointBlock, full_y: np.ndarray,
            test: PointBlock, dx: int) -> dict[str, Any] | None:
        request = {
            "version": PROTOCOL_VERSION, "study": self.context.name or "study",
            "variant": self.variant, "seed": int(self.context.seed), "dx": int(dx),
            "curveLength": int(self.context.max_resource), "settings": self.model_settings,
            "train": train.to_json(), "y": y.tolist(),
            "fullFit": {"points": full.to_json(), "y": full_y.tolist()},
            "test": test.to_json(),
        }
        if self._skip > 0:
            self._skip -= 1
            self.fallbacks += 1
            self.context.measure("surrogate_fallback")
            self.context.note("surrogate: still falling back to random search after a failure "
                              f"({self._skip + 1} more suggestions before trying again)")
            return None
        started = time.perf_counter()
        try:
            answer = self.predictor.predict(request)
        except PredictorUnavailable as exc:
            self.context.measure("surrogate_call", time.perf_counter() - started, False)
            self.fallbacks += 1
            self.context.measure("surrogate_fallback")
            self._skip = self.retry_after
            self.context.note(f"surrogate: {exc}; this suggestion fell back to random search")
            log.warning("surrogate unavailable, falling back to random: %s", exc)
            return None
        self.context.measure("surrogate_call", time.perf_counter() - started, True)
        self.last_answer = answer
        return answer

    def _random(self, rng: np.random.Generator, paused: list[TrialRecord],
                fresh: list[tuple[dict[str, Any], Hardware | None]]):
        if fresh:
            config, hw = fresh[int(rng.integers(len(fresh)))]
            return ("new", config, hw, self.first_level)
        trial = paused[int(rng.integers(len(paused)))]
        return ("resume", trial.trial_id, None,
                min(trial.last_resource + self.step, self.context.max_resource))

    def predict_final(self, configs: Sequence[tuple[Mapping[str, Any], Hardware | None]]
                      ) -> np.ndarray | None:
        """Predicted target at the maximum level for each (config, hardware): from its trial's
        curve and latest checkpoint when it has one, else from scratch (benchmarks)."""
        rng = np.random.default_rng([self.context.seed, 0])
        data = self.training_set(None)
        if data is None:
            return None
        (train, y), (full, full_y), scal, dx, records = data
        by_key = {(config_key(t.config), t.hardware): t for t in records.values()}
        top = self.context.max_resource
        rows = []
        for config, hw in configs:
            trial = by_key.get((config_key(config), hw))
            if trial is not None and trial.observations:
                lo = observation_losses(self.context, trial)
                curve = {r: float(scal(v[None, :])[0]) for r, v in lo.items()}
                rows.append(self._row(self.encode(config, hw), top, curve,
                                      self._checkpoint(trial, trial.last_resource)))
            else:
                rows.append(self._row(self.encode(config, hw), top, {},
                                      self._checkpoint(TrialRecord(-1, dict(config), hw), 0)))
        del rng
        answer = self.ask(train, y, full, full_y, PointBlock.stack(rows, dx, top), dx)
        return None if answer is None else np.asarray(answer["mean"])


class SurrogateSearcher(Searcher):
    """``searcher: dyhpo | fms | fms-flat | fms-nocurve`` under any scheduler: new configs by EI
    at the first level. Under ``scheduler: dyhpo`` it only names the surrogate variant."""

    def __init__(self, context: SearchContext, variant: str, *,
                 candidates: Sequence[Mapping[str, Any]] | None = None, predictor: Any = None,
                 transfer_studies: Sequence[Any] = (),
                 transfer_renames: Mapping[str, str] | None = None) -> None:
        self.context = context
        self.core = SurrogateCore(context, variant, candidates=candidates, predictor=predictor,
                                  transfer_studies=transfer_studies,
                                  transfer_renames=transfer_renames)

    def suggest(self):
        recorded = self.context.study.recorded_suggestion()
        if recorded is not None:  # rebuild: the log already holds the answer
            self.core.count += 1
            return recorded
        choice = self.core.choose(allow_new=True, allow_resume=False)
        if choice is None:
            return None
        self.core.count += 1
        return choice[1], choice[2]

    def on_trial_add(self, trial: TrialRecord) -> None:
        self.core.add(trial)

    def on_trial_result(self, trial: TrialRecord, observation: Observation) -> None:
        self.core.observe(trial, observation)


class DyHPOScheduler(Scheduler):
    """Freeze-thaw with a surrogate (see the module docstring)."""

    reuses_recorded_suggestions = True

    def __init__(self, searcher: Searcher, context: SearchContext, *, predictor: Any = None) -> None:
        if isinstance(searcher, SurrogateSearcher):
            self.core = searcher.core
        else:  # random/grid/...: DyHPO's own surrogate, the searcher's candidate list if any
            self.core = SurrogateCore(context, "dyhpo", candidates=getattr(searcher, "candidates", None),
                                      predictor=predictor)
        if predictor is not None:
            self.core._predictor = predictor
        self.searcher = searcher
        self.context = context
        self.objectives = context.objectives

    def _suggest(self, allow_new: bool) -> TrialSuggestion | None:
        choice = self.core.choose(allow_new=allow_new, allow_resume=True)
        if choice is None:
            return None
        self.core.count += 1
        kind, what, hw, level = choice
        if kind == "resume":
            return TrialSuggestion.resume(int(what), max_resource=level)
        return TrialSuggestion.new(what, hw, max_resource=level)

    def suggest(self) -> TrialSuggestion | None:
        return self._suggest(allow_new=True)

    def suggest_resume(self) -> TrialSuggestion | None:
        return self._suggest(allow_new=False)

    def replay_suggestion(self, suggestion: TrialSuggestion) -> None:
        self.core.count += 1

    def on_trial_add(self, trial: TrialRecord) -> None:
        self.core.add(trial)

    def on_trial_result(self, trial: TrialRecord, observation: Observation) -> Decision:
        self.core.observe(trial, observation)
        if observation.resource >= self.context.max_resource:
            return Decision.CONTINUE  # the engine completes it
        target = self.context.study.target_resource(trial)
        if target is not None and observation.resource >= target:
            return Decision.PAUSE
        return Decision.CONTINUE
