"""The one list of algorithm names: every searcher and scheduler a study may name.

This list is the single source of the ``algorithm.searcher`` / ``algorithm.scheduler`` enums of
the TuningStudy CRD (``hwtune.api.crd`` builds its enums from it, ``hack/gen-crds.sh`` writes
them into the schema), so ``hwtune validate``, the API server and the factories agree on which
names exist. A name belongs here only once something can run it: every entry names the module
whose import registers its factory (``register_searcher`` in ``hwtune.optimize.searchers``,
``register_scheduler`` in ``hwtune.optimize.schedulers``); ``tests/optimize/
test_algorithm_registry.py`` builds every listed name.

Adding an algorithm (e.g. the surrogate's ``dyhpo``): one line below, plus a
``register_searcher("dyhpo", factory)`` (or ``register_scheduler``) call in the module given as
``provider``; then ``hack/gen-crds.sh``. Pure data: no imports of algorithm code, so the API
models stay light.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "DEFAULT_TRANSFER_METHOD",
    "TRANSFER_METHODS",
    "Algorithm",
    "SCHEDULERS",
    "SEARCHERS",
    "scheduler",
    "scheduler_names",
    "searcher",
    "searcher_names",
]


@dataclass(frozen=True)
class Algorithm:
    """One name a study may write, and what the name requires of the study."""

    name: str
    provider: str
    """Module whose import registers the factory for ``name``."""
    summary: str
    needs_fidelity: bool = False
    """The study must declare ``fidelity`` (the algorithm decides between resource levels)."""
    needs_transfer: bool = False
    """The study must declare ``transfer.fromStudies``."""
    uses_transfer: bool = False
    """Learns from ``transfer.fromStudies`` when the study declares it (optional)."""


_SEARCH = "hwtune.optimize.searchers"
_SCHED = "hwtune.optimize.schedulers"
_SURROGATE = "hwtune.surrogate"  # needs the torch extra (in process) or surrogateUrl
_OPTUNA = "hwtune.optimize.searchers.optuna_samplers"

SEARCHERS: tuple[Algorithm, ...] = (
    Algorithm("random", _SEARCH, "uniform random configurations (hardware included)"),
    Algorithm("grid", _SEARCH, "a grid over the space (gridPoints per range, gridShuffle)"),
    Algorithm("tpe", _SEARCH, "TPE over (config, hardware), on the first objective (tpeStartup, "
              "tpeGamma, tpeCandidates)"),
    Algorithm("transfer", "hwtune.transfer", "warm start from transfer.fromStudies, by "
              "transfer.method (HT-AA baselines, mo-copula)", needs_transfer=True),
    # With transfer.fromStudies the surrogates are meta-trained on the earlier studies' curves
    # (and checkpoints) too (hwtune.surrogate.meta).
    Algorithm("dyhpo", _SURROGATE, "DyHPO deep-kernel GP over hyperparameters, budget and "
              "learning curve (new configs by EI; the surrogate of scheduler dyhpo)",
              uses_transfer=True),
    Algorithm("fms", _SURROGATE, "FMS: DyHPO plus a graph metanetwork over checkpoint weights",
              uses_transfer=True),
    Algorithm("fms-flat", _SURROGATE, "FMS ablation: flattened weights instead of the GMN",
              uses_transfer=True),
    Algorithm("fms-nocurve", _SURROGATE, "FMS ablation: no learning-curve CNN",
              uses_transfer=True),
    # Optuna's samplers through ask-and-tell (Katib's tpe, multivariate-tpe, cmaes,
    # bayesianoptimization, sobol); the optuna extra.
    Algorithm("optuna-tpe", _OPTUNA, "Optuna TPE (MOTPE with several objectives)"),
    Algorithm("optuna-multivariate-tpe", _OPTUNA, "Optuna multivariate TPE"),
    Algorithm("optuna-cmaes", _OPTUNA, "Optuna CMA-ES (one objective)"),
    Algorithm("optuna-gp", _OPTUNA, "Optuna Gaussian-process BO (imports torch)"),
    Algorithm("optuna-sobol", _OPTUNA, "Optuna quasi-Monte Carlo, scrambled Sobol"),
    Algorithm("optuna-nsga2", _OPTUNA, "Optuna NSGA-II (several objectives)"),
)

# How searcher 'transfer' uses the earlier studies (``transfer.method``): HT-AA's baselines,
# or the MO-ASHA paper's transfer of Pareto fronts from related tasks (docs/transfer.md).
TRANSFER_METHODS: tuple[str, ...] = ("only-new", "drop-unimportant", "best-first", "transfer-tpe",
                                     "best-first-tpe", "mo-copula")
DEFAULT_TRANSFER_METHOD = "best-first-tpe"

SCHEDULERS: tuple[Algorithm, ...] = (
    Algorithm("fifo", _SCHED, "every trial runs to the maximum resource"),
    Algorithm("random", _SCHED, "same as fifo (random search with the random searcher)"),
    Algorithm("asha", _SCHED, "ASHA, stopping variant", needs_fidelity=True),
    Algorithm("asha-promotion", _SCHED, "ASHA, promotion variant (pause and resume)",
              needs_fidelity=True),
    Algorithm("hyperband", _SCHED, "several ASHA brackets", needs_fidelity=True),
    Algorithm("mo-asha", _SCHED, "MO-ASHA: non-dominated sorting at each rung, stopping",
              needs_fidelity=True),
    Algorithm("mo-asha-promotion", _SCHED, "MO-ASHA, promotion variant", needs_fidelity=True),
    Algorithm("dyhpo", _SURROGATE, "freeze-thaw: one step at a time, the next step chosen by "
              "multi-fidelity EI of the searcher's surrogate (dyhpo, fms, ...)",
              needs_fidelity=True),
)


def _check_unique(items: tuple[Algorithm, ...], what: str) -> None:
    names = [a.name for a in items]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate {what} name in hwtune.api.algorithms: {names}")


_check_unique(SEARCHERS, "searcher")
_check_unique(SCHEDULERS, "scheduler")


def searcher_names() -> tuple[str, ...]:
    return tuple(a.name for a in SEARCHERS)


def scheduler_names() -> tuple[str, ...]:
    return tuple(a.name for a in SCHEDULERS)


def _find(items: tuple[Algorithm, ...], name: str, what: str) -> Algorithm:
    for a in items:
        if a.name == name:
            return a
    raise ValueError(f"unknown {what} {name!r} (one of: {', '.join(a.name for a in items)})")


def searcher(name: str) -> Algorithm:
    """The entry of searcher ``name``; ValueError listing the names that exist otherwise."""
    return _find(SEARCHERS, name, "searcher")


def scheduler(name: str) -> Algorithm:
    """The entry of scheduler ``name``; ValueError listing the names that exist otherwise."""
    return _find(SCHEDULERS, name, "scheduler")
