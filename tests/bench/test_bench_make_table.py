"""benchmarks/make_table.py: the config stream, the memory model, and a tiny real generation."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from hwtune.bench.table import TableFormatError, TableHeader, load_table
from hwtune.bench.table import _check_in_domain as check_in_domain

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "make_table.py"


@pytest.fixture(scope="module")
def make_table():
    spec = importlib.util.spec_from_file_location("hwtune_make_table", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_config_stream_is_fixed_and_inside_the_space(make_table) -> None:
    configs = make_table.sample_configs(40)
    assert configs == make_table.sample_configs(40)
    assert make_table.sample_configs(10) == configs[:10]  # the quick table's configs are a prefix
    assert len({tuple(c.values()) for c in configs}) == 40
    for i, cfg in enumerate(configs):
        assert set(cfg) == set(make_table.PARAMETERS)
        for name, value in cfg.items():
            check_in_domain(name, value, make_table.PARAMETERS[name], f"configs[{i}].{name}")


def test_memory_model_by_hand(make_table) -> None:
    cfg = {"model": "mlp", "width": 16, "depth": 1, "batch_size": 16, "optimizer": "sgd"}
    # params 64*16+16 + 16*10+10 = 1210, x4 B x (2 + 1 momentum slot) = 14520 B
    # activations (16 + 10 floats) x 16 samples x 4 B x 4 x 2352 = 15 654 912 B
    assert make_table.parameter_count(cfg) == 1210
    assert make_table.memory_gib(cfg) == pytest.approx(0.5 + (14520 + 15_654_912) / 2**30)


def test_memory_grows_with_batch_and_the_biggest_nets_need_several_gpus(make_table) -> None:
    cnn = {"model": "cnn", "width": 256, "depth": 4, "optimizer": "adam"}
    small, big = make_table.memory_gib({**cnn, "batch_size": 32}), make_table.memory_gib({**cnn, "batch_size": 512})
    assert small < 16 and big > 80  # needs two 80 GiB GPUs with data parallelism
    assert make_table.parameter_count(cnn) == sum(
        p.numel() for p in make_table.build_model({**cnn, "dropout": 0.0}).parameters())


def test_header_round_trips(make_table) -> None:
    header = make_table.make_header("x", 3, (0, 1), 5)
    again = TableHeader.from_json(header.to_json())
    assert again.to_json() == header.to_json()


@pytest.mark.torch
def test_tiny_real_generation_then_resume(tmp_path: Path) -> None:
    out = tmp_path / "tiny.jsonl"
    cmd = [sys.executable, str(SCRIPT), "--configs", "2", "--epochs", "3", "--seeds", "0", "1",
           "--workers", "1", "--name", "tiny", "--out", str(out)]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    table = load_table(out)
    assert len(table) == 2 and table.seeds == (0, 1) and table.max_resource == 3
    err = table.metric_array("val_error")
    assert ((0 <= err) & (err <= 1)).all()
    assert (table.metric_array("epoch_runtime") >= 0).all()
    size = out.stat().st_size
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0
    assert "0 runs to do (4 already there)" in again.stderr
    assert out.stat().st_size == size
    # a different size under the same name is refused, not mixed in
    other = subprocess.run(cmd[:-2] + ["--epochs", "4", "--out", str(out)], capture_output=True, text=True,
                           timeout=300)
    assert other.returncode != 0 and "different header" in other.stderr


def test_check_in_domain_messages() -> None:
    with pytest.raises(TableFormatError, match=r"c\.lr: 2 is outside \[0\.1, 1\]"):
        check_in_domain("lr", 2, {"type": "float", "min": 0.1, "max": 1}, "c.lr")
