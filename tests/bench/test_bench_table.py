"""The benchmark table format: round trip, lookups, and clear errors for broken files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hwtune.bench.synthetic import synthetic_table
from hwtune.bench.table import (
    BenchmarkTable,
    TableFormatError,
    TableHeader,
    TableRun,
    TableWriter,
    default_table_path,
    load_table,
)


@pytest.fixture()
def table() -> BenchmarkTable:
    return synthetic_table(n_configs=6, seeds=(0, 1), epochs=4)


@pytest.fixture()
def table_file(tmp_path: Path, table: BenchmarkTable) -> Path:
    return TableWriter.write_all(tmp_path / "t.jsonl", table)


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _rewrite(path: Path, lines: list[dict]) -> None:
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))


def test_round_trip_keeps_every_value(table: BenchmarkTable, table_file: Path) -> None:
    loaded = load_table(table_file)
    assert len(loaded) == len(table) == 6
    assert loaded.configs() == table.configs()
    assert loaded.seeds == (0, 1) and loaded.max_resource == 4
    for i in range(len(table)):
        for seed in table.seeds:
            for epoch in (1, 4):
                a, b = table.lookup(i, epoch, seed), loaded.lookup(i, epoch, seed)
                assert a.keys() == b.keys()
                for k in a:
                    assert b[k] == pytest.approx(a[k], rel=1e-6)


def test_lookup_by_config_index_and_mapping_agree(table: BenchmarkTable) -> None:
    cfg = table.configs()[3]
    assert table.lookup(cfg, 2, 1) == table.lookup(3, 2, 1)
    got = table.lookup(3, 2, 1)
    assert {"val_error", "epoch_runtime", "memory_gib"} <= got.keys()
    assert got["val_error"] == table.curve(3, "val_error", 1)[1]


def test_unknown_seed_replays_a_recorded_one(table: BenchmarkTable) -> None:
    assert table.lookup(0, 3, seed=5) == table.lookup(0, 3, seed=table.seeds[5 % 2])


def test_lookup_rejects_bad_epoch_and_unknown_config(table: BenchmarkTable) -> None:
    with pytest.raises(ValueError, match=r"epoch must be in 1\.\.4"):
        table.lookup(0, 0, 0)
    with pytest.raises(ValueError, match="epoch"):
        table.lookup(0, 5, 0)
    with pytest.raises(KeyError, match="nearest_index"):
        table.lookup({**table.configs()[0], "lr": 0.123456789}, 1, 0)
    with pytest.raises(IndexError):
        table.lookup(99, 1, 0)


def test_nearest_index_finds_the_closest_config(table: BenchmarkTable) -> None:
    cfg = dict(table.configs()[2])
    assert table.nearest_index(cfg) == 2
    cfg["lr"] = cfg["lr"] * 1.0001  # not in the table, but closest to config 2
    assert table.nearest_index(cfg) == 2


def test_space_spec_is_study_shaped(table: BenchmarkTable) -> None:
    spec = table.space_spec()
    assert spec["lr"] == {"type": "float", "min": 1e-4, "max": 1.0, "scale": "log"}
    assert spec["optimizer"]["type"] == "categorical"
    assert table.fidelity_spec(3) == {"resource": "epoch", "min": 1, "max": 4, "reductionFactor": 3}


def test_default_path_honours_cache_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HWTUNE_CACHE_DIR", str(tmp_path))
    assert default_table_path("digits") == tmp_path / "tables" / "digits.jsonl"


# -- errors name the line and the field --------------------------------------------------------


def test_missing_file_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="make_table.py"):
        load_table(tmp_path / "nope.jsonl")


def test_wrong_format_name(table_file: Path) -> None:
    lines = _lines(table_file)
    lines[0]["format"] = "something-else"
    _rewrite(table_file, lines)
    with pytest.raises(TableFormatError, match=r":1 header\.format: expected 'hwtune-table'"):
        load_table(table_file)


def test_header_needs_epoch_runtime(table_file: Path) -> None:
    lines = _lines(table_file)
    del lines[0]["metrics"]["epoch_runtime"]
    _rewrite(table_file, lines)
    with pytest.raises(TableFormatError, match="header.metrics: must include 'epoch_runtime'"):
        load_table(table_file)


def test_short_curve_names_line_metric_and_count(table_file: Path) -> None:
    lines = _lines(table_file)
    lines[3]["metrics"]["val_error"] = lines[3]["metrics"]["val_error"][:-1]
    _rewrite(table_file, lines)
    with pytest.raises(TableFormatError, match=r":4\.metrics\.val_error: needs 4 values .* got 3"):
        load_table(table_file)


def test_non_finite_value_is_refused(table_file: Path) -> None:
    text = table_file.read_text().splitlines()
    data = json.loads(text[2])
    data["metrics"]["val_loss"][1] = float("nan")
    text[2] = json.dumps(data)  # writes NaN, which Python's json reads back as nan
    table_file.write_text("\n".join(text) + "\n")
    with pytest.raises(TableFormatError, match=r":3\.metrics\.val_loss\[1\] \(epoch 2\): must be a finite number"):
        load_table(table_file)


def test_config_value_outside_its_domain(table_file: Path) -> None:
    lines = _lines(table_file)
    lines[1]["config"]["batch_size"] = 48
    _rewrite(table_file, lines)
    with pytest.raises(TableFormatError, match=r":2\.config\.batch_size: 48 is not one of"):
        load_table(table_file)


def test_seed_not_in_header(table_file: Path) -> None:
    lines = _lines(table_file)
    lines[1]["seed"] = 7
    _rewrite(table_file, lines)
    with pytest.raises(TableFormatError, match=r":2\.seed: must be one of the header's seeds \[0, 1\]"):
        load_table(table_file)


def test_broken_json_line(table_file: Path) -> None:
    with open(table_file, "a") as fh:
        fh.write('{"configId": 9, "seed"\n')
    with pytest.raises(TableFormatError, match=r":14: not valid JSON"):
        load_table(table_file)


def test_incomplete_config_fails_unless_allowed(table_file: Path) -> None:
    lines = _lines(table_file)
    dropped = [x for x in lines if not (x.get("configId") == 2 and x.get("seed") == 1)]
    _rewrite(table_file, dropped)
    with pytest.raises(TableFormatError, match=r"config 2 lacks seeds \[1\]"):
        load_table(table_file)
    partial = load_table(table_file, allow_incomplete=True)
    assert len(partial) == 5 and partial.dropped_configs == (2,)
    assert 2 not in partial.config_ids


def test_duplicate_run_is_refused(table_file: Path) -> None:
    lines = _lines(table_file)
    _rewrite(table_file, lines + [lines[1]])
    with pytest.raises(TableFormatError, match="appears twice"):
        load_table(table_file)


def test_header_parameter_domain_is_checked() -> None:
    bad = {"format": "hwtune-table", "version": 1, "name": "x",
           "parameters": {"lr": {"type": "float", "min": 0.0, "max": 1.0, "scale": "log"}},
           "fidelity": {"resource": "epoch", "max": 3}, "seeds": [0],
           "metrics": {"epoch_runtime": {"unit": "s"}}}
    with pytest.raises(TableFormatError, match=r"parameters\.lr\.min: a log scale needs min > 0"):
        TableHeader.from_json(bad)


# -- the writer resumes --------------------------------------------------------------------------


def test_writer_resumes_and_drops_a_torn_line(tmp_path: Path, table: BenchmarkTable) -> None:
    path = tmp_path / "resume.jsonl"
    writer = TableWriter(path, table.header)
    runs = list(table.runs())
    for run in runs[:5]:
        writer.append(run)
    with open(path, "a") as fh:
        fh.write('{"configId": 2, "se')  # killed mid-write
    again = TableWriter(path, table.header)
    assert again.done == {(r.config_id, r.seed) for r in runs[:5]}
    for run in runs:
        if not again.has(run.config_id, run.seed):
            again.append(run)
    loaded = load_table(path)
    assert loaded.configs() == table.configs()
    np.testing.assert_allclose(loaded.metric_array("val_error"), table.metric_array("val_error"), rtol=1e-6)


def test_writer_refuses_a_different_header(tmp_path: Path, table: BenchmarkTable) -> None:
    path = tmp_path / "t.jsonl"
    TableWriter(path, table.header)
    other = TableHeader(**{**table.header.__dict__, "seeds": (0, 1, 2)})
    with pytest.raises(TableFormatError, match="different header"):
        TableWriter(path, other)


def test_run_to_json_rounds_but_keeps_seven_digits() -> None:
    run = TableRun(0, 0, {"lr": 0.1}, 1.0, {"epoch_runtime": [0.123456789]})
    assert run.to_json()["metrics"]["epoch_runtime"] == [0.1234568]


def test_config_missing_a_header_parameter_names_file_and_line(table_file: Path) -> None:
    lines = _lines(table_file)
    missing = next(iter(lines[2]["config"]))
    del lines[2]["config"][missing]
    _rewrite(table_file, lines)
    with pytest.raises(TableFormatError,
                       match=rf"t\.jsonl:3\.config: missing parameter '{missing}' of the header"):
        load_table(table_file)


def test_all_zero_runtime_is_refused(table_file: Path) -> None:
    lines = _lines(table_file)
    lines[4]["metrics"]["epoch_runtime"] = [0.0] * len(lines[4]["metrics"]["epoch_runtime"])
    _rewrite(table_file, lines)
    with pytest.raises(TableFormatError,
                       match=r"t\.jsonl:5\.metrics\.epoch_runtime: every epoch takes 0 seconds"):
        load_table(table_file)


@pytest.mark.parametrize("name", ["runtime", "cost"])
def test_metrics_named_like_builtins_are_refused(table_file: Path, name: str) -> None:
    lines = _lines(table_file)
    lines[0]["metrics"][name] = {"unit": "s", "goal": "minimize"}
    for run in lines[1:]:
        run["metrics"][name] = list(run["metrics"]["val_error"])
    _rewrite(table_file, lines)
    with pytest.raises(TableFormatError,
                       match=rf"t\.jsonl:1 header\.metrics\.{name}: named like hwtune's built-in"):
        load_table(table_file)
