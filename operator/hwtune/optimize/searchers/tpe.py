"""Tree-structured Parzen estimator (TPE) over (config, hardware).

Per parameter (hardware is one more categorical, named ``HARDWARE``) two densities are fitted:
``l`` on the best ``gamma`` fraction of the trials and ``g`` on the rest; a suggestion is the
candidate with the highest ``sum(log l - log g)`` among ``n_candidates`` drawn from ``l`` (or,
with a finite ``candidates`` list such as a benchmark table's configs, among all unused ones).
Numbers are Gaussian kernels in the domain's [0, 1] encoding (log scales in log space), mixed
with a uniform prior of weight 1/(n+1); choices are smoothed counts. A conditional parameter's
densities use only the trials where it was active.

Trials are ranked as in ``hwtune.transfer``: one that reached a higher resource level ranks
before one that stopped earlier, then by the loss of ``objective`` at its last report.

Hooks for transfer (``hwtune.transfer``): ``fixed`` pins parameters to values (they are not
searched until every combination of the free ones was tried); ``prior`` is a pair of densities (``ParzenEstimator``) over some parameters, learned
from an earlier study, used instead of random search until this study has ``n_startup``
reported trials.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

from hwtune.api.records import Hardware, Objective, Observation, TrialRecord
from hwtune.optimize.searchers.base import Searcher
from hwtune.optimize.searchers.random import as_hardware_space, check_candidates
from hwtune.space import SearchSpace, config_key
from hwtune.space.domains import CategoricalDomain, Domain

__all__ = ["HARDWARE", "ParzenEstimator", "TPESearcher", "encode_values", "rank_split"]

HARDWARE = "__hardware__"


def _topo(space: SearchSpace) -> tuple[str, ...]:
    return space._order  # noqa: SLF001 - conditions need parents first


class _Dim:
    """One parameter's density: kernels in [0, 1] or smoothed counts."""

    def __init__(self, domain: Domain, values: Sequence[Any], weights: np.ndarray | None = None):
        self.domain = domain
        self.categorical = isinstance(domain, CategoricalDomain)
        w = np.ones(len(values)) if weights is None else np.asarray(weights, float)
        if self.categorical:
            counts = np.ones(len(domain.values))  # the prior: one pseudo-count per choice
            for v, wi in zip(values, w):
                counts[domain.index(v)] += wi
            self.probs = counts / counts.sum()
        else:
            col = np.zeros(1)
            xs = []
            for v in values:
                domain.encode(v, col)
                xs.append(float(col[0]))
            self.x = np.asarray(xs)
            self.w = w
            n = len(xs)
            if n <= 1:
                self.sigma = 0.25
            else:
                spread = float(np.std(self.x))
                self.sigma = float(min(0.35, max(0.05, 1.06 * spread * n ** -0.2)))
            self.prior_weight = 1.0 / (n + 1)

    def logpdf(self, value: Any) -> float:
        if self.categorical:
            return float(math.log(self.probs[self.domain.index(value)]))
        col = np.zeros(1)
        self.domain.encode(value, col)
        u = float(col[0])
        density = self.prior_weight
        if len(self.x):
            k = np.exp(-0.5 * ((u - self.x) / self.sigma) ** 2) / (self.sigma * math.sqrt(2 * math.pi))
            density += (1 - self.prior_weight) * float(np.sum(self.w * k) / np.sum(self.w))
        return math.log(max(density, 1e-300))

    def logpdf_encoded(self, e: np.ndarray) -> np.ndarray:
        """``logpdf`` of many values given as ``encode_values`` gives them."""
        if self.categorical:
            return np.log(self.probs[e.astype(int)])
        density = np.full(len(e), self.prior_weight)
        if len(self.x):
            k = np.exp(-0.5 * ((e[:, None] - self.x[None, :]) / self.sigma) ** 2) / (
                self.sigma * math.sqrt(2 * math.pi))
            density += (1 - self.prior_weight) * (k @ self.w) / self.w.sum()
        return np.log(np.maximum(density, 1e-300))

    def sample(self, rng: np.random.Generator) -> Any:
        if self.categorical:
            return self.domain.values[int(rng.choice(len(self.probs), p=self.probs))]
        if not len(self.x) or rng.random() < self.prior_weight:
            return self.domain.sample(rng)
        i = int(rng.choice(len(self.x), p=self.w / self.w.sum()))
        u = float(rng.normal(self.x[i], self.sigma))
        for _ in range(8):  # truncated kernel: redraw rather than pile up on the bounds
            if 0.0 <= u <= 1.0:
                break
            u = float(rng.normal(self.x[i], self.sigma))
        u = min(1.0, max(0.0, u))
        return self.domain.decode(np.array([u]))


