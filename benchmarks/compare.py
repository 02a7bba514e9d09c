"""Side-by-side benchmark: random search, ASHA, MO-ASHA (hwtune), Syne Tune's MOASHA and Optuna
NSGA-II on one benchmark table, with the same hardware choices, workers, budget and seeds.

  python benchmarks/compare.py                       # digits table, val_error/runtime/cost, 5 seeds
  python benchmarks/compare.py --quick               # CI: the small table, 3 seeds, short budget
  python benchmarks/compare.py --objectives val_error --pools t4 --gpu-counts 1   # quality only

Prints, per method, mean ± std over seeds: final hypervolume, hypervolume at a few points of
simulated time and of spent cost, the time and cost to reach random search's final hypervolume
(speedup vs random), trials, epochs trained, spend and decision overhead; writes
``hv.png`` (hypervolume vs time and vs cost) and ``results.json`` into ``--out``. See
docs/benchmark-table.md ("How benchmarks measure") for the normalisation.

The budget is simulated wall-clock: by default enough for random search to finish about
``--budget-trials`` full trials with ``--workers`` workers (``--max-duration`` sets seconds).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

from hwtune.bench.runners import (
    DEFAULT_METHODS,
    METHODS,
    BenchmarkSetup,
    compare,
    default_duration,
    format_comparison,
    plot_comparison,
    to_json,
)
from hwtune.bench.table import default_table_path, load_table

REPO = Path(__file__).resolve().parent.parent
# A copy of the quick table small enough for git, so CI needs no training.
BUNDLED_QUICK_TABLE = REPO / "benchmarks" / "tables" / "digits-quick.jsonl"


def _csv(kind):
    def parse(text: str):
        try:
            return tuple(kind(x) for x in text.split(",") if x.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list of {kind.__name__}, got {text!r}")
    return parse


def resolve_table(name_or_path: str | None, quick: bool) -> Path:
    if name_or_path and (os.sep in name_or_path or name_or_path.endswith(".jsonl")):
        return Path(name_or_path)
    name = name_or_path or ("digits-quick" if quick else "digits")
    path = default_table_path(name)
    if not path.exists() and name == "digits-quick" and BUNDLED_QUICK_TABLE.exists():
        return BUNDLED_QUICK_TABLE
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="CI size: quick table, 3 seeds, short budget")
    p.add_argument("--table", help="table name in the cache (default digits / digits-quick) or a .jsonl path")
    p.add_argument("--allow-incomplete", action="store_true", help="use a table still being generated")
    p.add_argument("--methods", type=_csv(str), default=DEFAULT_METHODS,
                   help=f"comma-separated, from: {', '.join(METHODS)} (default: {','.join(DEFAULT_METHODS)})")
    p.add_argument("--objectives", type=_csv(str), default=("val_error", "runtime", "cost"))
    p.add_argument("--pools", type=_csv(str), default=("t4", "a100", "h100"))
    p.add_argument("--gpu-counts", type=_csv(int), default=(1, 2, 4, 8))
    p.add_argument("--workers", type=int, default=4, help="parallel trials (default 4)")
    p.add_argument("--seeds", type=int, help="number of seeds (default 5, quick 3)")
    p.add_argument("--budget-trials", type=float,
                   help="budget in full random-search trials per run (default 30, quick 20)")
    p.add_argument("--max-duration", type=float, help="budget in simulated seconds (overrides --budget-trials)")
    p.add_argument("--max-trials", type=int, help="also cap the number of trials")
    p.add_argument("--reduction-factor", type=int, default=3)
    p.add_argument("--out", type=Path, default=Path("out/bench"),
                   help="directory for hv.png and results.json (default out/bench, git-ignored)")
    args = p.parse_args(argv)

    table_path = resolve_table(args.table, args.quick)
    table = load_table(table_path, allow_incomplete=args.allow_incomplete)
    seeds = tuple(range(args.seeds or (3 if args.quick else 5)))
    setup = BenchmarkSetup(table, objectives=args.objectives, pools=args.pools, gpu_counts=args.gpu_counts,
                           max_parallel=args.workers, max_duration_seconds=1.0, max_trials=args.max_trials,
                           reduction_factor=args.reduction_factor)
    duration = args.max_duration
    if duration is None:
        trials = args.budget_trials or (20 if args.quick else 30)
        duration = default_duration(table, setup.study_config(0), trials, args.workers)
    setup = dataclasses.replace(setup, max_duration_seconds=duration)
    print(f"table {table.name} from {table_path}; {len(seeds)} seeds; methods {', '.join(args.methods)}",
          file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    cmp = compare(setup, args.methods, seeds, progress=lambda msg: print("  " + msg, file=sys.stderr, flush=True))
    elapsed = time.perf_counter() - t0
    print(format_comparison(cmp))
    args.out.mkdir(parents=True, exist_ok=True)
    png = plot_comparison(cmp, str(args.out / "hv.png"))
    result = to_json(cmp)
    result["table_path"] = str(table_path)
    result["wallSeconds"] = elapsed
    (args.out / "results.json").write_text(json.dumps(result, indent=1, default=float))
    print(f"\nwrote {png} and {args.out / 'results.json'} in {elapsed:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
