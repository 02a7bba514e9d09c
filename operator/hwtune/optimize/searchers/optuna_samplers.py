"""Optuna's samplers as hwtune searchers, through Optuna's ask-and-tell interface.

Names (``hwtune.api.algorithms``) and what Katib calls them:

=========================== =============================== ===========================
hwtune searcher              Optuna sampler                  Katib algorithmName
=========================== =============================== ===========================
``optuna-tpe``               TPESampler (MOTPE with several  ``tpe``
                             objectives)
``optuna-multivariate-tpe``  TPESampler(multivariate=True)   ``multivariate-tpe``
``optuna-cmaes``             CmaEsSampler (one objective)    ``cmaes``
``optuna-gp``                GPSampler                       ``bayesianoptimization``
``optuna-sobol``             QMCSampler(qmc_type="sobol")    ``sobol``
``optuna-nsga2``             NSGAIISampler                   (none)
=========================== =============================== ===========================

The searcher only proposes; the study's scheduler (FIFO, ASHA, MO-ASHA, ...) decides when trials
stop, so ASHA stops what TPE proposes. Hardware is one categorical dimension (``pool:gpus``).
Ordinal parameters (``values`` of numbers, stepped ranges) are an integer index, so samplers
that model order (TPE, CMA-ES, GP) see it.

Telling: a trial is told to Optuna once, when it stops running (completed, stopped, failed, or
paused by a promotion scheduler: whatever it reports after a resume does not reach Optuna), with
its latest objective values (the metric strategy already applied). A trial that failed without
its objectives (out of memory on a small GPU) is told the worst values seen so far: Optuna's
samplers skip failed trials and would propose the same failing pair again. Several trials run at once, so TPE uses the constant liar.

Determinism: every sampler is seeded with ``algorithm.seed`` and the study is in memory. The
engine rebuilds a study by replaying its log through a fresh searcher: the same calls in the
same order (``suggest``, ``on_trial_add``, results, completions), so the sampler asks and is told
exactly as before and its next suggestion equals the uninterrupted run's.

Optuna is imported when one of these searchers is built, never by the light paths (it is a
dependency of the ``tune`` extra). ``optuna-gp`` is the one searcher that needs torch, and
hwtune never imports it (the layering rule: only ``hwtune.surrogate`` does): Optuna's GP sampler
imports it lazily itself, when it first fits its model after the startup trials. A study naming
``optuna-gp`` where torch is not installed is refused when its algorithm is checked, with what
to install, instead of failing deep in Optuna at its first model-based suggestion
(tests/optimize/test_optuna_gp_torch.py checks both).

Settings (``algorithm.settings``): ``optunaStartupTrials`` (random trials before the model;
TPE, GP, CMA-ES), ``optunaPopulationSize`` (NSGA-II), ``optunaSettings`` (a map passed as
keyword arguments to the sampler, for anything else).
"""

from __future__ import annotations

import logging
from typing import Any, Mapping, Sequence

import numpy as np

from hwtune.api.records import Hardware, Objective, Observation, TrialPhase, TrialRecord
from hwtune.optimize.searchers.base import Searcher
from hwtune.optimize.searchers.random import as_hardware_space, check_candidates
from hwtune.space import SearchSpace, config_key
from hwtune.space.domains import (
    CategoricalDomain,
    FloatDomain,
    IntDomain,
    OrdinalDomain,
)

__all__ = ["OPTUNA_SEARCHERS", "OptunaSearcher"]

log = logging.getLogger(__name__)

HARDWARE_PARAM = "__hardware__"  # not a valid hwtune parameter name, so it cannot collide

# hwtune name -> (sampler kind, multi-objective capable)
OPTUNA_SEARCHERS: dict[str, tuple[str, bool]] = {
    "optuna-tpe": ("tpe", True),
    "optuna-multivariate-tpe": ("multivariate-tpe", True),
    "optuna-cmaes": ("cmaes", False),
    "optuna-gp": ("gp", True),
    "optuna-sobol": ("sobol", True),
    "optuna-nsga2": ("nsga2", True),
}


