"""hwtune's reference trainer: a small PyTorch MLP on scikit-learn's digits (8x8 images, 10
classes; the data ships with scikit-learn, nothing is downloaded).

Hyperparameters come from the study (HWTUNE_PARAMS); every one has a default, so the script
also runs by hand (``python trainer_image/train.py --max-epochs 5``):

  lr (1e-2), batch_size (64), hidden (64, units per layer), layers (2, hidden layers),
  dropout (0.0), weight_decay (0.0), optimizer (adam | adamw | sgd), momentum (0.9, sgd only),
  activation (relu | tanh | gelu), seed (0), sleep_per_epoch (0.0: seconds slept per epoch to
  mimic a slower model in demos and tests).

Per epoch it reports ``val_error`` (1 - accuracy on a fixed 20% split), ``val_loss`` and
``train_loss``, saving a checkpoint first; a PAUSE or STOP ends the run, and a resumed trial
continues from its checkpoint. Each epoch reseeds from (seed, epoch), so a trial that was
paused, preempted and resumed computes exactly what an uninterrupted one does.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time

import numpy as np
import torch
from torch import nn

import hwtune.trainer as hwt

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU}
OPTIMIZERS = ("adam", "adamw", "sgd")


def _digits() -> tuple[np.ndarray, np.ndarray]:
    # Read the file scikit-learn ships without importing scikit-learn: importing it costs about
    # two seconds per trial launch, far more than training an epoch.
    spec = importlib.util.find_spec("sklearn")
    if spec is not None and spec.origin:
        path = os.path.join(os.path.dirname(spec.origin), "datasets", "data", "digits.csv.gz")
        if os.path.exists(path):
            table = np.loadtxt(path, delimiter=",")
            return table[:, :-1], table[:, -1]
    from sklearn.datasets import load_digits

    digits = load_digits()
    return digits.data, digits.target


def load_data(split_seed: int = 0) -> tuple[torch.Tensor, ...]:
    """1797 digits: 80% for training, a fixed 20% for validation, standardised."""
    pixels, labels = _digits()
    x = pixels.astype(np.float32) / 16.0  # pixel intensities are 0..16
    y = labels.astype(np.int64)
    order = np.random.default_rng(split_seed).permutation(len(x))
    n_val = len(x) // 5
    val, train = order[:n_val], order[n_val:]
    mean, std = x[train].mean(axis=0), x[train].std(axis=0) + 1e-6
    x = (x - mean) / std
    return (torch.from_numpy(x[train]), torch.from_numpy(y[train]),
            torch.from_numpy(x[val]), torch.from_numpy(y[val]))


def build_model(in_features: int, classes: int, hidden: int, layers: int, dropout: float,
                activation: str) -> nn.Module:
    blocks: list[nn.Module] = []
    width = in_features
    for _ in range(layers):
        blocks += [nn.Linear(width, hidden), ACTIVATIONS[activation]()]
        if dropout > 0:
            blocks.append(nn.Dropout(dropout))
        width = hidden
    blocks.append(nn.Linear(width, classes))
    return nn.Sequential(*blocks)


def build_optimizer(name: str, params, lr: float, weight_decay: float,
                    momentum: float) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)


def read_config(trial: hwt.Trial) -> dict:
    config = {
        "lr": float(trial.param("lr", 1e-2)),
        "batch_size": int(trial.param("batch_size", 64)),
        "hidden": int(trial.param("hidden", 64)),
        "layers": int(trial.param("layers", 2)),
        "dropout": float(trial.param("dropout", 0.0)),
        "weight_decay": float(trial.param("weight_decay", 0.0)),
        "optimizer": str(trial.param("optimizer", "adam")),
        "momentum": float(trial.param("momentum", 0.9)),
        "activation": str(trial.param("activation", "relu")),
        "seed": int(trial.param("seed", 0)),
        "sleep_per_epoch": float(trial.param("sleep_per_epoch", 0.0)),
    }
    problems = []
    if not config["lr"] > 0:
        problems.append(f"lr must be > 0, got {config['lr']}")
    if config["batch_size"] < 1 or config["hidden"] < 1 or config["layers"] < 0:
        problems.append("batch_size and hidden must be >= 1, layers >= 0")
    if not 0.0 <= config["dropout"] < 1.0:
        problems.append(f"dropout must be in [0, 1), got {config['dropout']}")
    if config["optimizer"] not in OPTIMIZERS:
        problems.append(f"optimizer must be one of {OPTIMIZERS}, got {config['optimizer']!r}")
    if config["activation"] not in ACTIVATIONS:
        problems.append(f"activation must be one of {tuple(ACTIVATIONS)}, "
                        f"got {config['activation']!r}")
    if problems:
        raise SystemExit("bad hyperparameters: " + "; ".join(problems))
    return config


def train_epoch(model, optimizer, x, y, batch_size: int) -> float:
    model.train()
    loss_fn = nn.CrossEntropyLoss()
    order = torch.randperm(len(x))
    total, seen = 0.0, 0
    for start in range(0, len(x), batch_size):
        idx = order[start:start + batch_size]
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(x[idx]), y[idx])
        loss.backward()
        optimizer.step()
        total += loss.item() * len(idx)
        seen += len(idx)
    return total / seen


@torch.no_grad()
def evaluate(model, x, y) -> tuple[float, float]:
    model.eval()
    logits = model(x)
    loss = float(nn.functional.cross_entropy(logits, y))
    error = float((logits.argmax(dim=1) != y).float().mean())
    return error, loss


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-epochs", type=int, default=10,
                        help="epochs when run outside a study (a study sets its own maximum)")
    args = parser.parse_args(argv)

    torch.set_num_threads(1)  # trials share the machine; one core each
    trial = hwt.init()
    config = read_config(trial)
    x_train, y_train, x_val, y_val = load_data()
    torch.manual_seed(config["seed"])
    model = build_model(x_train.shape[1], 10, config["hidden"], config["layers"],
                        config["dropout"], config["activation"])
    optimizer = build_optimizer(config["optimizer"], model.parameters(), config["lr"],
                                config["weight_decay"], config["momentum"])

    start = 1
    checkpoint = trial.load_checkpoint()
    if checkpoint is not None:
        model.load_state_dict(checkpoint.state["model"])
        optimizer.load_state_dict(checkpoint.state["optimizer"])
        start = checkpoint.resource + 1
        print(f"resumed from the checkpoint of epoch {checkpoint.resource}", flush=True)
    print(f"trial {trial.id} on {trial.hardware or 'local'}: {config}", flush=True)

    for epoch in trial.resource_levels(start, max_resource=args.max_epochs):
        # Reseeding per epoch makes shuffling and dropout a function of (seed, epoch) only.
        torch.manual_seed(config["seed"] * 100_003 + epoch)
        train_loss = train_epoch(model, optimizer, x_train, y_train, config["batch_size"])
        if config["sleep_per_epoch"] > 0:
            time.sleep(config["sleep_per_epoch"])
        val_error, val_loss = evaluate(model, x_val, y_val)
        if not np.isfinite(train_loss):
            # A diverged run has nothing to report; failing shows the reason in the trial log.
            print(f"epoch {epoch}: training diverged (train_loss={train_loss})", flush=True)
            return 1
        trial.save_checkpoint({"model": model.state_dict(), "optimizer": optimizer.state_dict()},
                              epoch)
        decision = trial.report(epoch, val_error=val_error, val_loss=val_loss,
                                train_loss=train_loss)
        print(f"epoch {epoch} train_loss={train_loss:.4f} val_loss={val_loss:.4f} "
              f"val_error={val_error:.4f} -> {decision.value}", flush=True)
    trial.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
