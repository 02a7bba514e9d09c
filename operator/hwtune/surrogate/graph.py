"""A network's parameters as a graph (as in Graph Metanetworks), and true hidden-neuron
permutations.

Nodes: the input neurons (input features or channels) of the first layer, the output neurons
(or channels) of every layer, and one bias node per layer. Edges, one per parameter:

- a linear weight ``W[o, i]``: input neuron ``i`` -> output neuron ``o``;
- a conv weight ``W[o, i, y, x]``: channel ``i`` -> channel ``o``, one edge per kernel position;
- a bias ``b[o]``: the layer's bias node -> output neuron ``o``;
- a residual connection: neuron ``k`` of the block's input layer -> neuron ``k`` of its output
  layer, value 1 (an identity skip).

Edge features: [value, layer index / (layers - 1), one-hot edge type (linear, conv, bias,
residual), kernel position (y, x) scaled to [-1, 1] (0 for non-conv)]. Node features: one-hot
type (input, hidden, output, bias) and layer index / layers. Hidden neurons carry no index, so a
function-preserving permutation of them permutes the graph and nothing else.

Layers are read from the state dict in order: every ``*.weight`` of 2 dims (linear) or 4 dims
(conv2d) with its ``*.bias``. Conv -> linear assumes global pooling (channel k feeds input k).
Other tensors (batch-norm statistics, embeddings) are ignored. Residual structure is not in a
state dict, so it is inferred from the module when the checkpoint holds one (``state["module"]``,
an ``nn.Module``, as the benchmark hub saves them): ``arch_of_module`` traces its forward pass
with torch.fx and turns every addition of two layer outputs into ``arch = {"residual": [[a, b],
...]}``, meaning the output of layer ``a`` (or the network input when a == -1) is added to the
output of layer ``b``. A state dict alone is read as a plain chain (or with an explicit ``arch``).

numpy only (the tracing lives in ``hwtune.surrogate.arch``); ``hwtune.surrogate.models.to_pyg``
converts a graph for torch-geometric.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

__all__ = ["EDGE_FEATURES", "NODE_FEATURES", "Layer", "ParamGraph", "arch_of_module", "layers_of",
           "param_graph", "permute_hidden", "state_of_checkpoint"]

EDGE_TYPES = ("linear", "conv", "bias", "residual")
NODE_TYPES = ("input", "hidden", "output", "bias")
EDGE_FEATURES = 1 + 1 + len(EDGE_TYPES) + 2
NODE_FEATURES = len(NODE_TYPES) + 1


@dataclass(frozen=True)
class Layer:
    name: str  # state-dict prefix, e.g. "net.0"
    weight: np.ndarray  # (out, in) or (out, in, kh, kw)
    bias: np.ndarray | None

    @property
    def n_in(self) -> int:
        return int(self.weight.shape[1])

    @property
    def n_out(self) -> int:
        return int(self.weight.shape[0])

    @property
    def is_conv(self) -> bool:
        return self.weight.ndim == 4


@dataclass(frozen=True)
class ParamGraph:
    x: np.ndarray  # (nodes, NODE_FEATURES)
    edge_index: np.ndarray  # (2, edges) int64: source, target
    edge_attr: np.ndarray  # (edges, EDGE_FEATURES)

    @property
    def num_nodes(self) -> int:
        return int(self.x.shape[0])



def _numpy(t: Any) -> np.ndarray:
    if hasattr(t, "detach"):
        return t.detach().cpu().double().numpy()
    return np.asarray(t, dtype=float)


def state_of_checkpoint(state: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(model state dict, architecture) of an hwtune checkpoint's state: the module's own when
    the state holds one (``state["module"]`` or the state itself), else ``state["model"]`` when
    present (the reference trainer's layout), else the state itself; the architecture inferred
    from the module (``arch_of_module``), or an explicit ``state["arch"]``, or none."""
    if _is_module(state):
        return dict(state.state_dict()), arch_of_module(state)
    if not isinstance(state, Mapping):
        raise ValueError("checkpoint state holds no model state dict")
    module = state.get("module")
    if _is_module(module):
        return dict(module.state_dict()), dict(state.get("arch") or arch_of_module(module))
    arch = dict(state.get("arch") or {})
    model = state.get("model", state)
    if _is_module(model):
        return dict(model.state_dict()), dict(arch or arch_of_module(model))
    if not isinstance(model, Mapping):
        raise ValueError("checkpoint state holds no model state dict")
    return dict(model), arch


def _is_module(obj: Any) -> bool:
    return hasattr(obj, "state_dict") and hasattr(obj, "named_modules") and callable(obj)


def arch_of_module(module: Any) -> dict[str, Any]:
    """``hwtune.surrogate.arch.arch_of_module`` (torch.fx; loaded only when a checkpoint holds a
    module, so torch is already there); a module that cannot be traced reads as a chain."""
    try:
        return importlib.import_module("hwtune.surrogate.arch").arch_of_module(module)
    except ValueError:
        return {}


def layers_of(state_dict: Mapping[str, Any]) -> list[Layer]:
    layers: list[Layer] = []
    for key, value in state_dict.items():
        if not key.endswith("weight"):
            continue
        w = _numpy(value)
        if w.ndim not in (2, 4):
            continue
        prefix = key[: -len("weight")]
        bias = state_dict.get(prefix + "bias")
        layers.append(Layer(prefix.rstrip("."), w, None if bias is None else _numpy(bias)))
    if not layers:
        raise ValueError("the state dict has no linear or conv2d weights")
    for a, b in zip(layers, layers[1:]):
        if b.n_in != a.n_out:
            raise ValueError(f"layer {b.name} takes {b.n_in} inputs but {a.name} gives {a.n_out}; "
                             "only chains of linear/conv layers are supported")
    return layers


