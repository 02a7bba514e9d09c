"""Finding a network's residual connections by tracing its forward pass (torch.fx), so that
a checkpoint holding the module needs no architecture hint (``hwtune.surrogate.graph``)."""

from __future__ import annotations

import operator
from typing import Any

import torch
from torch import fx

from hwtune.surrogate.graph import layers_of

__all__ = ["arch_of_module"]


def arch_of_module(module: Any) -> dict[str, Any]:
    """The residual connections of ``module`` (an ``nn.Module``), found by tracing its forward
    pass (torch.fx): every ``a + b`` whose operands come from two different linear/conv layers
    (through element-wise functions such as ReLU), or from one layer and the network input,
    is a skip ``[earlier, later]`` in ``layers_of`` order. ``{}`` for a plain chain; a
    ``ValueError`` naming the reason when the module cannot be traced."""
    names = [layer.name for layer in layers_of(module.state_dict())]
    index = {name: i for i, name in enumerate(names)}
    try:
        graph = fx.symbolic_trace(module).graph
    except Exception as exc:  # data-dependent control flow and the like
        raise ValueError(f"cannot trace the model to find its residual connections: {exc}") from None
    adds = {operator.add, operator.iadd, torch.add}
    source: dict[Any, int | None] = {}  # fx node -> the layer whose neurons it carries (-1: input)
    residual: list[list[int]] = []
    for node in graph.nodes:
        tensor_args = [a for a in node.args if isinstance(a, fx.Node)]
        if node.op == "placeholder":
            source[node] = -1
        elif node.op == "call_module" and node.target in index:
            source[node] = index[node.target]
        elif (node.op == "call_function" and node.target in adds) or \
                (node.op == "call_method" and node.target in ("add", "add_", "__add__")):
            found = [source.get(a) for a in tensor_args]
            if len(found) == 2 and None not in found and found[0] != found[1]:
                a, b = sorted(found)
                residual.append([a, b])
                source[node] = b  # the sum carries the later layer's neurons
            else:
                source[node] = None
        elif len(tensor_args) == 1:
            # Element-wise and shape functions keep the neurons of their input (ReLU, dropout,
            # pooling, flatten); a layer that is not linear/conv (norms) does too.
            source[node] = source.get(tensor_args[0])
        else:
            source[node] = None
    return {"residual": residual} if residual else {}
