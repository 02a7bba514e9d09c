"""What the benchmark output claims is what was measured: Syne Tune samples like hwtune's
searchers (or says it does not), the comparison prints medians and how many seeds reached the
target beside the ratio of means, and Syne Tune is declared with the benchmark dependencies."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from hwtune.api.records import Hardware, Objective
from hwtune.bench.adapters import SyneTuneMOASHA
from hwtune.bench.runners import BenchmarkSetup, compare, format_comparison
from hwtune.bench.table import load_table

REPO = Path(__file__).resolve().parents[2]
QUICK_TABLE = REPO / "benchmarks" / "tables" / "digits-quick.jsonl"


@pytest.fixture(scope="module")
def table():
    return load_table(QUICK_TABLE)


def _drain(scheduler, n):
    pairs = []
    for _ in range(n):
        suggestion = scheduler.suggest()
        if suggestion is None:
            break
        pairs.append((tuple(sorted(suggestion.config.items())), suggestion.hardware))
    return pairs


@pytest.mark.parametrize("without_replacement", [True, False])
def test_syne_tune_sampling_is_stated_and_matched(table, without_replacement) -> None:
    hardware = [Hardware("t4", 1), Hardware("a100", 1)]
    scheduler = SyneTuneMOASHA(table, hardware, [Objective("val_error")], resource_max=table.max_resource,
                               seed=1, without_replacement=without_replacement)
    n_pairs = len(table) * len(hardware)
    pairs = _drain(scheduler, n_pairs)
    if without_replacement:
        # every pair once, like hwtune's TableSearcher, then nothing
        assert len(pairs) == n_pairs == len(set(pairs)) and scheduler.suggest() is None
        assert scheduler.repeats > 0  # Syne Tune did draw repeats: they were redrawn
    else:
        # as released: repeated pairs run again, and the adapter counts them
        assert len(pairs) == n_pairs and len(set(pairs)) < n_pairs
        assert scheduler.repeats == n_pairs - len(set(pairs))


def test_comparison_prints_median_and_seeds_reached(table) -> None:
    setup = BenchmarkSetup(table, max_duration_seconds=0.15, max_parallel=4)
    cmp = compare(setup, ("random", "mo-asha"), seeds=(0, 1, 2))
    text = format_comparison(cmp)
    assert "median" in text and "seeds reached" in text and "of means" in text
    stats = cmp.stats["mo-asha"].time_speedup
    row = next(line for line in text.splitlines()
               if line.startswith("mo-asha") and f"{stats.finite}/{stats.total}" in line)
    if stats.finite:
        assert f"{stats.median:.3g}" in row
    assert cmp.stats["random"].time_speedup.median == pytest.approx(1.0)


def test_syne_tune_is_declared_with_the_bench_dependencies() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    pins = [d for d in extras["bench"] if d.startswith("syne-tune==")]
    assert len(pins) == 1
    # [all] leaves it out: hack/setup-venv.sh installs exactly that pin with --no-deps
    assert not any("syne" in d for d in extras["all"])
    script = (REPO / "hack" / "setup-venv.sh").read_text()
    assert "--no-deps" in script and "syne-tune==" in script
    found = re.findall(r"syne-tune==[0-9.]+", (REPO / "pyproject.toml").read_text())
    assert found[0] == pins[0]
