"""A small model hub for the FMS benchmark: MLP, CNN and residual nets on 8x8 digit images
(scikit-learn's bundled digits: nothing is downloaded), pretrained on source tasks, with a
checkpoint per epoch when fine-tuned.

Architectures (tiny on purpose: 2 shared CPU cores build the whole benchmark):

- ``mlp``: 64 -> 24 -> 24 -> classes, ReLU.
- ``cnn``: conv 1->6 (3x3) -> conv 6->8 (3x3) -> global average pool -> linear.
- ``resnet``: conv 1->6 -> [conv 6->6 -> conv 6->6] + skip -> global average pool -> linear.
  Checkpoints hold the module, so the parameter graph finds the skip by tracing it
  (``hwtune.surrogate.graph.arch_of_module``: layer 0's output is added to layer 2's).

Tasks: ``digits-a`` (classes 0-4), ``digits-b`` (classes 5-9), ``digits-noisy`` (all classes,
pixels with Gaussian noise), ``digits-shift`` (all classes, images shifted by one pixel). Source
tasks pretrain the hub; the others are fine-tuned.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

__all__ = ["ARCHS", "HEADS", "TASKS", "build", "evaluate", "load_task", "train_epoch", "trainable"]

ARCHS = ("mlp", "cnn", "resnet")
TASKS = ("digits-a", "digits-b", "digits-noisy", "digits-shift")
_CLASSES = 10  # every head has 10 outputs; tasks with 5 classes use the first 5


class MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 24), nn.ReLU(), nn.Linear(24, 24),
                                 nn.ReLU(), nn.Linear(24, _CLASSES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class CNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(1, 6, 3, padding=1)
        self.c2 = nn.Conv2d(6, 8, 3, padding=1)
        self.fc = nn.Linear(8, _CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.c2(torch.relu(self.c1(x))))
        return self.fc(h.mean(dim=(2, 3)))


class ResNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(1, 6, 3, padding=1)
        self.b1 = nn.Conv2d(6, 6, 3, padding=1)
        self.b2 = nn.Conv2d(6, 6, 3, padding=1)
        self.fc = nn.Linear(6, _CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.c1(x))
        h = torch.relu(self.b2(torch.relu(self.b1(h))) + h)
        return self.fc(h.mean(dim=(2, 3)))


HEADS = {"mlp": "net.5", "cnn": "fc", "resnet": "fc"}  # the classifier layer of each architecture


def trainable(model: nn.Module, arch: str, finetune: str) -> list[nn.Parameter]:
    """The parameters a fine-tuning run trains: ``all``, or ``head`` (the body frozen: a linear
    probe on the pretrained features)."""
    if finetune not in ("all", "head"):
        raise ValueError(f"finetune: must be all or head, got {finetune!r}")
    out = []
    for name, param in model.named_parameters():
        train = finetune == "all" or name.startswith(HEADS[arch] + ".")
        param.requires_grad_(train)
        if train:
            out.append(param)
    return out


def build(arch: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return {"mlp": MLP, "cnn": CNN, "resnet": ResNet}[arch]()


def load_task(task: str, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x_train, y_train, x_val, y_val); images are (n, 1, 8, 8) in [0, 1]."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = digits.images.astype(np.float32) / 16.0
    y = digits.target.astype(np.int64)
    rng = np.random.default_rng(1000 + TASKS.index(task))
    if task == "digits-a":
        keep = y < 5
        x, y = x[keep], y[keep]
    elif task == "digits-b":
        keep = y >= 5
        x, y = x[keep], y[keep] - 5
    elif task == "digits-noisy":
        x = np.clip(x + rng.normal(0, 0.3, size=x.shape).astype(np.float32), 0, 1)
    elif task == "digits-shift":
        x = np.roll(x, 1, axis=2)
    else:
        raise ValueError(f"unknown task {task!r} (one of {', '.join(TASKS)})")
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order], y[order]
    cut = int(0.7 * len(x))
    t = torch.as_tensor
    return t(x[:cut, None]), t(y[:cut]), t(x[cut:, None]), t(y[cut:])


def train_epoch(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
                batch_size: int, seed: int) -> float:
    model.train()
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(x), generator=gen)
    total = 0.0
    for i in range(0, len(x), batch_size):
        idx = order[i:i + batch_size]
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        loss.backward()
        opt.step()
        total += loss.item() * len(idx)
    return total / len(x)


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Validation error (1 - accuracy)."""
    model.eval()
    return float((model(x).argmax(dim=1) != y).float().mean())
