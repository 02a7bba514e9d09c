"""A real study for the metrics tests: the simulated backend driving MO-ASHA (promotion, so
pauses and resumes happen) on a synthetic table, with a cost budget."""

from __future__ import annotations

from typing import Any

from hwtune.backends.simulated import SimulatedBackend, synthetic_table
from hwtune.engine import Study, StudyConfig, Tuner
from hwtune.observe import StudyMetrics

SPEC: dict[str, Any] = {
    "objectives": [{"metric": "val_error"}, {"metric": "runtime"}, {"metric": "cost"}],
    "parameters": {
        "lr": {"type": "float", "values": [round(0.0001 * 1.5 ** i, 8) for i in range(20)]},
        "width": {"type": "int", "values": list(range(8, 168, 8))},
        "opt": {"type": "categorical", "values": ["sgd", "adam", "lamb"]},
    },
    "hardware": {"pools": ["a100", "h100"], "gpuCounts": [1, 2]},
    "fidelity": {"resource": "epoch", "min": 1, "max": 9, "reductionFactor": 3},
    "algorithm": {"scheduler": "mo-asha-promotion", "searcher": "random", "seed": 5},
    "budget": {"maxTrials": 60, "maxParallelTrials": 4},
}


def run_study(trials: int = 60, *, metrics: StudyMetrics | None = None, namespace: str = "ml",
              name: str = "demo", max_cost_usd: float | None = 5000.0,
              steps: int | None = None) -> tuple[StudyMetrics, Study, Tuner, Any]:
    """Run (``steps`` tuner steps, or to the end) and return the metrics, study, tuner, observer."""
    spec = {**SPEC, "budget": {"maxTrials": trials, "maxParallelTrials": 4}}
    if max_cost_usd is not None:
        spec["budget"]["maxCostUSD"] = max_cost_usd
    config = StudyConfig.from_spec(spec)
    table = synthetic_table(config.space, 1200, 9, seed=1, seeds=(0,))
    backend = SimulatedBackend(table, config.hardware_model, n_workers=4, seed=0)
    study = Study(config, clock=backend.clock)
    metrics = metrics if metrics is not None else StudyMetrics()
    observer = metrics.watch(study, namespace, name, lock=backend.lock)
    tuner = Tuner(study, backend)
    if steps is None:
        with observer.reconcile():
            tuner.run()
    else:
        for _ in range(steps):
            with observer.reconcile():
                if tuner.step() is not None:
                    break
    return metrics, study, tuner, observer
