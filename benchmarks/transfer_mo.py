"""MO-ASHA with and without transfer of Pareto fronts from related tasks (the MO-ASHA paper's
second ingredient), on tables made by real training (benchmarks/transfer_tables.py).

  python benchmarks/transfer_mo.py           # each of 4 datasets as the target, the other 3 as related tasks
  python benchmarks/transfer_mo.py --quick   # CI: 2 datasets, small tables, 2 seeds, short budget

Every task is the same search space (a torch MLP's hyperparameters, plus the hardware: pools
t4/a100/h100 x 1/2/4 GPUs) on a different dataset; objectives val_error, runtime and cost on
the simulated backend (the engine's hardware model prices the table's CPU seconds). Related
tasks are full earlier studies: every config of their table, each run on one hardware choice
drawn at random. Methods (same engine, same budget, same seeds):

- random:            FIFO + uniform table search
- mo-asha:           MO-ASHA stopping + uniform table search (no transfer)
- mo-asha+transfer:  MO-ASHA stopping + searcher 'transfer' with method 'mo-copula'

Printed per target as benchmarks/compare.py prints it: normalised hypervolume at fractions of
the simulated time and of the cost, and time/cost to reach random search's final hypervolume.
The paper reports that its transfer proposes better candidates than random search (a higher
hypervolume early); it gives no single factor for this part.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from transfer_tables import MO_DATASETS, mo_setup, table_for  # noqa: E402

from hwtune.api.records import TrialPhase  # noqa: E402
from hwtune.bench import runners  # noqa: E402
from hwtune.bench.runners import BenchmarkSetup, compare, default_duration, format_comparison  # noqa: E402
from hwtune.optimize.schedulers import make_scheduler  # noqa: E402
from hwtune.transfer import PastStudy, PastTrial, make_transfer_searcher  # noqa: E402
from hwtune.bench.table import RUNTIME_METRIC  # noqa: E402

POOLS, GPU_COUNTS = ("t4", "a100", "h100"), (1, 2, 4)


def related_study(table, setup: BenchmarkSetup, seed: int) -> PastStudy:
    """Every config of ``table`` run to the end on one randomly drawn hardware choice."""
    config = setup.study_config(0)
    model, choices = config.hardware_model, list(config.hardware)
    rng = np.random.default_rng(seed)
    trials = []
    for i in range(len(table)):
        hw = choices[int(rng.integers(len(choices)))]
        runtime, curve = 0.0, []
        for epoch in range(1, table.max_resource + 1):
            row = table.lookup(i, epoch, 0)
            runtime += model.runtime(row[RUNTIME_METRIC], hw)
            curve.append((epoch, {"val_error": row["val_error"], "runtime": runtime,
                                  "cost": model.cost(runtime, hw)}))
        trials.append(PastTrial(i, table.config(i), hw, TrialPhase.COMPLETED, tuple(curve)))
    return PastStudy(table.name, f"table:{table.source}", table.space_spec(), config.objectives,
                     tuple(choices), table.max_resource, tuple(trials))


def transfer_method(related: list[PastStudy], candidates: int):
    def build(setup, config, seed):
        searcher = make_transfer_searcher(
            config.space, list(config.hardware), seed, {"moCandidates": candidates},
            objectives=config.objectives, transfer_studies=related, transfer_method="mo-copula",
            candidates=setup.table.configs())
        return make_scheduler("mo-asha", searcher=searcher, objectives=config.objectives,
                              resource_min=config.fidelity.min, resource_max=config.fidelity.max,
                              reduction_factor=config.fidelity.reduction_factor, seed=seed,
                              settings=config.settings)
    return build


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--targets", default=None, help="comma-separated datasets to tune")
    ap.add_argument("--seeds", type=int, default=None)
    ap.add_argument("--configs", type=int, default=None)
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--budget-trials", type=float, default=None,
                    help="budget in full random-search trials (default 30, quick 12)")
    ap.add_argument("--workers", type=int, default=4)
    args = ap.parse_args(argv)
    datasets = MO_DATASETS[:2] if args.quick else MO_DATASETS
    targets = args.targets.split(",") if args.targets else list(datasets)
    n_configs = args.configs or (30 if args.quick else 120)
    epochs = args.epochs or (3 if args.quick else 9)
    seeds = tuple(range(args.seeds or (2 if args.quick else 5)))
    tables = {d: table_for(mo_setup(d, epochs), n_configs) for d in datasets}
    started = time.monotonic()
    for target in targets:
        table = tables[target]
        setup = BenchmarkSetup(table, objectives=("val_error", "runtime", "cost"), pools=POOLS,
                               gpu_counts=GPU_COUNTS, max_parallel=args.workers, max_duration_seconds=1.0)
        duration = default_duration(table, setup.study_config(0), args.budget_trials or (12 if args.quick else 30),
                                    args.workers)
        setup = BenchmarkSetup(table, objectives=setup.objectives, pools=POOLS, gpu_counts=GPU_COUNTS,
                               max_parallel=args.workers, max_duration_seconds=duration)
        related = [related_study(tables[d], setup, k) for k, d in enumerate(datasets) if d != target]
        runners.METHODS["mo-asha+transfer"] = transfer_method(related, 64 if args.quick else 128)
        print(f"\n=== target {target}: related {', '.join(r.name for r in related)}; "
              f"{len(table)} configs x {table.max_resource} epochs; {len(seeds)} seeds", flush=True)
        cmp = compare(setup, ("random", "mo-asha", "mo-asha+transfer"), seeds)
        print(format_comparison(cmp), flush=True)
    print(f"\n({time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
