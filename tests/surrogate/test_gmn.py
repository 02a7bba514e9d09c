"""The parameter graph and the graph metanetwork: hidden-neuron permutations are true
symmetries (the network computes the same function) and leave the GMN's output unchanged;
every hub architecture gives a valid graph."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch_geometric.data import Batch

from hwtune.surrogate import hub
from hwtune.surrogate.arch import arch_of_module
from hwtune.surrogate.graph import (
    EDGE_FEATURES,
    NODE_FEATURES,
    layers_of,
    param_graph,
    permute_hidden,
    state_of_checkpoint,
)
from hwtune.surrogate.models import GMN, flat_weights, to_pyg


def _state(arch: str, seed: int = 0) -> dict:
    return {k: v.clone() for k, v in hub.build(arch, seed).state_dict().items()}


def _arch(arch: str) -> dict:
    """The architecture inferred from the module (no hand-written hint)."""
    return arch_of_module(hub.build(arch))


@pytest.mark.parametrize("arch", hub.ARCHS)
def test_permuting_hidden_neurons_keeps_the_function(arch):
    model = hub.build(arch, 1)
    x = torch.rand(16, 1, 8, 8)
    before = model(x)
    permuted = permute_hidden(model.state_dict(), np.random.default_rng(0), _arch(arch))
    changed = [k for k in permuted if not torch.equal(permuted[k], model.state_dict()[k])]
    assert changed, "the permutation must actually move parameters"
    model.load_state_dict(permuted)
    assert torch.allclose(model(x), before, atol=1e-5)


@pytest.mark.parametrize("arch", hub.ARCHS)
def test_gmn_output_is_invariant_to_hidden_neuron_permutations(arch):
    torch.manual_seed(0)
    gmn = GMN(out_dim=8)
    gmn.eval()
    state, hint = _state(arch, 2), _arch(arch)
    graphs = [param_graph(state, hint)]
    for seed in range(3):
        graphs.append(param_graph(permute_hidden(state, np.random.default_rng(seed), hint), hint))
    with torch.no_grad():
        out = gmn(Batch.from_data_list([to_pyg(g) for g in graphs]))
    for k in range(1, len(graphs)):
        assert torch.allclose(out[k], out[0], atol=1e-5), (arch, out[k] - out[0])
    # The flat ablation is not invariant (that is the point of comparing them).
    flat = [flat_weights(g) for g in graphs]
    assert not np.allclose(flat[0], flat[1])
    # A different network gives a different embedding.
    other = param_graph(_state(arch, 9), hint)
    with torch.no_grad():
        out2 = gmn(Batch.from_data_list([to_pyg(other)]))
    assert not torch.allclose(out2[0], out[0], atol=1e-4)


@pytest.mark.parametrize("arch", hub.ARCHS)
def test_every_architecture_gives_a_valid_graph(arch):
    state = _state(arch)
    g = param_graph(state, _arch(arch))
    layers = layers_of(state)
    n_params = sum(layer.weight.size + (0 if layer.bias is None else layer.bias.size) for layer in layers)
    n_skip = sum(layers[a].n_out for a, _ in _arch(arch).get("residual", []))
    assert g.edge_attr.shape == (n_params + n_skip, EDGE_FEATURES)  # an edge per parameter
    neurons = layers[0].n_in + sum(layer.n_out for layer in layers)
    assert g.x.shape == (neurons + len(layers), NODE_FEATURES)  # + one bias node per layer
    assert g.edge_index.min() >= 0 and g.edge_index.max() < g.num_nodes
    assert np.all(np.isfinite(g.edge_attr))
    types = g.edge_attr[:, 2:6].sum(axis=0)
    assert types[1] > 0 if arch != "mlp" else types[1] == 0  # conv edges with kernel positions
    if arch == "resnet":
        assert types[3] == 6  # one residual edge per skipped channel
    if arch != "mlp":
        assert np.abs(g.edge_attr[:, -2:]).max() == 1.0  # kernel positions span -1..1


def test_bad_state_dicts_are_refused_clearly():
    with pytest.raises(ValueError, match="no linear or conv2d weights"):
        param_graph({"bn.running_mean": torch.zeros(3)})
    with pytest.raises(ValueError, match="takes 5 inputs but"):
        param_graph({"a.weight": torch.zeros(4, 3), "b.weight": torch.zeros(2, 5)})
    with pytest.raises(ValueError, match="arch.residual"):
        param_graph(_state("mlp"), {"residual": [[0, 3]]})


def test_residual_connections_are_inferred_from_the_module():
    assert _arch("mlp") == {} and _arch("cnn") == {}
    assert _arch("resnet") == {"residual": [[0, 2]]}  # c1's output is added to b2's

    class Skip(torch.nn.Module):  # a skip from the input, and one over two linear layers
        def __init__(self):
            super().__init__()
            self.a = torch.nn.Linear(4, 4)
            self.b = torch.nn.Linear(4, 4)
            self.c = torch.nn.Linear(4, 2)

        def forward(self, x):
            h = torch.relu(self.a(x)) + x
            return self.c(torch.tanh(self.b(h)) + h)

    assert arch_of_module(Skip()) == {"residual": [[-1, 0], [0, 1]]}


def test_a_checkpoint_holding_the_module_gives_the_residual_graph_without_a_hint():
    model = hub.build("resnet", 3)
    state_dict, arch = state_of_checkpoint({"model": model.state_dict(), "module": model})
    assert arch == {"residual": [[0, 2]]}
    g = param_graph(state_dict, arch)
    assert g.edge_attr[:, 5].sum() == 6  # one residual edge per skipped channel
    # A bare state dict is read as a chain: no residual edges.
    plain = param_graph(*state_of_checkpoint({"model": model.state_dict()}))
    assert plain.edge_attr[:, 5].sum() == 0
