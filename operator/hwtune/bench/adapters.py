"""Other tuners behind hwtune's Scheduler contract, so one simulated loop runs them all.

- :class:`TableSearcher`: uniform random (config, hardware) pairs drawn from a benchmark table,
  without repetition. Random search, ASHA and MO-ASHA of hwtune use it, so they all sample
  exactly the table's configs.
- :class:`SyneTuneMOASHA`: Syne Tune 0.13's ``MOASHA`` (syne_tune.optimizer.schedulers.
  multiobjective). Its config space is the table's config index plus the hardware as a
  categorical ``instance_type`` — the way Syne Tune tunes instance types — both drawn at random
  by Syne Tune itself. Released MOASHA samples *with* replacement (11-21% of its trials repeated a
  (config, hardware) pair already run in our probes); the adapter redraws a repeated pair
  (``without_replacement=True``, the default), so its sampling matches :class:`TableSearcher`
  and only the stopping rule differs. ``without_replacement=False`` runs it as released.
- :class:`OptunaScheduler`: an Optuna study (NSGA-II or multi-objective TPE) through ask/tell.
  Optuna samples the table's real parameter space plus a categorical hardware choice; the config
  is mapped to the nearest table config (``BenchmarkTable.nearest_index``) and each trial runs to
  the maximum resource (no early stopping), its final objectives told back to Optuna.
- :class:`TimedScheduler`: wraps any scheduler and measures the time of each decision.

Syne Tune and Optuna are imported lazily (they are benchmark extras, not hwtune dependencies).
"""

from __future__ import annotations

import contextlib
import io
import time
from collections import deque
from typing import Any, Mapping, Sequence

import numpy as np

from hwtune.api.records import Decision, Hardware, Objective, Observation, TrialRecord
from hwtune.bench.table import BenchmarkTable
from hwtune.optimize.schedulers.base import Scheduler, TrialSuggestion
from hwtune.optimize.searchers.base import Searcher

__all__ = ["OptunaScheduler", "SyneTuneMOASHA", "TableSearcher", "TimedScheduler"]


class TableSearcher(Searcher):
    """Draws (table config, hardware) pairs uniformly without replacement; None when all pairs
    were drawn. ``hardware`` empty means the study has no hardware dimension."""

    def __init__(self, table: BenchmarkTable, hardware: Sequence[Hardware], seed: int = 0):
        self.table = table
        self.hardware = list(hardware)
        self._rng = np.random.default_rng(seed)
        self._n_hw = max(1, len(self.hardware))
        self._total = len(table) * self._n_hw
        self._drawn: set[int] = set()

    def suggest(self) -> tuple[Mapping[str, Any], Hardware | None] | None:
        if len(self._drawn) >= self._total:
            return None
        # rejection sampling is cheap while the space is mostly unexplored; fall back to an
        # explicit list of what is left once most pairs are taken
        if len(self._drawn) < 0.8 * self._total:
            while True:
                pair = int(self._rng.integers(self._total))
                if pair not in self._drawn:
                    break
        else:
            left = np.setdiff1d(np.arange(self._total), np.fromiter(self._drawn, int))
            pair = int(left[self._rng.integers(len(left))])
        self._drawn.add(pair)
        config_index, hw_index = divmod(pair, self._n_hw)
        hardware = self.hardware[hw_index] if self.hardware else None
        return self.table.config(config_index), hardware


