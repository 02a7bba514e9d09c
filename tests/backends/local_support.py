"""Builders shared by the local backend and CLI tests."""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
REFERENCE_TRAINER = REPO / "trainer_image" / "train.py"
TOY_TRAINER = Path(__file__).resolve().parent / "toy_train.py"


def container(script: Path, env: dict[str, str] | None = None, args: list[str] | None = None
              ) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": "trainer", "image": "local", "command": ["python", str(script)]}
    if env:
        entry["env"] = [{"name": k, "value": v} for k, v in env.items()]
    if args:
        entry["args"] = args
    return {"spec": {"containers": [entry]}}


def digits_spec(*, scheduler: str = "mo-asha", max_trials: int = 4, parallel: int = 2,
                max_epochs: int = 3, sleep_per_epoch: float = 0.0, seed: int = 0) -> dict[str, Any]:
    """A small study of the reference trainer: tiny nets, few epochs."""
    return {
        "objectives": [{"metric": "val_error"}, {"metric": "runtime"}, {"metric": "cost"}],
        "parameters": {
            "lr": {"type": "float", "min": 3e-3, "max": 3e-1, "scale": "log"},
            "hidden": {"type": "int", "values": [8, 16, 32]},
            "layers": {"type": "int", "min": 1, "max": 2},
            "optimizer": {"type": "categorical", "values": ["adam", "sgd"]},
            "sleep_per_epoch": {"type": "float", "values": [sleep_per_epoch]},
        },
        "hardware": {"pools": ["t4", "a100"], "gpuCounts": [1, 2]},
        "fidelity": {"resource": "epoch", "min": 1, "max": max_epochs, "reductionFactor": 3},
        "algorithm": {"scheduler": scheduler, "searcher": "random", "seed": seed},
        "budget": {"maxTrials": max_trials, "maxParallelTrials": min(parallel, max_trials)},
        "trialTemplate": container(REFERENCE_TRAINER),
    }


def toy_spec(*, scheduler: str = "fifo", max_trials: int = 3, parallel: int = 2,
             max_epochs: int = 3, env: dict[str, str] | None = None,
             args: list[str] | None = None) -> dict[str, Any]:
    """A study of the torch-free toy trainer (starts in a fraction of a second)."""
    return copy.deepcopy({
        "objectives": [{"metric": "val_error"}, {"metric": "runtime"}],
        "parameters": {"x": {"type": "float", "min": 0.0, "max": 1.0}},
        "fidelity": {"resource": "epoch", "min": 1, "max": max_epochs, "reductionFactor": 3},
        "algorithm": {"scheduler": scheduler, "searcher": "random", "seed": 3},
        "budget": {"maxTrials": max_trials, "maxParallelTrials": min(parallel, max_trials)},
        "trialTemplate": container(TOY_TRAINER, env=env, args=args),
    })


PYTHON = sys.executable
