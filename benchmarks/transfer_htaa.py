"""HT-AA's protocol (Hyperparameter Transfer Across Developer Adjustments) on tables made by
real training (benchmarks/transfer_tables.py): how much faster does a new study reach a given
quality when it reuses the study of the previous version of the training setup?

  python benchmarks/transfer_htaa.py            # 5 pairs, old studies of 10/20/40 evaluations, 10 seeds
  python benchmarks/transfer_htaa.py --quick    # CI: 2 sklearn pairs, 40-config tables, budget 10, 3 seeds

For every pair, old-study budget B and seed: the old study is plain TPE with B evaluations on the
old setup; the new study runs each method on the new setup (TPE without transfer, and the five
transfer methods, all on the same TPE) for up to ``--horizon`` x B evaluations. The reference
is the no-transfer TPE's best val_error after B evaluations (mean over seeds); a run's cost is the
number of evaluations until its best reaches the reference (runs that never do count the
horizon); speedup = mean evaluations of TPE / mean evaluations of the method; the summary is the
geometric mean over pairs. Paper (HT-AA, ICLR 2021, 8 benchmarks): 1.2-3.6x for the best
baseline (best-first + transfer TPE), depending on the budget.

Evaluations are table lookups (single fidelity), searchers choose among the table's configs.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from transfer_tables import PAIRS, QUICK_PAIRS, table_for  # noqa: E402

from hwtune.api.records import Objective, Observation, TrialRecord  # noqa: E402
from hwtune.optimize.searchers import make_searcher  # noqa: E402
from hwtune.space import SearchSpace  # noqa: E402
from hwtune.transfer import from_table, make_transfer_searcher  # noqa: E402

ERR = Objective("val_error")
METHODS = ("tpe", "only-new", "drop-unimportant", "best-first", "transfer-tpe", "best-first-tpe")
PAPER = "1.2-3.6x (best baseline)"


def run(searcher, table, n: int) -> tuple[list[int], list[float]]:
    """``n`` sequential evaluations; the chosen config indices and the best-so-far curve."""
    chosen, best, cur = [], [], math.inf
    for tid in range(n):
        s = searcher.suggest()
        if s is None:
            break
        config, hw = s
        value = table.lookup(config, table.max_resource)["val_error"]
        rec = TrialRecord(tid, config, hw)
        searcher.on_trial_add(rec)
        searcher.on_trial_result(rec, Observation(tid, table.max_resource, {"val_error": value}))
        searcher.on_trial_complete(rec)
        chosen.append(table.index_of(config))
        cur = min(cur, value)
        best.append(cur)
    return chosen, best


def new_searcher(method, table, old, seed):
    space = SearchSpace.from_spec(table.space_spec())
    if method == "tpe":
        return make_searcher("tpe", space, None, seed, candidates=table.configs(), objectives=(ERR,))
    return make_transfer_searcher(space, None, seed, {}, objectives=(ERR,), transfer_studies=[old],
                                  transfer_method=method, candidates=table.configs())


def evals_to(curve: list[float], target: float, horizon: int) -> tuple[int, bool]:
    for i, v in enumerate(curve):
        if v <= target + 1e-12:
            return i + 1, True
    return horizon, False


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--pairs", default=None, help="comma-separated pair names")
    ap.add_argument("--budgets", default=None, help="old-study evaluations, e.g. 10,20,40")
    ap.add_argument("--seeds", type=int, default=None)
    ap.add_argument("--configs", type=int, default=None, help="configs per table")
    ap.add_argument("--horizon", type=float, default=3.0, help="new-study evaluations, x budget")
    ap.add_argument("--json", type=Path, default=None, help="write the numbers here")
    args = ap.parse_args(argv)
    pairs = (args.pairs.split(",") if args.pairs else list(QUICK_PAIRS if args.quick else PAIRS))
    budgets = [int(b) for b in (args.budgets or ("10" if args.quick else "10,20,40")).split(",")]
    seeds = args.seeds or (3 if args.quick else 10)
    n_configs = args.configs or (40 if args.quick else 150)
    started = time.monotonic()
    results: dict = {}
    for pair in pairs:
        old_setup, new_setup, kind = PAIRS[pair]
        old_t, new_t = table_for(old_setup, n_configs), table_for(new_setup, n_configs)
        results[pair] = {"adjustment": kind, "budgets": {}}
        for budget in budgets:
            horizon = min(len(new_t), int(round(args.horizon * budget)))
            curves: dict[str, list[list[float]]] = {m: [] for m in METHODS}
            for seed in range(seeds):
                old_tpe = make_searcher("tpe", SearchSpace.from_spec(old_t.space_spec()), None, seed,
                                        candidates=old_t.configs(), objectives=(ERR,))
                chosen, _ = run(old_tpe, old_t, budget)
                old = from_table(old_t, config_indices=chosen, objectives=(ERR,),
                                 name=f"{old_setup.name}-{budget}")
                for m in METHODS:
                    curves[m].append(run(new_searcher(m, new_t, old, 1000 + seed), new_t, horizon)[1])
            target = float(np.mean([c[budget - 1] for c in curves["tpe"]]))
            row = {}
            for m in METHODS:
                got = [evals_to(c, target, horizon) for c in curves[m]]
                row[m] = {"mean_evals": float(np.mean([g[0] for g in got])),
                          "reached": sum(g[1] for g in got),
                          "first_value": float(np.mean([c[0] for c in curves[m]]))}
            for m in METHODS:
                row[m]["speedup"] = row["tpe"]["mean_evals"] / row[m]["mean_evals"]
            results[pair]["budgets"][budget] = {"target": target, "horizon": horizon, "methods": row}
    elapsed = time.monotonic() - started

    print(f"HT-AA protocol: {len(pairs)} pairs, {seeds} seeds, {n_configs} configs per table, "
          f"horizon {args.horizon:g} x budget ({elapsed:.0f} s)")
    for pair in pairs:
        print(f"\n{pair} ({results[pair]['adjustment']})")
        print(f"  {'budget':>6} {'target':>7} " + " ".join(f"{m:>17}" for m in METHODS))
        for b, r in results[pair]["budgets"].items():
            cells = [f"{r['methods'][m]['mean_evals']:5.1f} ({r['methods'][m]['reached']}/{seeds}) "
                     f"{r['methods'][m]['speedup']:4.2f}x" for m in METHODS]
            print(f"  {b:>6} {r['target']:7.4f} " + " ".join(f"{c:>17}" for c in cells))
    print("\n  cells: mean evaluations to reach the target (runs that reached it) speedup vs tpe")
    print(f"\nGeometric mean speedup over {len(pairs)} pairs (paper: {PAPER}):")
    print(f"  {'budget':>6} " + " ".join(f"{m:>16}" for m in METHODS[1:]))
    summary = {}
    for b in budgets:
        vals = {m: float(np.exp(np.mean([np.log(results[p]["budgets"][b]["methods"][m]["speedup"])
                                         for p in pairs]))) for m in METHODS[1:]}
        summary[b] = vals
        print(f"  {b:>6} " + " ".join(f"{vals[m]:>15.2f}x" for m in METHODS[1:]))
    if args.json:
        args.json.write_text(json.dumps({"results": results, "summary": summary}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