class ParzenEstimator:
    """Densities of ``names`` (parameters of ``space`` and/or ``HARDWARE``) fitted on points
    ``(config, hardware)``; a parameter absent from a point does not count for it."""

    def __init__(self, space: SearchSpace, hardware: Sequence[Hardware], names: Sequence[str],
                 points: Sequence[tuple[Mapping[str, Any], Hardware | None]],
                 weights: Sequence[float] | None = None) -> None:
        self.names = tuple(names)
        self.n = len(points)
        w = np.ones(len(points)) if weights is None else np.asarray(weights, float)
        self.dims: dict[str, _Dim] = {}
        for name in self.names:
            if name == HARDWARE:
                if not hardware:
                    continue
                domain: Domain = CategoricalDomain(HARDWARE, [str(h) for h in hardware])
                idx = [i for i, (_, h) in enumerate(points) if h is not None and str(h) in
                       {str(x) for x in hardware}]
                values = [str(points[i][1]) for i in idx]
            else:
                domain = space[name]
                idx = [i for i, (c, _) in enumerate(points) if name in c]
                values = [points[i][0][name] for i in idx]
            self.dims[name] = _Dim(domain, values, w[idx] if idx else np.ones(0))

    def logpdf(self, config: Mapping[str, Any], hardware: Hardware | None) -> float:
        total = 0.0
        for name, dim in self.dims.items():
            if name == HARDWARE:
                if hardware is not None:
                    total += dim.logpdf(str(hardware))
            elif name in config:
                total += dim.logpdf(config[name])
        return total


    def logpdf_encoded(self, encoded: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
        """``logpdf`` of many points at once: ``encoded[name] = (values, active)`` as
        ``encode_values`` gives them (``HARDWARE``: indices into this estimator's choices)."""
        total = None
        for name, dim in self.dims.items():
            values, active = encoded[name]
            part = np.where(active, dim.logpdf_encoded(np.where(active, values, 0)), 0.0)
            total = part if total is None else total + part
        n = len(next(iter(encoded.values()))[0]) if encoded else 0
        return np.zeros(n) if total is None else total


def encode_values(domain: Domain, values: Sequence[Any]) -> np.ndarray:
    """Values as ``_Dim.logpdf_encoded`` reads them: unit encodings, or choice indices."""
    if isinstance(domain, CategoricalDomain):
        return np.asarray([domain.index(v) for v in values], dtype=float)
    col = np.zeros(1)
    out = np.empty(len(values))
    for i, v in enumerate(values):
        domain.encode(v, col)
        out[i] = col[0]
    return out


def rank_split(n: int, gamma: float) -> int:
    """How many of ``n`` ranked trials are 'good': ceil(gamma * n), at least 1, at most 25."""
    return max(1, min(25, int(math.ceil(gamma * n))))


class TPESearcher(Searcher):
    def __init__(
        self,
        space: SearchSpace,
        hardware: Sequence[Hardware] | None = None,
        seed: int | None = 0,
        *,
        objective: Objective | None = None,
        n_startup: int | None = None,
        gamma: float = 0.25,
        n_candidates: int = 32,
        candidates: Sequence[Mapping[str, Any]] | None = None,
        fixed: Mapping[str, Any] | None = None,
        fixed_hardware: Hardware | None = None,
        prior: tuple[ParzenEstimator, ParzenEstimator] | None = None,
    ) -> None:
        if not 0 < gamma < 1:
            raise ValueError(f"gamma must be in (0, 1), got {gamma}")
        self.space = space
        self.hardware = as_hardware_space(hardware)
        self.objective = objective or Objective("loss")
        self.candidates = check_candidates(space, candidates)
        self.gamma = gamma
        self.n_candidates = n_candidates
        # Random draws first: enough to tell good from bad in each dimension.
        self.n_startup = n_startup if n_startup is not None else max(5, min(10, len(space) + 2))
        self.fixed = {k: space[k].validate(v, f"fixed.{k}") for k, v in (fixed or {}).items()}
        if fixed_hardware is not None and fixed_hardware not in self.hardware:
            fixed_hardware = None
        self.fixed_hardware = fixed_hardware
        self.prior = prior
        self._rng = np.random.default_rng(seed)
        self._seen: set[tuple] = set()
        self._trials: dict[int, tuple[Mapping[str, Any], Hardware | None]] = {}
        self._last: dict[int, tuple[int, float]] = {}  # trial -> (resource, loss)
        self._names = tuple(self.space.names) + ((HARDWARE,) if len(self.hardware) else ())
        self._free = tuple(n for n in self._names if n not in self.fixed and not (
            n == HARDWARE and self.fixed_hardware is not None))

    # -- data ------------------------------------------------------------------------------------
    def on_trial_add(self, trial: TrialRecord) -> None:
        self._trials[trial.trial_id] = (dict(trial.config), trial.hardware)
        self._seen.add((config_key(trial.config), trial.hardware))

    def on_trial_result(self, trial: TrialRecord, observation: Observation) -> None:
        value = observation.metrics.get(self.objective.metric)
        if value is None:
            return
        self._trials.setdefault(trial.trial_id, (dict(trial.config), trial.hardware))
        self._last[trial.trial_id] = (observation.resource, self.objective.loss(value))

    @property
    def n_reported(self) -> int:
        return len(self._last)

    def ranked_points(self) -> list[tuple[Mapping[str, Any], Hardware | None]]:
        order = sorted(self._last, key=lambda t: (-self._last[t][0], self._last[t][1], t))
        return [self._trials[t] for t in order]

    # -- suggestions -----------------------------------------------------------------------------
    def _model(self) -> tuple[ParzenEstimator, ParzenEstimator] | None:
        if self.n_reported >= self.n_startup:
            points = self.ranked_points()
            k = rank_split(len(points), self.gamma)
            return (ParzenEstimator(self.space, self.hardware, self._free, points[:k]),
                    ParzenEstimator(self.space, self.hardware, self._free, points[k:]))
        return self.prior

    def _draw(self, good: ParzenEstimator | None) -> tuple[dict[str, Any], Hardware | None]:
        config: dict[str, Any] = {}
        for name in _topo(self.space):
            if not self.space.is_active(name, config):
                continue
            if name in self.fixed:
                config[name] = self.fixed[name]
            elif good is not None and name in good.dims:
                config[name] = good.dims[name].sample(self._rng)
            else:
                config[name] = self.space[name].sample(self._rng)
        config = {n: config[n] for n in self.space.names if n in config}
        if self.fixed_hardware is not None:
            hw = self.fixed_hardware
        elif good is not None and HARDWARE in good.dims:
            label = good.dims[HARDWARE].sample(self._rng)
            hw = next(h for h in self.hardware if str(h) == label)
        else:
            hw = self.hardware.sample(self._rng)
        return config, hw

    def _score(self, model, config, hw) -> float:
        good, bad = model
        return good.logpdf(config, hw) - bad.logpdf(config, hw)

    def suggest(self) -> tuple[dict[str, Any], Hardware | None] | None:
        proposal = self._suggest()
        if proposal is None and (self.fixed or self.fixed_hardware is not None):
            # Every value of the free parameters was tried: search the pinned ones too.
            self.fixed, self.fixed_hardware = {}, None
            self._free = self._names
            proposal = self._suggest()
        return proposal

    def _suggest(self) -> tuple[dict[str, Any], Hardware | None] | None:
        model = self._model()
        if self.candidates is not None:
            return self._suggest_from_candidates(model)
        best, best_score = None, -math.inf
        draws = self.n_candidates if model is not None else 1
        for _ in range(20 * draws):
            config, hw = self._draw(model[0] if model is not None else None)
            key = (config_key(config), hw)
            if key in self._seen:
                continue
            score = 0.0 if model is None else self._score(model, config, hw)
            if score > best_score:
                best, best_score = (config, hw), score
            draws -= 1
            if draws <= 0:
                break
        if best is None:
            return None
        self._seen.add((config_key(best[0]), best[1]))
        return best

    def _score_many(self, model, pool) -> np.ndarray:
        encoded: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        names = set(model[0].dims) | set(model[1].dims)
        for name in names:
            if name == HARDWARE:
                labels = [str(h) for h in self.hardware]
                idx = np.asarray([labels.index(str(h)) if h is not None else 0 for _, h in pool], float)
                encoded[name] = (idx, np.asarray([h is not None for _, h in pool]))
                continue
            active = np.asarray([name in c for c, _ in pool])
            domain = self.space[name]
            fill = domain.values[0] if isinstance(domain, CategoricalDomain) else None
            vals = [c[name] if name in c else (fill if fill is not None else domain.decode(np.zeros(1)))
                    for c, _ in pool]
            encoded[name] = (encode_values(domain, vals), active)
        return model[0].logpdf_encoded(encoded) - model[1].logpdf_encoded(encoded)

    def _fixed_distance(self, config: Mapping[str, Any]) -> float:
        d = 0.0
        for name, value in self.fixed.items():
            a, b = np.zeros(self.space[name].width), np.zeros(self.space[name].width)
            if name not in config:
                continue
            self.space[name].encode(value, a)
            self.space[name].encode(config[name], b)
            d += float(np.abs(a - b).sum())
        return d

    def _suggest_from_candidates(self, model) -> tuple[dict[str, Any], Hardware | None] | None:
        hws: list[Hardware | None] = ([self.fixed_hardware] if self.fixed_hardware is not None
                                      else list(self.hardware) or [None])
        pool = [(c, h) for c in self.candidates for h in hws if (config_key(c), h) not in self._seen]
        if not pool:
            return None
        if self.fixed:
            # Pinned values may fall between the candidates: keep the nearest ones.
            dist = np.array([self._fixed_distance(c) for c, _ in pool])
            keep = max(1, min(len(pool), max(5, len(pool) // 10)))
            cut = np.sort(dist)[keep - 1]
            pool = [p for p, d in zip(pool, dist) if d <= cut + 1e-12]
        if model is None:
            choice = pool[int(self._rng.integers(len(pool)))]
        else:
            scores = self._score_many(model, pool)
            best = np.flatnonzero(scores >= scores.max() - 1e-12)
            choice = pool[int(best[self._rng.integers(len(best))])]
        self._seen.add((config_key(choice[0]), choice[1]))
        return dict(choice[0]), choice[1]