class TimedScheduler(Scheduler):
    """Forwards everything to ``inner`` and records the seconds each ``on_trial_result`` and
    ``suggest`` took (the decision overhead a tuner adds per report)."""

    def __init__(self, inner: Scheduler):
        self.inner = inner
        self.objectives = inner.objectives
        self.result_seconds: list[float] = []
        self.suggest_seconds: list[float] = []

    def suggest(self) -> TrialSuggestion | None:
        t0 = time.perf_counter()
        out = self.inner.suggest()
        self.suggest_seconds.append(time.perf_counter() - t0)
        return out

    def suggest_resume(self) -> TrialSuggestion | None:
        t0 = time.perf_counter()
        out = self.inner.suggest_resume()
        self.suggest_seconds.append(time.perf_counter() - t0)
        return out

    def on_trial_add(self, trial: TrialRecord) -> None:
        self.inner.on_trial_add(trial)

    def on_trial_result(self, trial: TrialRecord, observation: Observation) -> Decision:
        t0 = time.perf_counter()
        out = self.inner.on_trial_result(trial, observation)
        self.result_seconds.append(time.perf_counter() - t0)
        return out

    def on_trial_error(self, trial: TrialRecord) -> None:
        self.inner.on_trial_error(trial)

    def on_trial_complete(self, trial: TrialRecord) -> None:
        self.inner.on_trial_complete(trial)

    def on_trial_remove(self, trial: TrialRecord) -> None:
        self.inner.on_trial_remove(trial)


class _PendingAdds:
    """Matches ``on_trial_add`` to the suggestion it came from: the engine adds a trial right
    after the suggestion that produced it, in order."""

    def __init__(self) -> None:
        self._queue: deque[Any] = deque()

    def push(self, item: Any) -> None:
        self._queue.append(item)

    def pop(self, trial: TrialRecord) -> Any:
        if not self._queue:
            raise RuntimeError(f"trial {trial.trial_id} was added without a suggestion from this scheduler")
        return self._queue.popleft()


def _ranked_priority():
    """A Syne Tune ``MOPriority`` that returns each point's position in the non-dominated sort.

    Syne Tune 0.13's ``NonDominatedPriority`` returns ``nondominated_sort``'s output, which is
    the list of point indices in sorted order, while ``MOASHA`` reads it as one priority per
    point; so the rank it checks for the new trial is really "the index of the point sorted
    last", and a trial that dominates every recorded point can be stopped. This priority inverts
    the order into ranks (``rank_fix=True``), the rule the MO-ASHA paper describes. The order
    inside a front stays Syne Tune's own."""
    from syne_tune.optimizer.schedulers.multiobjective.multiobjective_priority import MOPriority
    from syne_tune.optimizer.schedulers.multiobjective.non_dominated_priority import nondominated_sort

    class RankedNonDominatedPriority(MOPriority):
        def priority_unsafe(self, objectives: np.ndarray) -> np.ndarray:
            order = np.asarray(nondominated_sort(objectives, dim=0), dtype=int)
            ranks = np.empty(len(order), dtype=int)
            ranks[order] = np.arange(len(order))
            return ranks

    return RankedNonDominatedPriority()


