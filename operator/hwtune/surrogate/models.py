"""The torch side of the surrogate: the deep-kernel GP of DyHPO with FMS's weight encoders.

Input of one point (a trial at a budget): the encoded hyperparameters (hardware included), the
budget as a fraction of the maximum, the learning curve before that budget (padded to the
maximum, with a mask) and, for FMS, the graph of the checkpoint the trial starts that budget
from. The feature extractor maps them to a few features:

    hyperparameters + budget -> MLP ----------------\\
    learning curve -> 1-D CNN -> global max pool ---- concat -> MLP -> features -> GP
    checkpoint graph -> GMN -> invariant readout ---/

and the GP on the features has a constant mean and a scaled RBF kernel (gpytorch). Everything
(network and GP hyperparameters) is trained together with Adam on the negative exact marginal
log likelihood.

Variants (``Variant``): ``dyhpo`` (no weights), ``fms`` (GMN over the checkpoint graph),
``fms-flat`` (an MLP over the flattened weights, subsampled to a fixed length), ``fms-nocurve``
(GMN, no curve CNN), ``gp`` (no network at all: RBF on hyperparameters + budget; the paper's
"GP" baseline).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Any, Sequence

import gpytorch
import numpy as np
import torch
from torch import nn
from torch_geometric.data import Batch, Data
from torch_geometric.nn import MessagePassing, global_max_pool, global_mean_pool

from hwtune.surrogate.graph import EDGE_FEATURES, NODE_FEATURES, ParamGraph

__all__ = ["FLAT_DIM", "VARIANTS", "FitResult", "GMN", "Points", "SurrogateNet", "fit", "predict",
           "to_pyg"]

VARIANTS = ("dyhpo", "fms", "fms-flat", "fms-nocurve", "gp")
FLAT_DIM = 256
LOG_BUDGET = True


@dataclass
class Points:
    """A set of (trial, budget) points as arrays. ``graph`` indexes ``graphs`` (-1: none)."""

    x: np.ndarray  # (n, dx) encoded hyperparameters (+ hardware)
    budget: np.ndarray  # (n,) budget / max budget
    curve: np.ndarray  # (n, L) values before the budget, 0-padded
    mask: np.ndarray  # (n, L) 1 where the curve has a value
    graph: np.ndarray  # (n,) int index into the graph list, -1 for none

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def take(self, idx: Sequence[int] | np.ndarray) -> "Points":
        idx = np.asarray(idx, dtype=int)
        return Points(self.x[idx], self.budget[idx], self.curve[idx], self.mask[idx], self.graph[idx])


def to_pyg(graph: ParamGraph) -> Data:
    return Data(x=torch.as_tensor(graph.x, dtype=torch.float32),
                edge_index=torch.as_tensor(graph.edge_index, dtype=torch.long),
                edge_attr=torch.as_tensor(graph.edge_attr, dtype=torch.float32))


class EdgeConv(MessagePassing):
    """h_i' = h_i + MLP([h_i, mean_j MLP([h_j, e_ji])]): messages along the parameter edges."""

    def __init__(self, hidden: int) -> None:
        super().__init__(aggr="mean")
        self.msg = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.ReLU(), nn.Linear(hidden, hidden))
        self.upd = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.ReLU(), nn.Linear(hidden, hidden))

    def forward(self, h: torch.Tensor, edge_index: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        agg = self.propagate(edge_index, h=h, e=e)
        return h + self.upd(torch.cat([h, agg], dim=-1))

    def message(self, h_j: torch.Tensor, e: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return self.msg(torch.cat([h_j, e], dim=-1))


class GMN(nn.Module):
    """Graph metanetwork: embeds nodes and edges, passes messages both ways along every edge
    (the reverse copy is flagged), and reads out mean and max over all nodes. A permutation of
    hidden neurons permutes nodes and edges and leaves the readout unchanged."""

    def __init__(self, out_dim: int = 8, hidden: int = 16, layers: int = 2) -> None:
        super().__init__()
        self.node_in = nn.Linear(NODE_FEATURES, hidden)
        # Edge values span orders of magnitude across layers: a sign-preserving log squash helps.
        self.edge_in = nn.Linear(EDGE_FEATURES + 2, hidden)
        self.convs = nn.ModuleList([EdgeConv(hidden) for _ in range(layers)])
        self.out = nn.Linear(2 * hidden, out_dim)

    def forward(self, batch: Batch) -> torch.Tensor:
        ei, ea = batch.edge_index, batch.edge_attr
        value = ea[:, :1]
        squash = torch.sign(value) * torch.log1p(value.abs() * 10.0)
        both = torch.cat([ei, ei.flip(0)], dim=1)
        fwd = torch.cat([ea, squash, torch.zeros_like(value)], dim=1)
        rev = torch.cat([ea, squash, torch.ones_like(value)], dim=1)
        e = self.edge_in(torch.cat([fwd, rev], dim=0))
        h = self.node_in(batch.x)
        for conv in self.convs:
            h = torch.relu(conv(h, both, e))
        pooled = torch.cat([global_mean_pool(h, batch.batch), global_max_pool(h, batch.batch)], 1)
        return self.out(pooled)


def flat_weights(graph: ParamGraph, dim: int = FLAT_DIM) -> np.ndarray:
    """FMS-FLAT's input: the parameter values in state-dict order, subsampled at a fixed stride
    (or zero-padded) to ``dim`` entries. Not permutation invariant, by design of the ablation."""
    values = graph.edge_attr[:, 0]
    if len(values) >= dim:
        idx = np.linspace(0, len(values) - 1, dim).round().astype(int)
        return values[idx]
    out = np.zeros(dim)
    out[: len(values)] = values
    return out


class FeatureNet(nn.Module):
    def __init__(self, dx: int, curve_len: int, variant: str, features: int = 8) -> None:
        super().__init__()
        self.variant = variant
        self.use_curve = variant in ("dyhpo", "fms", "fms-flat")
        self.weights = {"fms": "gmn", "fms-nocurve": "gmn", "fms-flat": "flat"}.get(variant)
        self.hp = nn.Sequential(nn.Linear(dx + 1, 32), nn.ReLU())
        width = 32
        if self.use_curve:
            self.cnn = nn.Sequential(nn.Conv1d(2, 8, 3, padding=1), nn.ReLU(),
                                     nn.Conv1d(8, 8, 3, padding=1), nn.ReLU(),
                                     nn.AdaptiveMaxPool1d(1))
            width += 8
        if self.weights == "gmn":
            self.gmn = GMN(out_dim=8)
            width += 8
        elif self.weights == "flat":
            self.flat = nn.Sequential(nn.Linear(FLAT_DIM, 16), nn.ReLU(), nn.Linear(16, 8))
            width += 8
        self.head = nn.Sequential(nn.Linear(width, 32), nn.ReLU(), nn.Linear(32, features))
        self.curve_len = curve_len

    def forward(self, x: torch.Tensor, budget: torch.Tensor, curve: torch.Tensor,
                mask: torch.Tensor, wfeat: torch.Tensor | None) -> torch.Tensor:
        parts = [self.hp(torch.cat([x, budget[:, None]], dim=1))]
        if self.use_curve:
            parts.append(self.cnn(torch.stack([curve, mask], dim=1)).squeeze(-1))
        if self.weights is not None:
            assert wfeat is not None
            parts.append(wfeat)
        return self.head(torch.cat(parts, dim=1))


class _ExactGP(gpytorch.models.ExactGP):
    """Inputs are row indices into the point set the surrogate holds (so composite inputs,
    curves and graphs, fit gpytorch's one-tensor interface)."""

    def __init__(self, owner: "SurrogateNet", train_idx: torch.Tensor, y: torch.Tensor,
                 likelihood: gpytorch.likelihoods.GaussianLikelihood) -> None:
        super().__init__(train_idx, y, likelihood)
        self.owner = owner
        self.mean_module = gpytorch.means.ConstantMean()
        if owner.net is None:
            # The plain GP sees hyperparameters in [0, 1] and the budget fraction: one lengthscale
            # per input (ARD), with a prior around half the unit cube so that an input the data
            # do not pin down is neither ignored nor over-trusted.
            rbf = gpytorch.kernels.RBFKernel(
                ard_num_dims=owner.dx + 1,
                lengthscale_prior=gpytorch.priors.GammaPrior(3.0, 6.0))
        else:
            rbf = gpytorch.kernels.RBFKernel()
        self.covar_module = gpytorch.kernels.ScaleKernel(rbf)

    def forward(self, idx: torch.Tensor):
        z = self.owner.features(idx.long().view(-1))
        return gpytorch.distributions.MultivariateNormal(self.mean_module(z), self.covar_module(z))


class SurrogateNet(nn.Module):
    """Feature network + GP for one variant. ``set_points`` installs the point set (train and
    test rows together) and the checkpoint graphs; GP inputs are row indices into it."""

    def __init__(self, dx: int, curve_len: int, variant: str = "dyhpo",
                 device: str | torch.device = "cpu") -> None:
        super().__init__()
        self.device = torch.device(device)
        if variant not in VARIANTS:
            raise ValueError(f"unknown surrogate variant {variant!r} (one of {', '.join(VARIANTS)})")
        self.variant = variant
        self.dx = dx
        self.curve_len = curve_len
        self.net = None if variant == "gp" else FeatureNet(dx, curve_len, variant)
        self._tensors: tuple[torch.Tensor, ...] = ()
        self._graph_batch: Batch | None = None
        self._flat: torch.Tensor | None = None
        self._graphs: list[Data] = []
        self._flat_all: torch.Tensor | None = None
        self._gmap = torch.zeros(1, dtype=torch.long)
        self.freeze_weights_encoder = False
        self._wcache: torch.Tensor | None = None
        self.to(self.device)

    def set_points(self, points: Points, graphs: Sequence[ParamGraph]) -> None:
        def t(a, dtype=torch.float32):
            return torch.as_tensor(a, dtype=dtype, device=self.device)

        self._tensors = (t(points.x), t(points.budget), t(points.curve), t(points.mask),
                         t(points.graph, torch.long))
        self._graphs = [to_pyg(g) for g in graphs] if self.net is not None \
            and self.net.weights == "gmn" else []
        self._flat_all = t(np.stack([flat_weights(g) for g in graphs])) if self.net is not None \
            and self.net.weights == "flat" and graphs else None
        self.restrict_graphs(None)

    def restrict_graphs(self, rows: np.ndarray | None) -> None:
        """Encode only the checkpoints that ``rows`` of the point set use (None: every one).
        A fit needs the training rows' graphs only; the test rows' are encoded once, at
        prediction. Message passing over every graph is the expensive part of a step."""
        graph = self._tensors[4].cpu().numpy() if self._tensors else np.zeros(0, dtype=int)
        n = len(self._graphs) if self._flat_all is None else int(self._flat_all.shape[0])
        used = np.arange(n) if rows is None else np.unique(graph[np.asarray(rows, dtype=int)])
        used = used[used >= 0]
        # Global graph id -> row of the weight table; -1 (none) -> the zero row at the end.
        gmap = np.full(n + 1, len(used), dtype=np.int64)
        gmap[used] = np.arange(len(used))
        self._gmap = torch.as_tensor(gmap, device=self.device)
        self._graph_batch = None
        self._flat = None
        self._wcache = None
        if len(used) and self._graphs:
            self._graph_batch = Batch.from_data_list([self._graphs[i] for i in used]).to(self.device)
        elif len(used) and self._flat_all is not None:
            self._flat = self._flat_all[torch.as_tensor(used, device=self.device)]

    def _weight_table(self) -> torch.Tensor | None:
        assert self.net is not None
        if self.net.weights is None:
            return None
        if self._wcache is not None:
            return self._wcache
        if self.net.weights == "gmn":
            table = None if self._graph_batch is None else self.net.gmn(self._graph_batch)
        else:
            table = None if self._flat is None else self.net.flat(self._flat)
        if table is None:
            table = torch.zeros(0, 8, device=self.device)
        # Row -1 (no checkpoint) maps to a zero vector appended at the end.
        table = torch.cat([table, torch.zeros(1, table.shape[1], device=self.device)], dim=0)
        if self.freeze_weights_encoder:
            self._wcache = table.detach()
        return table

    def features(self, idx: torch.Tensor) -> torch.Tensor:
        x, budget, curve, mask, graph = (t[idx] for t in self._tensors)
        budget = self.budget_scale(budget)
        if self.net is None:
            return torch.cat([x, budget[:, None]], dim=1)
        table = self._weight_table()
        wfeat = None
        if table is not None:
            wfeat = table[self._gmap[graph]]  # graph -1 indexes the last entry: the zero row
        return self.net(x, budget, curve, mask, wfeat)

    def budget_scale(self, budget: torch.Tensor) -> torch.Tensor:
        """budget = level / max level -> log(level) / log(max level): learning curves are
        closer to straight lines in log epochs, and most points sit at the first few levels,
        which a linear fraction squeezes next to 0 (the final level stays at 1)."""
        if not LOG_BUDGET or self.curve_len <= 1:
            return budget
        level = (budget * self.curve_len).clamp_min(1.0)
        return torch.log(level) / math.log(self.curve_len)

    def encoder_parameters(self) -> list[nn.Parameter]:
        if self.net is None or self.net.weights is None:
            return []
        module = self.net.gmn if self.net.weights == "gmn" else self.net.flat
        return list(module.parameters())


@dataclass
class FitResult:
    state: dict[str, Any]  # state_dict of the SurrogateNet + GP + likelihood
    mll_start: float
    mll_end: float
    steps: int
    diverged: bool


def _build(net: SurrogateNet, n_train: int, y: torch.Tensor):
    likelihood = gpytorch.likelihoods.GaussianLikelihood(
        noise_constraint=gpytorch.constraints.GreaterThan(1e-4))
    gp = _ExactGP(net, torch.arange(n_train, dtype=torch.float32, device=net.device), y, likelihood)
    return gp.to(net.device), likelihood.to(net.device)


# torch has one random generator per process; fits run in parallel threads (the service's
# request threads, its background full fits), so a seeded start holds this lock while it draws.
SEED_LOCK = threading.RLock()

PATIENCE = 50  # at most this many steps without a better loss (by TOLERANCE per point)
TOLERANCE = 1e-3


def fit(net: SurrogateNet, y: np.ndarray, *, steps: int, seed: int, init: dict[str, Any] | None = None,
        lr: float = 0.01, freeze_encoder: bool = False, patience: int | None = None,
        tolerance: float = TOLERANCE) -> FitResult:
    """Train on the first ``len(y)`` rows of the installed point set (y standardised by the
    caller) with Adam on the negative exact marginal log likelihood, for at most ``steps``
    steps: it stops early when the loss has not improved by ``tolerance`` (per point) for
    ``patience`` steps (default: a fifth of ``steps``, between 10 and ``PATIENCE``), and returns the state of the best step (Adam's last steps on a deep
    kernel often wander off the optimum). ``init``: start from an earlier fit's state (a short
    refit), else from a seeded initialisation. ``freeze_encoder``: keep the weights encoder
    (GMN / flat MLP) fixed. Returns the state and the exact marginal log likelihood (per point)
    before and after. ``diverged``: the loss went NaN/inf or the Cholesky failed before any
    step (the best state so far is still returned)."""
    with SEED_LOCK:  # the seeded start: no other thread may draw from torch's generator meanwhile
        torch.manual_seed(int(seed) % (2 ** 31))
        if init is None:
            _reset(net)
    if patience is None:
        patience = max(10, min(PATIENCE, steps // 5))
    yt = torch.as_tensor(y, dtype=torch.float32, device=net.device)
    gp, likelihood = _build(net, len(y), yt)
    if init is not None:
        _load(net, gp, likelihood, init)
    net.restrict_graphs(np.arange(len(y)))
    net.freeze_weights_encoder = freeze_encoder
    net._wcache = None
    frozen = {id(q) for q in net.encoder_parameters()} if freeze_encoder else set()
    params = [p for p in gp.parameters() if id(p) not in frozen] + list(likelihood.parameters())
    seen: set[int] = set()
    unique = [p for p in params if not (id(p) in seen or seen.add(id(p)))]
    opt = torch.optim.Adam(unique, lr=lr)
    mll = gpytorch.mlls.ExactMarginalLogLikelihood(likelihood, gp)
    gp.train()
    likelihood.train()
    train_x = torch.arange(len(y), dtype=torch.float32, device=net.device)
    start = float("nan")
    best_loss, best_state, best_step = math.inf, None, -1
    diverged = False
    step = 0
    with gpytorch.settings.cholesky_max_tries(4):
        for step in range(max(1, steps)):
            opt.zero_grad()
            try:
                loss = -mll(gp(train_x), yt)
            except Exception:  # NotPSDError and friends: treat as divergence
                diverged = True
                break
            if not torch.isfinite(loss):
                diverged = True
                break
            value = float(loss.detach())
            if step == 0:
                start = -value
            if value < best_loss - tolerance:
                best_loss, best_step = value, step
                best_state = _state(net, gp, likelihood)
            elif step - best_step >= patience:
                break
            loss.backward()
            opt.step()
            if not freeze_encoder:
                net._wcache = None
    net.freeze_weights_encoder = False
    net._wcache = None
    if best_state is None:  # not even the first step gave a finite loss
        return FitResult(state=_state(net, gp, likelihood), mll_start=start, mll_end=float("nan"),
                         steps=step + 1, diverged=True)
    # A loss that blew up after good steps still leaves the best state usable, but it is
    # reported as diverged so that the caller refits from scratch.
    return FitResult(state=best_state, mll_start=start, mll_end=-best_loss, steps=step + 1,
                     diverged=diverged)


def predict(net: SurrogateNet, y: np.ndarray, state: dict[str, Any], test_rows: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray]:
    """Posterior mean and standard deviation (of the latent function, standardised units) at
    ``test_rows`` of the installed point set, given training targets ``y`` on rows 0..n-1."""
    yt = torch.as_tensor(y, dtype=torch.float32, device=net.device)
    gp, likelihood = _build(net, len(y), yt)
    _load(net, gp, likelihood, state)
    gp.eval()
    likelihood.eval()
    net.restrict_graphs(np.concatenate([np.arange(len(y)), np.asarray(test_rows, dtype=int)]))
    net.freeze_weights_encoder = True
    net._wcache = None
    try:
        with torch.no_grad(), gpytorch.settings.fast_pred_var(), gpytorch.settings.cholesky_max_tries(6):
            post = gp(torch.as_tensor(np.asarray(test_rows), dtype=torch.float32, device=net.device))
            mean = post.mean.cpu().numpy().astype(float)
            std = post.variance.clamp_min(1e-12).sqrt().cpu().numpy().astype(float)
    finally:
        net.freeze_weights_encoder = False
        net._wcache = None
    return mean, std


def _reset(net: SurrogateNet) -> None:
    for module in net.modules():
        if hasattr(module, "reset_parameters") and module is not net:
            module.reset_parameters()


def _state(net: SurrogateNet, gp, likelihood) -> dict[str, Any]:
    return {"net": {k: v.detach().clone() for k, v in net.state_dict().items()},
            "gp": {k: v.detach().clone() for k, v in gp.state_dict().items()
                   if not k.startswith("owner.")},
            "lik": {k: v.detach().clone() for k, v in likelihood.state_dict().items()}}


def _load(net: SurrogateNet, gp, likelihood, state: dict[str, Any]) -> None:
    net.load_state_dict(state["net"])
    gp_state = {k: v for k, v in state["gp"].items()}
    own = gp.state_dict()
    own.update({k: v for k, v in gp_state.items() if k in own})
    gp.load_state_dict(own)
    likelihood.load_state_dict(state["lik"])