def param_graph(state_dict: Mapping[str, Any], arch: Mapping[str, Any] | None = None) -> ParamGraph:
    layers = layers_of(state_dict)
    n_layers = len(layers)
    depth = max(1, n_layers - 1)
    # Node ids: block 0 = inputs of layer 0; block l+1 = outputs of layer l; then bias nodes.
    offsets = [0]
    sizes = [layers[0].n_in] + [layer.n_out for layer in layers]
    for size in sizes:
        offsets.append(offsets[-1] + size)
    n_neurons = offsets[-1]
    bias_node = [n_neurons + i for i in range(n_layers)]
    n_nodes = n_neurons + n_layers
    x = np.zeros((n_nodes, NODE_FEATURES))
    for block, size in enumerate(sizes):
        kind = 0 if block == 0 else (2 if block == n_layers else 1)
        x[offsets[block]:offsets[block] + size, kind] = 1.0
        x[offsets[block]:offsets[block] + size, -1] = block / n_layers
    for i, node in enumerate(bias_node):
        x[node, 3] = 1.0
        x[node, -1] = (i + 1) / n_layers

    sources: list[np.ndarray] = []
    targets: list[np.ndarray] = []
    attrs: list[np.ndarray] = []

    def add(src: np.ndarray, dst: np.ndarray, values: np.ndarray, layer: int, etype: str,
            pos: np.ndarray | None = None) -> None:
        a = np.zeros((len(values), EDGE_FEATURES))
        a[:, 0] = values
        a[:, 1] = layer / depth
        a[:, 2 + EDGE_TYPES.index(etype)] = 1.0
        if pos is not None:
            a[:, -2:] = pos
        sources.append(src)
        targets.append(dst)
        attrs.append(a)

    for li, layer in enumerate(layers):
        w = layer.weight
        in_off, out_off = offsets[li], offsets[li + 1]
        if layer.is_conv:
            o, i, kh, kw = np.meshgrid(np.arange(w.shape[0]), np.arange(w.shape[1]),
                                       np.arange(w.shape[2]), np.arange(w.shape[3]), indexing="ij")
            pos = np.stack([_centred(kh.ravel(), w.shape[2]), _centred(kw.ravel(), w.shape[3])], 1)
            add(in_off + i.ravel(), out_off + o.ravel(), w.ravel(), li, "conv", pos)
        else:
            o, i = np.meshgrid(np.arange(w.shape[0]), np.arange(w.shape[1]), indexing="ij")
            add(in_off + i.ravel(), out_off + o.ravel(), w.ravel(), li, "linear")
        if layer.bias is not None:
            outs = np.arange(layer.n_out)
            add(np.full(layer.n_out, bias_node[li]), out_off + outs, layer.bias.ravel(), li, "bias")
    for a, b in (arch or {}).get("residual", []):
        a, b = int(a), int(b)
        if not -1 <= a < b < n_layers:
            raise ValueError(f"arch.residual: bad pair [{a}, {b}] for {n_layers} layers")
        n = sizes[a + 1]
        if sizes[b + 1] != n:
            raise ValueError(f"arch.residual: layer {a} gives {n} outputs, layer {b} {sizes[b + 1]}")
        k = np.arange(n)
        add(offsets[a + 1] + k, offsets[b + 1] + k, np.ones(n), b, "residual")
    return ParamGraph(x=x, edge_index=np.stack([np.concatenate(sources), np.concatenate(targets)]
                                               ).astype(np.int64),
                      edge_attr=np.concatenate(attrs))


def _centred(index: np.ndarray, size: int) -> np.ndarray:
    return np.zeros(len(index)) if size <= 1 else 2.0 * index / (size - 1) - 1.0


def permute_hidden(state_dict: Mapping[str, Any], rng: np.random.Generator,
                   arch: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A copy of ``state_dict`` with the hidden neurons (outputs of every layer but the last)
    permuted at random: rows of the layer's weight and bias, columns of the next layer's. The
    network computes exactly the same function. Layers tied by a residual connection share one
    permutation (their neurons are added one to one). Tensors stay tensors."""
    layers = layers_of(state_dict)
    n = len(layers)
    perms: dict[int, np.ndarray] = {}
    tied: dict[int, int] = {}
    for a, b in (arch or {}).get("residual", []):
        a, b = int(a), int(b)
        if a == -1:  # the input cannot be permuted, so neither can the layer it is added to
            tied[b] = -1
        else:
            tied[b] = tied.get(a, a)
    for li in range(n - 1):
        root = tied.get(li, li)
        if root == -1 or tied.get(root, root) == -1:
            continue
        if root not in perms:
            perms[root] = rng.permutation(layers[li].n_out)
        perms[li] = perms[root]
    out = dict(state_dict)
    for li, layer in enumerate(layers):
        p_out = perms.get(li)
        p_in = perms.get(li - 1) if li > 0 else None
        w = state_dict[f"{layer.name}.weight" if layer.name else "weight"]
        w = _take(w, p_out, 0)
        w = _take(w, p_in, 1)
        out[f"{layer.name}.weight" if layer.name else "weight"] = w
        if layer.bias is not None:
            key = f"{layer.name}.bias" if layer.name else "bias"
            out[key] = _take(state_dict[key], p_out, 0)
    return out


def _take(t: Any, perm: np.ndarray | None, axis: int) -> Any:
    if perm is None:
        return t
    if hasattr(t, "index_select"):  # a torch tensor: index it with its own methods (no import)
        return t[(slice(None),) * axis + (perm.tolist(),)]
    return np.take(np.asarray(t), perm, axis=axis)