class SyneTuneMOASHA(Scheduler):
    """Syne Tune 0.13 MOASHA driven through hwtune's scheduler contract.

    ``rank_fix=False`` runs Syne Tune exactly as released; ``True`` swaps in
    :func:`_ranked_priority`, which repairs how its rung ranking reads the non-dominated sort.

    Syne Tune's samplers and its bracket draw use numpy's global random state; the adapter keeps
    a private state and swaps it in around every call, so runs are repeatable and nothing else
    that uses ``np.random`` is disturbed. Syne Tune prints a line per added trial; that output is
    swallowed. A STOP at the maximum resource (Syne Tune's way to end a trial) is answered
    CONTINUE, since the engine completes the trial there anyway.

    ``without_replacement`` (default True): a drawn (config, hardware) pair that was already
    suggested is drawn again by Syne Tune (its ``suggest`` only samples), so no pair runs twice,
    as with hwtune's searchers; once every pair was suggested, ``suggest`` returns None.
    ``repeats`` counts the redraws.
    """

    MAX_REDRAWS = 10_000

    INSTANCE_TYPE = "instance_type"
    CONFIG_INDEX = "config_index"

    def __init__(self, table: BenchmarkTable, hardware: Sequence[Hardware], objectives: Sequence[Objective],
                 *, resource_min: int = 1, resource_max: int, reduction_factor: float = 3, seed: int = 0,
                 resource_attr: str = "epoch", rank_fix: bool = False,
                 without_replacement: bool = True):
        from syne_tune.config_space import choice, randint
        from syne_tune.optimizer.schedulers.multiobjective import MOASHA

        self.table = table
        self.objectives = tuple(objectives)
        self.resource_max = resource_max
        self.resource_attr = resource_attr
        self._hardware = {str(h): h for h in hardware}
        space: dict[str, Any] = {self.CONFIG_INDEX: randint(0, len(table) - 1)}
        if self._hardware:
            space[self.INSTANCE_TYPE] = choice(sorted(self._hardware))
        modes = ["min" if o.goal.sign > 0 else "max" for o in self.objectives]
        self._rs = np.random.RandomState(seed)
        with self._private_random():
            self._st = MOASHA(config_space=space, metrics=[o.metric for o in self.objectives], mode=modes,
                              time_attr=resource_attr, max_t=resource_max, grace_period=resource_min,
                              reduction_factor=reduction_factor,
                              multiobjective_priority=_ranked_priority() if rank_fix else None)
        self._next_st_id = 0
        self.without_replacement = without_replacement
        self._suggested: set[tuple[int, str | None]] = set()
        self._pairs = len(table) * max(1, len(self._hardware))
        self.repeats = 0  # pairs Syne Tune drew again (redrawn, or run twice when allowed)
        self._pending = _PendingAdds()
        self._st_trials: dict[int, Any] = {}
        self._last_result: dict[int, dict[str, Any]] = {}

    @contextlib.contextmanager
    def _private_random(self):
        saved = np.random.get_state()
        np.random.set_state(self._rs.get_state())
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                yield
        finally:
            self._rs.set_state(np.random.get_state())
            np.random.set_state(saved)

    def suggest(self) -> TrialSuggestion | None:
        if self.without_replacement and len(self._suggested) >= self._pairs:
            return None
        for _ in range(self.MAX_REDRAWS):
            with self._private_random():
                st_suggestion = self._st.suggest(self._next_st_id)
            if st_suggestion is None:
                return None
            st_config = dict(st_suggestion.config)
            pair = (int(st_config[self.CONFIG_INDEX]), st_config.get(self.INSTANCE_TYPE))
            if pair not in self._suggested:
                break
            self.repeats += 1
            if not self.without_replacement:
                break
        else:
            return None  # a near-exhausted space: stop rather than spin
        self._suggested.add(pair)
        config = self.table.config(int(st_config[self.CONFIG_INDEX]))
        hardware = self._hardware[st_config[self.INSTANCE_TYPE]] if self._hardware else None
        self._pending.push((self._next_st_id, st_config))
        self._next_st_id += 1
        return TrialSuggestion.new(config, hardware)

    def on_trial_add(self, trial: TrialRecord) -> None:
        from datetime import datetime

        from syne_tune.backend.trial_status import Trial

        st_id, st_config = self._pending.pop(trial)
        st_trial = Trial(trial_id=st_id, config=st_config, creation_time=datetime.now())
        self._st_trials[trial.trial_id] = st_trial
        with self._private_random():
            self._st.on_trial_add(st_trial)

    def _result(self, observation: Observation) -> dict[str, Any]:
        result = {o.metric: float(observation.metrics[o.metric]) for o in self.objectives}
        result[self.resource_attr] = observation.resource
        return result

    def on_trial_result(self, trial: TrialRecord, observation: Observation) -> Decision:
        result = self._result(observation)
        self._last_result[trial.trial_id] = result
        with self._private_random():
            action = self._st.on_trial_result(self._st_trials[trial.trial_id], result)
        if observation.resource >= self.resource_max:
            return Decision.CONTINUE
        return {"CONTINUE": Decision.CONTINUE, "PAUSE": Decision.PAUSE, "STOP": Decision.STOP}[str(action)]

    def on_trial_complete(self, trial: TrialRecord) -> None:
        st_trial = self._st_trials.get(trial.trial_id)
        result = self._last_result.get(trial.trial_id)
        # MOASHA forgets a trial on complete/remove and fails on a second call
        if st_trial is not None and result is not None and st_trial.trial_id in self._st._trial_info:
            with self._private_random():
                self._st.on_trial_complete(st_trial, result)

    def on_trial_error(self, trial: TrialRecord) -> None:
        self._forget(trial)

    def on_trial_remove(self, trial: TrialRecord) -> None:
        self._forget(trial)

    def _forget(self, trial: TrialRecord) -> None:
        st_trial = self._st_trials.get(trial.trial_id)
        if st_trial is not None and st_trial.trial_id in self._st._trial_info:
            with self._private_random():
                self._st.on_trial_remove(st_trial)


