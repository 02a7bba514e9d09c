"""The FMS benchmark's CI-sized configuration: builds the model hub and the fine-tuning table by
real training (into a temporary cache), runs every method and prints the tables."""

from __future__ import annotations

import json
import re

from hwtune.bench.table import load_table
from hwtune.surrogate import bench


def test_quick_benchmark_runs_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setenv("HWTUNE_CACHE_DIR", str(tmp_path))
    out = tmp_path / "numbers.json"
    text = bench.run_benchmark(quick=True, seeds=1, json_path=out, log=lambda m: None)
    # The table is a valid benchmark table, with a checkpoint file per config and epoch.
    path = tmp_path / "fms" / bench.QUICK.name / "table.jsonl"
    table = load_table(path)
    assert len(table.configs()) == len(bench.QUICK.grid())
    ckpts = bench.load_checkpoints(path)
    assert all(len(epochs) == bench.QUICK.epochs for _, epochs in ckpts.values())
    assert all(__import__("os").path.exists(p) for _, epochs in ckpts.values() for p in epochs)
    # Every surrogate produced a Kendall tau at both budgets; every method a regret row.
    numbers = json.loads(out.read_text())
    taus = [(r["method"], k, v) for r in numbers["runs"] for k, v in r["tau_at"].items()]
    assert {m for m, _, _ in taus} == {"fms", "dyhpo", "gp"}
    assert all(-1.0 <= v <= 1.0 for _, _, v in taus)
    for name in ("FMS-GMN", "DyHPO", "GP", "random", "ASHA"):
        assert re.search(rf"^\s+{name}\s", text, re.M), name
    assert "0.88 / 0.92" in text and "Suggestion latency" in text
    assert re.search(rf"^  n started: .* of {len(bench.QUICK.grid())}$", text, re.M)
    assert re.search(r"^True final val error over the configs: min \d", text, re.M)
    assert re.search(r"^\s+FMS-GMN .* \d of 1$", text, re.M)  # seeds won
    assert {"all", "head"} == {c["finetune"] for c in table.configs()}
    assert table.header.parameters["lr"] == {"type": "float", "values": list(bench.QUICK.lrs)}
    for r in numbers["runs"]:
        if r["method"] in ("fms", "dyhpo", "gp"):
            assert set(r["tau_seen_at"]) <= set(r["tau_at"]) and r["seen_at"]
    assert re.search(r"^\s+DyHPO \(random scal.\)\s+\d", text, re.M)  # multi-objective section
    assert set(numbers["multiObjective"]) == {"random", "asha", "dyhpo"}
    # A second run reuses the cached table and the cached runs instead of running them again.
    mtime = path.stat().st_mtime
    runs = bench._runs_path(bench.QUICK)
    lines = runs.read_text().splitlines()
    again = bench.run_benchmark(quick=True, seeds=1, latency=False, log=lambda m: None)
    assert path.stat().st_mtime == mtime
    assert runs.read_text().splitlines() == lines
    assert again.split("\n\nRegret")[0] == text.split("\n\nRegret")[0]


def test_the_command_refuses_an_unknown_method_clearly():
    from typer.testing import CliRunner

    from hwtune.cli.main import app

    result = CliRunner().invoke(app, ["surrogate", "bench", "--quick", "--method", "bohb"])
    assert result.exit_code != 0
    assert "--method: unknown method 'bohb'" in result.output
    assert "Traceback" not in result.output


def test_quick_benchmark_covers_the_transfer_setting(tmp_path, monkeypatch):
    monkeypatch.setenv("HWTUNE_CACHE_DIR", str(tmp_path))
    out = tmp_path / "numbers.json"
    text = bench.run_benchmark(quick=True, seeds=1, latency=False, multi_objective=False,
                               transfer=True, json_path=out, log=lambda m: None,
                               only=["dyhpo", "fms+t", "dyhpo+t", "gp+t"])
    # The earlier study is a second table of the same hub, by real training, with checkpoints.
    source_cfg = bench.TRANSFER_SOURCES[bench.QUICK.name]
    source_path = tmp_path / "fms" / source_cfg.name / "table.jsonl"
    source = load_table(source_path)
    assert len(source.configs()) == len(bench.QUICK.grid())
    initial, epochs = bench.load_checkpoints(source_path)[0]
    assert "fms-digits2-quick/hub/" in initial and len(epochs) == bench.QUICK.epochs
    numbers = json.loads(out.read_text())
    runs = {r["method"]: r for r in numbers["transferRuns"]}
    assert set(runs) == {"fms+t", "dyhpo+t", "gp+t"}
    for r in runs.values():
        assert set(r["tau_at"]) == {str(c) for c in bench.QUICK.tau_at} or \
            set(r["tau_at"]) == set(bench.QUICK.tau_at)
        assert all(-1.0 <= v <= 1.0 for v in r["tau_at"].values())
        assert r["fallbacks"] == 0  # the model answered every suggestion
    section = text.split("Transfer (the FMS paper's transfer setting)")[1]
    assert re.search(r"Copying the earlier study's ranking .* gives Kendall tau -?\d\.\d\d", section)
    for name in ("FMS-GMN \\+t", "DyHPO \\+t", "GP \\+t"):
        assert re.search(rf"^\s+{name}\s+-?\d", section, re.M), name
    # DyHPO's plain run of the same seed is the 'without' column.
    assert re.search(r"^\s+DyHPO \+t .*\s-?\d\.\d\d / -?\d\.\d\d\s+[01]/[01]\s+0\.74 / 0\.77",
                     section, re.M)
