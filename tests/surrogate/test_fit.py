"""The surrogate's fits: early stopping on the marginal likelihood's plateau with the best state
kept, the GMN trained jointly in warm refits (not frozen), only the training points'
checkpoints encoded during a fit, a refit from scratch when a refit diverges."""

from __future__ import annotations

import numpy as np
import torch

from hwtune.surrogate import hub
from hwtune.surrogate.graph import param_graph, state_of_checkpoint
from hwtune.surrogate.models import Points, SurrogateNet, fit, predict


def _smooth_points(n: int = 30, dx: int = 2, length: int = 5, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(size=(n, dx))
    budget = rng.integers(1, length + 1, size=n) / length
    y = np.sin(3 * x[:, 0]) - budget + 0.05 * rng.standard_normal(n)
    y = (y - y.mean()) / y.std()
    return Points(x, budget, np.zeros((n, length)), np.zeros((n, length)), -np.ones(n, dtype=int)), y


def test_a_fit_stops_on_the_plateau_and_keeps_its_best_state():
    points, y = _smooth_points()
    net = SurrogateNet(2, 5, "gp")
    net.set_points(points, [])
    result = fit(net, y, steps=5000, seed=0, lr=0.05, patience=20)
    assert not result.diverged
    assert result.steps < 5000, "a GP with a handful of hyperparameters converges long before"
    assert result.mll_end > result.mll_start
    # The state returned is the best step's: predicting with it reproduces that likelihood.
    again = fit(net, y, steps=1, seed=0, init=result.state)
    assert abs(again.mll_start - result.mll_end) < 1e-3


def test_the_plain_gp_has_one_lengthscale_per_input():
    points, y = _smooth_points(dx=3)
    net = SurrogateNet(3, 5, "gp")
    net.set_points(points, [])
    result = fit(net, y, steps=300, seed=0, lr=0.05)
    lengthscales = [v for k, v in result.state["gp"].items() if "raw_lengthscale" in k
                    and "constraint" not in k]
    assert lengthscales and lengthscales[0].shape[-1] == 3 + 1  # hyperparameters + budget
    # x[:, 1] and x[:, 2] do not matter: their lengthscales grow past the one of x[:, 0].
    ls = torch.nn.functional.softplus(lengthscales[0]).ravel()
    assert ls[0] < ls[1] and ls[0] < ls[2], ls


def _fms_points(n_trials: int = 6):
    """Points of hub models at a few levels, each with its own checkpoint graph."""
    graphs, rows, ys = [], [], []
    rng = np.random.default_rng(1)
    for t in range(n_trials):
        arch = hub.ARCHS[t % len(hub.ARCHS)]
        model = hub.build(arch, seed=t)
        model_state, arch_of = state_of_checkpoint({"model": model.state_dict(), "module": model})
        graphs.append(param_graph(model_state, arch_of))
        for level in (1, 2):
            rows.append(([t / n_trials, level / 3], level / 3, len(graphs) - 1))
            ys.append((t % 3) * 0.5 - 0.2 * level + 0.05 * rng.standard_normal())
    x = np.array([r[0] for r in rows])
    budget = np.array([r[1] for r in rows])
    graph = np.array([r[2] for r in rows])
    y = np.array(ys)
    y = (y - y.mean()) / y.std()
    return Points(x, budget, np.zeros((len(rows), 3)), np.zeros((len(rows), 3)), graph), y, graphs


def test_a_warm_refit_trains_the_gmn_too():
    points, y, graphs = _fms_points()
    net = SurrogateNet(2, 3, "fms")
    net.set_points(points, graphs)
    full = fit(net, y, steps=30, seed=0)
    refit = fit(net, y, steps=10, seed=1, init=full.state, patience=100)
    gmn_keys = [k for k in full.state["net"] if ".gmn." in k]
    assert gmn_keys
    moved = [k for k in gmn_keys if not torch.equal(full.state["net"][k], refit.state["net"][k])]
    assert moved, "the refit left every GMN parameter where the full fit put it"
    # Frozen on request (the old behaviour) it does not move.
    frozen = fit(net, y, steps=10, seed=1, init=full.state, freeze_encoder=True, patience=100)
    assert all(torch.equal(full.state["net"][k], frozen.state["net"][k]) for k in gmn_keys)


def test_a_fit_encodes_only_the_checkpoints_of_its_training_points():
    points, y, graphs = _fms_points()
    # Only the first 4 points (2 trials) are training points; the rest are test rows.
    net = SurrogateNet(2, 3, "fms")
    net.set_points(points, graphs)
    seen: list[int] = []
    original = net.net.gmn.forward
    net.net.gmn.forward = lambda batch: (seen.append(int(batch.num_graphs)), original(batch))[1]
    result = fit(net, y[:4], steps=3, seed=0)
    assert seen and set(seen) == {2}
    seen.clear()
    mean, std = predict(net, y[:4], result.state, np.arange(4, len(y)))
    assert seen == [len(graphs)] and mean.shape == (len(y) - 4,) and np.all(std > 0)


def test_a_diverged_fit_is_reported_with_a_usable_state():
    points, y = _smooth_points()
    net = SurrogateNet(2, 5, "dyhpo")
    net.set_points(points, [])
    calls = {"n": 0}
    original = net.features

    def flaky(idx):  # the 6th step's features are NaN: the loss is not finite
        calls["n"] += 1
        out = original(idx)
        return out * float("nan") if calls["n"] == 6 else out

    net.features = flaky
    result = fit(net, y, steps=50, seed=0)
    assert result.diverged and result.steps == 6
    assert np.isfinite(result.mll_end) and result.mll_end >= result.mll_start
    assert all(torch.isfinite(v).all() for v in result.state["net"].values())