class OptunaScheduler(Scheduler):
    """An Optuna multi-objective study asked for configs and told the final objectives.

    ``sampler``: ``nsga2`` (NSGA-II) or ``motpe`` (TPE, multi-objective). Every trial runs to the
    maximum resource: Optuna's pruners are single-objective, so there is no early stopping here,
    which is exactly the baseline the MO-ASHA paper compares against. A failed trial (e.g. out of
    memory on its hardware) is told as FAIL.
    """

    HARDWARE_PARAM = "hardware"

    def __init__(self, table: BenchmarkTable, hardware: Sequence[Hardware], objectives: Sequence[Objective],
                 *, seed: int = 0, sampler: str = "nsga2", population_size: int = 20):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.table = table
        self.objectives = tuple(objectives)
        self._hardware = {str(h): h for h in hardware}
        if sampler == "nsga2":
            opt_sampler = optuna.samplers.NSGAIISampler(seed=seed, population_size=population_size)
        elif sampler == "motpe":
            opt_sampler = optuna.samplers.TPESampler(seed=seed, multivariate=True)
        else:
            raise ValueError(f"sampler: must be nsga2 or motpe, got {sampler!r}")
        directions = ["minimize" if o.goal.sign > 0 else "maximize" for o in self.objectives]
        self._study = optuna.create_study(directions=directions, sampler=opt_sampler)
        self._distributions = self._make_distributions(table.space_spec())
        self._pending = _PendingAdds()
        self._asked: dict[int, Any] = {}

    def _make_distributions(self, space: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        dists: dict[str, Any] = {}
        for name, dom in space.items():
            if "values" in dom:
                dists[name] = CategoricalDistribution(list(dom["values"]))
            elif dom["type"] == "int":
                dists[name] = IntDistribution(int(dom["min"]), int(dom["max"]), log=dom.get("scale") == "log")
            else:
                dists[name] = FloatDistribution(float(dom["min"]), float(dom["max"]), log=dom.get("scale") == "log")
        if self._hardware:
            dists[self.HARDWARE_PARAM] = CategoricalDistribution(sorted(self._hardware))
        return dists

    def suggest(self) -> TrialSuggestion | None:
        trial = self._study.ask(self._distributions)
        params = dict(trial.params)
        hw_name = params.pop(self.HARDWARE_PARAM, None)
        config = self.table.config(self.table.nearest_index(params))
        self._pending.push(trial)
        return TrialSuggestion.new(config, self._hardware[hw_name] if hw_name is not None else None)

    def on_trial_add(self, trial: TrialRecord) -> None:
        self._asked[trial.trial_id] = self._pending.pop(trial)

    def on_trial_result(self, trial: TrialRecord, observation: Observation) -> Decision:
        return Decision.CONTINUE

    def on_trial_complete(self, trial: TrialRecord) -> None:
        opt_trial = self._asked.pop(trial.trial_id, None)
        if opt_trial is None:
            return
        last = trial.observations[-1].metrics
        self._study.tell(opt_trial, [float(last[o.metric]) for o in self.objectives])

    def on_trial_error(self, trial: TrialRecord) -> None:
        self._tell_failed(trial)

    def on_trial_remove(self, trial: TrialRecord) -> None:
        self._tell_failed(trial)

    def _tell_failed(self, trial: TrialRecord) -> None:
        import optuna

        opt_trial = self._asked.pop(trial.trial_id, None)
        if opt_trial is not None:
            self._study.tell(opt_trial, state=optuna.trial.TrialState.FAIL)
