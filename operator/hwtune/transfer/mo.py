"""Multi-objective transfer from related earlier studies (the MO-ASHA paper's second
ingredient): a probabilistic estimate of the Pareto front proposes candidates instead of random
search; MO-ASHA (or any scheduler) decides which of them to stop.

For every objective, each study's values are rank-normalised on its own (a Gaussian copula:
``z = inverse normal CDF((rank + 0.5) / n)``), so tasks whose error levels or runtimes differ
share one scale; a Gaussian process over the encoded (config, hardware) is fitted to the pooled
``z`` of the related studies plus this study's own reports. A suggestion draws one joint
Thompson sample of every objective over ``moCandidates`` random candidates, keeps the
candidates that are non-dominated under that sample, and picks one of them at random.

Trials stopped at different resource levels are made comparable as in ``PastStudy.ranked``
(one that trained further ranks first), except the built-in ``runtime`` and ``cost``, which
grow with training: those are scaled to the study's full resource (``value * max / level``).
"""

from __future__ import annotations

from statistics import NormalDist
from typing import Any, Mapping, Sequence

import numpy as np

from hwtune.api.records import Hardware, Objective, Observation, TrialRecord
from hwtune.optimize.pareto import pareto_front_mask
from hwtune.optimize.searchers.base import Searcher
from hwtune.optimize.searchers.random import as_hardware_space, check_candidates
from hwtune.space import SearchSpace, config_key
from hwtune.transfer.matching import match_spaces
from hwtune.transfer.records import PastStudy, TransferError

__all__ = ["CopulaGP", "CopulaTransferSearcher", "copula_scores"]

_CUMULATIVE = ("runtime", "cost")
_NORMAL = NormalDist()


def copula_scores(rows: Sequence[tuple[int, float]], max_resource: int, metric: str) -> np.ndarray:
    """Normal scores of ``(resource, loss)`` rows: 0 is the median, negative is better."""
    n = len(rows)
    if metric in _CUMULATIVE:
        keys = [(0, loss * max_resource / max(1, r)) for r, loss in rows]
    else:
        keys = [(-r, loss) for r, loss in rows]
    order = sorted(range(n), key=lambda i: (keys[i], i))
    z = np.empty(n)
    for rank, i in enumerate(order):
        z[i] = _NORMAL.inv_cdf((rank + 0.5) / n)
    return z


