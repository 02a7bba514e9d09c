"""Benchmark tables for transfer, made by really training small models on CPU (nothing is
downloaded: the datasets ship with scikit-learn or are generated with a fixed seed).

HT-AA pairs (an old and a new version of a training setup; single fidelity, metric val_error):

=============== ================================ ===========================================
pair            model (dataset)                  developer adjustment
=============== ================================ ===========================================
svm-range       RBF SVM (digits)                 range changed: C from [1e-3, 10] to [0.1, 1e3]
hgb-add         hist. gradient boosting (cancer) hyperparameter added: l2_regularization
sgd-algo        linear SGD classifier (digits)   algorithm changed: hinge loss -> logistic loss
torch-remove    torch MLP (digits)               hyperparameter removed: momentum (SGD -> Adam)
torch-arch      torch MLP -> CNN (digits)        architecture changed, same hyperparameters
=============== ================================ ===========================================

MO related tasks (the same space, hardware included at replay time, several datasets): a torch
MLP with ``epoch`` fidelity on digits, breast cancer, wine and a generated 20-feature task.

Tables are ``hwtune-table`` files cached under ``~/.cache/hwtune/tables/transfer-*.jsonl``
(``HWTUNE_CACHE_DIR``); a rerun reuses finished ones. The ``--quick`` sizes are also in git
(benchmarks/tables/transfer-*.jsonl), so CI trains nothing. ``epoch_runtime`` is CPU seconds
(process time) on this machine, one thread.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from hwtune.bench.table import (
    RUNTIME_METRIC,
    TableHeader,
    TableRun,
    TableWriter,
    default_table_path,
    load_table,
)
from hwtune.space import SearchSpace

SPLIT_SEED = 0
BUNDLED = Path(__file__).resolve().parent / "tables"
METRICS = {
    "val_error": {"unit": "fraction", "goal": "minimize",
                  "description": "misclassified fraction of the held-out third"},
    RUNTIME_METRIC: {"unit": "s", "goal": "minimize",
                     "description": "CPU seconds of this epoch (process time, one thread)"},
}


def _round(v: Any) -> Any:
    if isinstance(v, float):
        return float(f"{v:.4g}")
    return v


def _data(name: str):
    from sklearn import datasets
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    if name == "digits":
        x, y = datasets.load_digits(return_X_y=True)
    elif name == "cancer":
        x, y = datasets.load_breast_cancer(return_X_y=True)
    elif name == "wine":
        x, y = datasets.load_wine(return_X_y=True)
    elif name == "synthetic":
        x, y = datasets.make_classification(n_samples=1200, n_features=20, n_informative=8,
                                            n_classes=3, random_state=SPLIT_SEED)
    else:
        raise ValueError(name)
    xtr, xva, ytr, yva = train_test_split(x, y, test_size=1 / 3, random_state=SPLIT_SEED, stratify=y)
    scaler = StandardScaler().fit(xtr)
    return scaler.transform(xtr).astype(np.float32), scaler.transform(xva).astype(np.float32), ytr, yva


# -- trainers: config -> list of (val_error, seconds) per epoch ----------------------------------
def _sk(make: Callable[[dict], Any], dataset: str):
    def train(config: dict) -> list[tuple[float, float]]:
        xtr, xva, ytr, yva = _data(dataset)
        t0 = time.process_time()
        model = make(config).fit(xtr, ytr)
        err = float(np.mean(model.predict(xva) != yva))
        return [(err, time.process_time() - t0)]
    return train


def _svm(config):
    from sklearn.svm import SVC
    return SVC(C=config["C"], gamma=config["gamma"])


def _hgb(config):
    from sklearn.ensemble import HistGradientBoostingClassifier
    return HistGradientBoostingClassifier(
        max_iter=40, learning_rate=config["learning_rate"], max_leaf_nodes=config["max_leaf_nodes"],
        min_samples_leaf=config["min_samples_leaf"],
        l2_regularization=config.get("l2_regularization", 0.0), random_state=0)


def _sgd(loss):
    def make(config):
        from sklearn.linear_model import SGDClassifier
        return SGDClassifier(loss=loss, alpha=config["alpha"], eta0=config["eta0"],
                             learning_rate=config["schedule"], penalty=config["penalty"],
                             max_iter=20, tol=None, random_state=0)
    return make


def _torch(arch: str, dataset: str, epochs: int):
    def train(config: dict) -> list[tuple[float, float]]:
        import torch
        from torch import nn

        torch.set_num_threads(1)
        torch.manual_seed(0)
        xtr, xva, ytr, yva = _data(dataset)
        n_classes = int(max(ytr.max(), yva.max()) + 1)
        width = int(config["width"])
        if arch == "cnn":
            side = int(math.isqrt(xtr.shape[1]))
            net: nn.Module = nn.Sequential(
                nn.Unflatten(1, (1, side, side)), nn.Conv2d(1, width // 4, 3, padding=1), nn.ReLU(),
                nn.MaxPool2d(2), nn.Flatten(), nn.Linear(width // 4 * (side // 2) ** 2, n_classes))
        else:
            net = nn.Sequential(nn.Linear(xtr.shape[1], width), nn.ReLU(),
                                nn.Dropout(float(config.get("dropout", 0.0))),
                                nn.Linear(width, n_classes))
        if "momentum" in config:
            opt = torch.optim.SGD(net.parameters(), lr=config["lr"], momentum=config["momentum"],
                                  weight_decay=config["weight_decay"])
        else:
            opt = torch.optim.Adam(net.parameters(), lr=config["lr"], weight_decay=config["weight_decay"])
        xt, yt = torch.from_numpy(xtr), torch.from_numpy(ytr).long()
        xv = torch.from_numpy(xva)
        gen = torch.Generator().manual_seed(0)
        bs = int(config["batch_size"])
        out = []
        for _ in range(epochs):
            t0 = time.process_time()
            net.train()
            for idx in torch.randperm(len(xt), generator=gen).split(bs):
                opt.zero_grad()
                loss = nn.functional.cross_entropy(net(xt[idx]), yt[idx])
                if not torch.isfinite(loss):
                    break
                loss.backward()
                opt.step()
            net.eval()
            with torch.no_grad():
                err = float((net(xv).argmax(1).numpy() != yva).mean())
            out.append((err, time.process_time() - t0))
        return out
    return train


# -- the setups ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Setup:
    name: str
    parameters: dict[str, dict[str, Any]]
    train: Callable[[dict], list[tuple[float, float]]]
    epochs: int = 1
    description: str = ""


LOG = "log"
_SVM = {"gamma": {"type": "float", "min": 1e-5, "max": 1e-1, "scale": LOG}}
_HGB = {"learning_rate": {"type": "float", "min": 0.01, "max": 1.0, "scale": LOG},
        "max_leaf_nodes": {"type": "int", "min": 4, "max": 64, "scale": LOG},
        "min_samples_leaf": {"type": "int", "min": 2, "max": 60, "scale": LOG}}
_SGD = {"alpha": {"type": "float", "min": 1e-6, "max": 1e-1, "scale": LOG},
        "eta0": {"type": "float", "min": 1e-4, "max": 1.0, "scale": LOG},
        "schedule": {"type": "categorical", "values": ["constant", "invscaling", "adaptive"]},
        "penalty": {"type": "categorical", "values": ["l2", "l1", "elasticnet"]}}
_TORCH = {"lr": {"type": "float", "min": 1e-4, "max": 0.3, "scale": LOG},
          "width": {"type": "int", "values": [16, 32, 64, 128]},
          "batch_size": {"type": "int", "values": [32, 64, 128, 256]},
          "weight_decay": {"type": "float", "min": 1e-6, "max": 1e-2, "scale": LOG}}

PAIRS: dict[str, tuple[Setup, Setup, str]] = {
    "svm-range": (
        Setup("svm-range-old", {"C": {"type": "float", "min": 1e-3, "max": 10.0, "scale": LOG}, **_SVM},
              _sk(_svm, "digits")),
        Setup("svm-range-new", {"C": {"type": "float", "min": 0.1, "max": 1e3, "scale": LOG}, **_SVM},
              _sk(_svm, "digits")),
        "range changed"),
    "hgb-add": (
        Setup("hgb-add-old", dict(_HGB), _sk(_hgb, "cancer")),
        Setup("hgb-add-new", {**_HGB, "l2_regularization": {"type": "float", "min": 1e-4, "max": 10.0,
                                                             "scale": LOG}}, _sk(_hgb, "cancer")),
        "hyperparameter added"),
    "sgd-algo": (
        Setup("sgd-algo-old", dict(_SGD), _sk(_sgd("hinge"), "digits")),
        Setup("sgd-algo-new", dict(_SGD), _sk(_sgd("log_loss"), "digits")),
        "algorithm changed"),
    "torch-remove": (
        Setup("torch-remove-old", {**_TORCH, "momentum": {"type": "float", "min": 0.0, "max": 0.99}},
              _torch("mlp", "digits", 6)),
        Setup("torch-remove-new", dict(_TORCH), _torch("mlp", "digits", 6)),
        "hyperparameter removed"),
    "torch-arch": (
        Setup("torch-arch-old", dict(_TORCH), _torch("mlp", "digits", 6)),
        Setup("torch-arch-new", dict(_TORCH), _torch("cnn", "digits", 6)),
        "architecture changed"),
}
QUICK_PAIRS = ("svm-range", "sgd-algo")

MO_DATASETS = ("digits", "cancer", "wine", "synthetic")
_MO_SPACE = {"lr": {"type": "float", "min": 1e-3, "max": 0.3, "scale": LOG},
             "width": {"type": "int", "values": [16, 32, 64, 128]},
             "batch_size": {"type": "int", "values": [16, 32, 64, 128, 256]},
             "weight_decay": {"type": "float", "min": 1e-6, "max": 1e-2, "scale": LOG},
             "dropout": {"type": "float", "min": 0.0, "max": 0.5}}


def mo_setup(dataset: str, epochs: int) -> Setup:
    return Setup(f"mo-{dataset}", dict(_MO_SPACE), _torch("mlp", dataset, epochs), epochs=epochs)


# -- generation ----------------------------------------------------------------------------------
def _configs(parameters: dict, n: int, stream: int) -> list[dict[str, Any]]:
    space = SearchSpace.from_spec(parameters)
    rng = np.random.default_rng(stream)
    out, seen = [], set()
    while len(out) < n:
        c = {k: _round(v) for k, v in space.sample(rng).items()}
        key = tuple(sorted(c.items()))
        if key not in seen:
            seen.add(key)
            out.append(space.validate(c))
    return out


def table_for(setup: Setup, n_configs: int, *, stream: int = 7, log: Callable[[str], None] = print):
    """The cached table of ``setup`` with ``n_configs`` configs, trained where missing. The
    configs are the first ``n_configs`` of a fixed stream, so a smaller table is a prefix."""
    path = default_table_path(f"transfer-{setup.name}-{n_configs}")
    bundled = BUNDLED / path.name  # the CI-sized tables are in git: CI trains nothing
    if not path.exists() and bundled.exists():
        return load_table(bundled)
    header = TableHeader(name=setup.name, parameters=setup.parameters, seeds=(0,), metrics=METRICS,
                         max_resource=setup.epochs, num_configs=n_configs,
                         reference_device={"name": "x86_64 CPU, 1 thread", "timer": "process_time"},
                         description=setup.description or setup.name,
                         generator={"script": "benchmarks/transfer_tables.py"})
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = TableWriter(path, header, durable=False)
    started = time.monotonic()
    for i, config in enumerate(_configs(setup.parameters, n_configs, stream)):
        if writer.has(i, 0):
            continue
        curve = setup.train(config)
        if len(curve) > setup.epochs:  # single fidelity: the trained model's error, all its time
            curve = [(curve[-1][0], sum(sec for _, sec in curve))]
        writer.append(TableRun(i, 0, config, 0.0, {"val_error": [e for e, _ in curve],
                                                   RUNTIME_METRIC: [s for _, s in curve]}))
    if time.monotonic() - started > 1:
        log(f"  trained {setup.name}: {n_configs} configs in {time.monotonic() - started:.0f} s "
            f"-> {path}")
    return load_table(path)


if __name__ == "__main__":  # pragma: no cover - generation by hand: python benchmarks/transfer_tables.py
    os.nice(10)
    for old, new, _ in PAIRS.values():
        table_for(old, 150)
        table_for(new, 150)
    for ds in MO_DATASETS:
        table_for(mo_setup(ds, 9), 120)
