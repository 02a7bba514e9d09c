"""How fast the engine runs on the simulated backend: trials and reports per second of real time.

Runs whole studies (Study + scheduler + Tuner + SimulatedBackend) on a synthetic table and prints
one line per scheduler. The table is synthetic (``hwtune.backends.simulated.synthetic_table``):
this measures the engine's overhead, not an algorithm's quality (benchmarks/compare.py does that).

    python benchmarks/bench_simulator.py                       # fifo and asha, 5000 trials each
    python benchmarks/bench_simulator.py --schedulers fifo asha mo-asha --trials 2000 --epochs 27
"""

from __future__ import annotations

import argparse
import time

from hwtune.backends.simulated import SimulatedBackend, synthetic_table
from hwtune.engine import Study, StudyConfig, Tuner


def study_spec(scheduler: str, trials: int, workers: int, epochs: int, seed: int) -> dict:
    return {
        "objectives": [{"metric": "val_error"}, {"metric": "runtime"}, {"metric": "cost"}],
        "parameters": {
            "lr": {"type": "float", "min": 1e-4, "max": 1e-1, "scale": "log"},
            "batch_size": {"type": "int", "values": [32, 64, 128, 256]},
            "width": {"type": "int", "min": 16, "max": 1024, "scale": "log"},
            "optimizer": {"type": "categorical", "values": ["sgd", "adam"]},
        },
        "hardware": {"pools": ["t4", "a100", "h100"], "gpuCounts": [1, 2, 4]},
        "fidelity": {"resource": "epoch", "min": 1, "max": epochs, "reductionFactor": 3},
        "algorithm": {"scheduler": scheduler, "seed": seed},
        "budget": {"maxTrials": trials, "maxParallelTrials": workers},
    }


def run_one(scheduler: str, args: argparse.Namespace) -> dict:
    config = StudyConfig.from_spec(study_spec(scheduler, args.trials, args.workers, args.epochs, args.seed))
    table = synthetic_table(config.space, args.configs, args.epochs, seed=args.seed)
    backend = SimulatedBackend(table, config.hardware_model, n_workers=args.workers, seed=args.seed)
    study = Study(config, config.make_scheduler(config.make_searcher(candidates=table.configs())),
                  clock=backend.clock)
    started = time.perf_counter()
    result = Tuner(study, backend).run()
    wall = time.perf_counter() - started
    return {
        "scheduler": scheduler,
        "trials": len(result.trials),
        "reports": study.reports,
        "wall_s": wall,
        "trials_per_s": len(result.trials) / wall,
        "reports_per_s": study.reports / wall,
        "us_per_report": 1e6 * wall / max(1, study.reports),
        "simulated_h": backend.clock.now() / 3600,
        "cost_usd": result.spend.cost_usd,
        "front": len(result.front),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--schedulers", nargs="+", default=["fifo", "asha"])
    parser.add_argument("--trials", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=9)
    parser.add_argument("--configs", type=int, default=1000, help="configs in the synthetic table")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(f"{args.trials} trials, {args.workers} workers, {args.epochs} epochs, table of {args.configs} configs")
    header = f"{'scheduler':<20}{'trials':>8}{'reports':>9}{'wall s':>8}{'trials/s':>10}{'reports/s':>11}" \
             f"{'us/report':>11}{'sim h':>8}{'cost $':>9}{'front':>7}"
    print(header)
    for scheduler in args.schedulers:
        r = run_one(scheduler, args)
        print(f"{r['scheduler']:<20}{r['trials']:>8}{r['reports']:>9}{r['wall_s']:>8.2f}{r['trials_per_s']:>10.0f}"
              f"{r['reports_per_s']:>11.0f}{r['us_per_report']:>11.1f}{r['simulated_h']:>8.1f}"
              f"{r['cost_usd']:>9.1f}{r['front']:>7}")


if __name__ == "__main__":
    main()