class CopulaGP:
    """A zero-mean GP with an RBF kernel on [0, 1]-encoded inputs; length scale and noise
    picked by marginal likelihood on a small grid (the data are normal scores: unit scale)."""

    LENGTHS = (0.15, 0.3, 0.6, 1.2)
    NOISES = (0.05, 0.2, 0.5)

    def __init__(self, x: np.ndarray, y: np.ndarray,
                 hyper: tuple[float, float] | None = None) -> None:
        """``hyper``: (length scale, noise) to use instead of the grid search."""
        self.x, self.y = x, y
        best = self._fit(hyper) if hyper is not None else None
        if best is None:  # no hyperparameters given, or they no longer fit: search the grid
            for ls in self.LENGTHS:
                for noise in self.NOISES:
                    fit = self._fit((ls, noise))
                    if fit is not None and (best is None or fit[0] > best[0]):
                        best = fit
        assert best is not None
        _, self.length, self.noise, self._chol, self._alpha = best

    def _fit(self, hyper: tuple[float, float]):
        """(log marginal likelihood, length, noise, Cholesky factor, weights), or None."""
        ls, noise = hyper
        k = self._k(self.x, self.x, ls) + noise * np.eye(len(self.x))
        try:
            chol = np.linalg.cholesky(k)
        except np.linalg.LinAlgError:
            return None
        alpha = np.linalg.solve(chol.T, np.linalg.solve(chol, self.y))
        return -0.5 * self.y @ alpha - np.log(np.diag(chol)).sum(), ls, noise, chol, alpha

    @property
    def hyper(self) -> tuple[float, float]:
        return self.length, self.noise

    def _k(self, a: np.ndarray, b: np.ndarray, ls: float) -> np.ndarray:
        d2 = np.maximum((a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T, 0.0)
        # Scale with the input width so one grid fits every space.
        return np.exp(-0.5 * d2 / (ls ** 2 * max(1, a.shape[1]) / 4))

    def sample(self, xs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One joint posterior sample of the latent function at ``xs``."""
        ks = self._k(xs, self.x, self.length)
        mean = ks @ self._alpha
        v = np.linalg.solve(self._chol, ks.T)
        cov = self._k(xs, xs, self.length) - v.T @ v
        eps = rng.standard_normal(len(xs))
        try:
            return mean + np.linalg.cholesky(cov + 1e-6 * np.eye(len(xs))) @ eps
        except np.linalg.LinAlgError:
            w, u = np.linalg.eigh((cov + cov.T) / 2)
            return mean + u @ (np.sqrt(np.clip(w, 0, None)) * eps)


class CopulaTransferSearcher(Searcher):
    def __init__(
        self,
        space: SearchSpace,
        hardware: Sequence[Hardware] | None,
        seed: int | None,
        *,
        objectives: Sequence[Objective],
        studies: Sequence[PastStudy],
        settings: Mapping[str, Any] | None = None,
        candidates: Sequence[Mapping[str, Any]] | None = None,
        renames: Mapping[str, str] | None = None,
    ) -> None:
        settings = dict(settings or {})
        self._renames = dict(renames or {})
        self.space = space
        self.hardware = as_hardware_space(hardware)
        self.objectives = tuple(objectives)
        self.candidates = check_candidates(space, candidates)
        self.n_candidates = int(settings.get("moCandidates", 256))
        self.max_points = int(settings.get("moMaxPoints", 400))
        self._rng = np.random.default_rng(seed)
        self._seen: set[tuple] = set()
        self._own: dict[int, tuple[dict[str, Any], Hardware | None]] = {}
        self._own_obs: dict[int, tuple[int, dict[str, float]]] = {}
        self._max_resource = 1
        self._fitted: tuple[int, list[CopulaGP]] | None = None
        self._results = 0  # observations seen (the fitted models are for this many)
        self._hyper_n: int | None = None  # data size when the kernel hyperparameters were chosen
        # (x rows, z per objective) of the related studies, fixed once.
        self._past_x, self._past_z = self._past(studies)

    # -- data -----------------------------------------------------------------------------------
    def _encode(self, config: Mapping[str, Any], hw: Hardware | None) -> np.ndarray:
        return np.concatenate([self.space.encode(config), self.hardware.encode(hw)])

    def _past(self, studies: Sequence[PastStudy]):
        if not studies:
            raise TransferError("transfer needs at least one earlier study")
        xs: list[np.ndarray] = []
        zs: list[list[float]] = [[] for _ in self.objectives]
        for study in studies:
            match = match_spaces(study.space, self.space, old_hardware=study.hardware,
                                 new_hardware=tuple(self.hardware),
                                 renames={k: v for k, v in self._renames.items() if k in study.parameters})
            usable = []
            for t in study.reported():
                shared, hw = match.project(t.config, t.hardware)
                try:
                    config = self.space.validate(shared)
                except ValueError:
                    continue  # this trial lacks a value the new space needs
                if len(self.hardware) and hw is None:
                    continue
                usable.append((t, config, hw))
            if len(usable) < 3:
                continue
            ok = True
            per_obj = []
            for o in self.objectives:
                rows = [(t.last_resource, t.final.get(o.metric)) for t, _, _ in usable]
                if any(v is None for _, v in rows):
                    ok = False
                    break
                per_obj.append(copula_scores([(r, o.loss(v)) for r, v in rows],
                                             max(study.max_resource, 1), o.metric))
            if not ok:
                continue
            self._max_resource = max(self._max_resource, study.max_resource)
            for t, config, hw in usable:
                xs.append(self._encode(config, hw))
            for j, z in enumerate(per_obj):
                zs[j].extend(z.tolist())
        if not xs:
            raise TransferError(
                f"earlier studies {', '.join(s.name for s in studies)} have no trials usable for "
                f"objectives {', '.join(o.metric for o in self.objectives)} in this search space")
        x = np.asarray(xs)
        z = np.asarray(zs).T  # (n, objectives)
        if len(x) > self.max_points:
            keep = np.sort(self._rng.choice(len(x), self.max_points, replace=False))
            x, z = x[keep], z[keep]
        return x, z

    def on_trial_add(self, trial: TrialRecord) -> None:
        self._own[trial.trial_id] = (dict(trial.config), trial.hardware)
        self._seen.add((config_key(trial.config), trial.hardware))

    def on_trial_result(self, trial: TrialRecord, observation: Observation) -> None:
        self._own.setdefault(trial.trial_id, (dict(trial.config), trial.hardware))
        self._own_obs[trial.trial_id] = (observation.resource, dict(observation.metrics))
        self._results += 1

    def _training_set(self) -> tuple[np.ndarray, np.ndarray]:
        ids = [t for t in sorted(self._own_obs)
               if all(o.metric in self._own_obs[t][1] for o in self.objectives)]
        if len(ids) < 3:
            return self._past_x, self._past_z
        max_r = max(self._max_resource, max(self._own_obs[t][0] for t in ids))
        own_z = np.stack([
            copula_scores([(self._own_obs[t][0], o.loss(self._own_obs[t][1][o.metric])) for t in ids],
                          max_r, o.metric) for o in self.objectives], axis=1)
        own_x = np.asarray([self._encode(*self._own[t]) for t in ids])
        return np.vstack([self._past_x, own_x]), np.vstack([self._past_z, own_z])

    # -- suggestions ----------------------------------------------------------------------------
    def _pool(self) -> list[tuple[dict[str, Any], Hardware | None]]:
        out: list[tuple[dict[str, Any], Hardware | None]] = []
        if self.candidates is not None:
            hws: list[Hardware | None] = list(self.hardware) or [None]
            pool = [(c, h) for c in self.candidates for h in hws
                    if (config_key(c), h) not in self._seen]
            if len(pool) > self.n_candidates:
                idx = self._rng.choice(len(pool), self.n_candidates, replace=False)
                pool = [pool[i] for i in sorted(idx)]
            return [(dict(c), h) for c, h in pool]
        for _ in range(4 * self.n_candidates):
            config, hw = self.space.sample(self._rng), self.hardware.sample(self._rng)
            key = (config_key(config), hw)
            if key not in self._seen:
                out.append((config, hw))
            if len(out) >= self.n_candidates:
                break
        return out

    def suggest(self) -> tuple[dict[str, Any], Hardware | None] | None:
        pool = self._pool()
        if not pool:
            return None
        x, z = self._training_set()
        if self._fitted is None or self._fitted[0] != self._results:  # refit on new data only
            # Kernel hyperparameters are searched again only when the data grew by half.
            research = self._hyper_n is None or len(x) >= 1.5 * self._hyper_n
            old = self._fitted[1] if self._fitted is not None else None
            gps = [CopulaGP(x, z[:, j], None if research or old is None else old[j].hyper)
                   for j in range(z.shape[1])]
            if research:
                self._hyper_n = len(x)
            self._fitted = (self._results, gps)
        xs = np.asarray([self._encode(c, h) for c, h in pool])
        samples = np.stack([gp.sample(xs, self._rng) for gp in self._fitted[1]], axis=1)
        front = np.flatnonzero(pareto_front_mask(samples))
        pick = pool[int(front[self._rng.integers(len(front))])]
        self._seen.add((config_key(pick[0]), pick[1]))
        return pick