def _import_optuna():
    try:
        import optuna
    except ImportError as exc:  # pragma: no cover - optuna is in the tune extra
        raise ValueError("the optuna searchers need optuna (pip install 'hwtune[tune]'): "
                         f"{exc}") from None
    import warnings

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # multivariate TPE's ``group`` and the GP sampler are marked experimental; hwtune pins
    # the Optuna version, so the warning tells the user nothing they can act on.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


def _hardware_label(h: Hardware) -> str:
    return f"{h.pool}:{h.gpu_count}"


class OptunaSearcher(Searcher):
    """One Optuna sampler over (config, hardware). ``kind`` is a value of
    ``OPTUNA_SEARCHERS``; ``objectives`` the study's (directions and the values told)."""

    def __init__(
        self,
        kind: str,
        space: SearchSpace,
        hardware: Sequence[Hardware] | None,
        objectives: Sequence[Objective],
        seed: int | None = 0,
        settings: Mapping[str, Any] | None = None,
        candidates: Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        optuna = _import_optuna()
        if not objectives:
            raise ValueError("the optuna searchers need the study's objectives")
        self.kind = kind
        self.space = space
        self.hardware = as_hardware_space(hardware)
        self.objectives = tuple(objectives)
        self.seed = 0 if seed is None else int(seed)
        settings = dict(settings or {})
        self._distributions = self._make_distributions(optuna)
        sampler = self._make_sampler(optuna, kind, settings)
        directions = ["minimize" if o.goal.value == "minimize" else "maximize"
                      for o in self.objectives]
        self.study = optuna.create_study(sampler=sampler, directions=directions)
        self._optuna = optuna
        self._asked: dict[tuple, list[Any]] = {}  # (config, hardware) key -> asked trials
        self._by_trial: dict[int, Any] = {}  # hwtune trial id -> optuna trial
        self._records: dict[int, TrialRecord] = {}
        self._told: set[int] = set()
        # A benchmark table's configs: each proposal moves to the nearest unused candidate.
        self.candidates = check_candidates(space, candidates)
        self._used: set[tuple] = set()
        if self.candidates is not None:
            self._encoded = np.stack([space.encode(c) for c in self.candidates])
        self._worst: list[float] | None = None  # worst value per objective told so far
        self._failures: list[Any] = []  # failed trials waiting for a worst value

    # -- construction ----------------------------------------------------------------------------
    def _make_distributions(self, optuna) -> dict[str, Any]:
        d = optuna.distributions
        out: dict[str, Any] = {}
        for name, domain in self.space.domains.items():
            if isinstance(domain, FloatDomain):
                out[name] = d.FloatDistribution(domain.low, domain.high, log=domain.log)
            elif isinstance(domain, IntDomain):
                out[name] = d.IntDistribution(int(domain.low), int(domain.high), log=domain.log)
            elif isinstance(domain, OrdinalDomain):
                out[name] = d.IntDistribution(0, len(domain.values) - 1)
            elif isinstance(domain, CategoricalDomain):
                out[name] = d.CategoricalDistribution(list(range(len(domain.values))))
            else:  # pragma: no cover - the four domain kinds are all there is
                raise ValueError(f"parameter {name}: no Optuna distribution for {domain!r}")
        if len(self.hardware):
            out[HARDWARE_PARAM] = d.CategoricalDistribution(
                [_hardware_label(h) for h in self.hardware])
        return out

    def _make_sampler(self, optuna, kind: str, settings: Mapping[str, Any]):
        s = optuna.samplers
        extra = dict(settings.get("optunaSettings") or {})
        startup = settings.get("optunaStartupTrials")
        several = len(self.objectives) > 1
        if kind in ("tpe", "multivariate-tpe"):
            kwargs: dict[str, Any] = {"seed": self.seed, "constant_liar": True}
            if kind == "multivariate-tpe":
                kwargs.update(multivariate=True, group=True)
            if startup is not None:
                kwargs["n_startup_trials"] = int(startup)
            return s.TPESampler(**{**kwargs, **extra})
        if kind == "cmaes":
            if several:
                raise ValueError("optuna-cmaes optimises one objective; use optuna-tpe, "
                                 "optuna-nsga2 or optuna-gp for several")
            kwargs = {"seed": self.seed, "warn_independent_sampling": False}
            if startup is not None:
                kwargs["n_startup_trials"] = int(startup)
            return s.CmaEsSampler(**{**kwargs, **extra})
        if kind == "gp":
            import importlib.util

            try:
                missing = importlib.util.find_spec("torch") is None
            except (ImportError, ValueError):  # hidden or half-installed
                missing = True
            if missing:
                raise ValueError("optuna-gp needs torch, which Optuna's GP sampler imports "
                                 "(pip install 'hwtune[torch]'); optuna-tpe needs nothing more")
            kwargs = {"seed": self.seed}
            if startup is not None:
                kwargs["n_startup_trials"] = int(startup)
            return s.GPSampler(**{**kwargs, **extra})
        if kind == "sobol":
            return s.QMCSampler(**{"qmc_type": "sobol", "seed": self.seed, "scramble": True,
                                   "warn_independent_sampling": False, **extra})
        if kind == "nsga2":
            kwargs = {"seed": self.seed}
            if settings.get("optunaPopulationSize") is not None:
                kwargs["population_size"] = int(settings["optunaPopulationSize"])
            return s.NSGAIISampler(**{**kwargs, **extra})
        raise ValueError(f"unknown optuna sampler kind {kind!r}")

    # -- hwtune <-> optuna -----------------------------------------------------------------------
    def _to_hwtune(self, params: Mapping[str, Any]) -> tuple[dict[str, Any], Hardware | None]:
        config: dict[str, Any] = {}
        for name, domain in self.space.domains.items():
            value = params[name]
            if isinstance(domain, (OrdinalDomain, CategoricalDomain)):
                value = domain.values[int(value)]
            elif isinstance(domain, IntDomain):
                value = int(value)
            else:
                value = float(value)
            config[name] = value
        # Sampled everything; keep only what the conditions leave active.
        active = {n: v for n, v in config.items() if self.space.is_active(n, config)}
        hardware = None
        if len(self.hardware):
            labels = {_hardware_label(h): h for h in self.hardware}
            hardware = labels[params[HARDWARE_PARAM]]
        return active, hardware

    def _to_optuna(self, config: Mapping[str, Any], hardware: Hardware | None) -> dict[str, Any]:
        params: dict[str, Any] = {}
        for name, domain in self.space.domains.items():
            if name not in config:
                continue  # inactive: Optuna samples it, nobody reads it
            value = config[name]
            if isinstance(domain, (OrdinalDomain, CategoricalDomain)):
                value = list(domain.values).index(value)
            params[name] = value
        if hardware is not None and len(self.hardware):
            params[HARDWARE_PARAM] = _hardware_label(hardware)
        return params

    # -- Searcher ------------------------------------------------------------------------------
    def suggest(self) -> tuple[dict[str, Any], Hardware | None] | None:
        self._tell_halted()
        trial = self.study.ask(self._distributions)
        config, hardware = self._to_hwtune(trial.params)
        if self.candidates is not None:
            picked = self._nearest_candidate(config, hardware)
            if picked is None:
                self.study.tell(trial, state=self._optuna.trial.TrialState.FAIL)
                return None
            if picked != (config, hardware):
                # Optuna's trial keeps the params it sampled: drop it (samplers skip FAIL
                # trials) and run the candidate as an enqueued trial instead.
                self.study.tell(trial, state=self._optuna.trial.TrialState.FAIL)
                config, hardware = picked
                self.study.enqueue_trial(self._to_optuna(config, hardware), skip_if_exists=False)
                trial = self.study.ask(self._distributions)
            self._used.add((config_key(config), hardware))
        self._asked.setdefault((config_key(config), hardware), []).append(trial)
        return config, hardware

    def _nearest_candidate(self, config: Mapping[str, Any], hardware: Hardware | None
                           ) -> tuple[dict[str, Any], Hardware | None] | None:
        """The candidate closest to ``config`` (encoded space) not yet run on ``hardware``;
        another hardware choice when all were; None when every pair was run."""
        assert self.candidates is not None
        order = np.argsort(((self._encoded - self.space.encode(config)) ** 2).sum(axis=1),
                           kind="stable")
        choices = [hardware] + [h for h in (list(self.hardware) or [None]) if h != hardware]
        for hw in choices:
            for i in order:
                candidate = self.candidates[int(i)]
                if (config_key(candidate), hw) not in self._used:
                    return dict(candidate), hw
        return None

    def on_trial_add(self, trial: TrialRecord) -> None:
        key = (config_key(trial.config), trial.hardware)
        waiting = self._asked.get(key)
        if waiting:
            optuna_trial = waiting.pop(0)
        else:
            # Not proposed here (a user's baseline, a warm start): ask Optuna for exactly it.
            self.study.enqueue_trial(self._to_optuna(trial.config, trial.hardware),
                                     skip_if_exists=False)
            optuna_trial = self.study.ask(self._distributions)
        self._by_trial[trial.trial_id] = optuna_trial
        self._records[trial.trial_id] = trial

    def on_trial_result(self, trial: TrialRecord, observation: Observation) -> None:
        pass  # told once the trial stops running (see the module docstring)

    def on_trial_complete(self, trial: TrialRecord) -> None:
        self._tell(trial)

    def _tell_halted(self) -> None:
        """Trials a promotion scheduler paused count as done for Optuna (they may never run
        again); told in trial order so a replay tells in the same order."""
        for tid, record in sorted(self._records.items()):
            if tid not in self._told and record.phase is TrialPhase.PAUSED:
                self._tell(record)

    def _tell(self, trial: TrialRecord) -> None:
        tid = trial.trial_id
        if tid in self._told or tid not in self._by_trial:
            return
        self._told.add(tid)
        optuna_trial = self._by_trial[tid]
        state = self._optuna.trial.TrialState
        latest = trial.observations[-1] if trial.observations else None
        if latest is None or any(o.metric not in latest.metrics for o in self.objectives):
            # Optuna's samplers ignore FAIL trials and would propose an out-of-memory
            # (config, hardware) pair again and again: tell the worst values seen instead.
            self._failures.append(optuna_trial)
            self._tell_failures()
            return
        values = [float(latest.metrics[o.metric]) for o in self.objectives]
        self._worst = values if self._worst is None else [
            max(w, v) if o.goal.value == "minimize" else min(w, v)
            for w, v, o in zip(self._worst, values, self.objectives)]
        self._send(optuna_trial, values)
        self._tell_failures()

    def _tell_failures(self) -> None:
        if self._worst is None:
            return  # nothing to compare with yet: told once a trial has reported
        while self._failures:
            self._send(self._failures.pop(0), list(self._worst))

    def _send(self, optuna_trial: Any, values: list[float]) -> None:
        self.study.tell(optuna_trial, values if len(values) > 1 else values[0])


def _factory(name: str):
    kind, _ = OPTUNA_SEARCHERS[name]

    def build(space, hardware, seed, settings, *, objectives=None, context=None,
              candidates=None, **_: Any):
        if objectives is None and context is not None:
            objectives = getattr(context, "objectives", None)
        if objectives is None:
            raise ValueError(f"searcher {name!r} needs the study's objectives")
        return OptunaSearcher(kind, space, hardware, objectives, seed, settings,
                              candidates=candidates)

    return build


def register() -> None:
    from hwtune.optimize.searchers import register_searcher

    for name in OPTUNA_SEARCHERS:
        register_searcher(name, _factory(name))


register()
