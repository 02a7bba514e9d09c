"""Benchmarks: recorded tables of real training, the runners that replay them side by side, and
the metrics they are judged by.

- ``hwtune.bench.table``: the table format (docs/benchmark-table.md), loader, writer, validation.
- ``hwtune.bench.synthetic``: a closed-form table for tests (never for quality claims).
- ``hwtune.bench.metrics``: normalised hypervolume over time and cost, time/cost to a target.
- ``hwtune.bench.adapters``: Syne Tune MOASHA and Optuna behind hwtune's Scheduler contract.
- ``hwtune.bench.runners``: one method or a whole comparison on the simulated backend.

The command-line entry points are benchmarks/make_table.py and benchmarks/compare.py.
"""
