"""The simulated node pools of the local control plane, read from ``hack/cluster/nodes.yaml``.

That file is the single description of the pools; this module parses and validates it and
renders the Node objects, so ``hack/cluster.sh``, ``hack/kind/up.sh``, the cluster tests and
the docs all agree. Only the standard library and PyYAML are used: the shell scripts run it
with whatever ``python3`` is at hand.

Command line (used by the scripts)::

    python -m hwtune.testing.nodes render [--file F] [--scale POOL=N ...]
        # a v1 List of KWOK Nodes, JSON; --scale gives POOL N nodes (benchmarks: 500 GPU nodes)
    python -m hwtune.testing.nodes names  [--file F]          # "<pool> <node>" per line
    python -m hwtune.testing.nodes patch POOL [--status] [--file F]
        # a merge patch that makes an existing (kind) node look like a node of POOL:
        # labels + taints, or with --status the nvidia.com/gpu capacity/allocatable
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import sys
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

from hwtune.testing._paths import repo_root

__all__ = [
    "GPU_RESOURCE",
    "GPU_TAINT",
    "KWOK_NODE_ANNOTATION",
    "POOL_LABEL",
    "GPUSpec",
    "NodePool",
    "NodePoolFileError",
    "default_nodes_file",
    "load_node_pools",
    "quantity_value",
    "render_nodes",
    "repo_root",
    "scale_pools",
]

GPU_RESOURCE = "nvidia.com/gpu"
POOL_LABEL = "hwtune.io/pool"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
GPU_COUNT_LABEL = "nvidia.com/gpu.count"
GPU_MEMORY_LABEL = "nvidia.com/gpu.memory"
INSTANCE_TYPE_LABEL = "node.kubernetes.io/instance-type"
GPU_TAINT: dict[str, str] = {"key": GPU_RESOURCE, "value": "present", "effect": "NoSchedule"}
KWOK_NODE_ANNOTATION = ("kwok.x-k8s.io/node", "fake")

_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# Kubernetes resource quantities as people write them for nodes: 4, 0.5, 500m, 16Gi, 1.5T.
_QUANTITY_RE = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|Ki|Mi|Gi|Ti|Pi)?$")
# Label values: at most 63 characters, alphanumerics with -_. inside.
_LABEL_VALUE_RE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")


_SUFFIX_FACTORS = {
    "": Decimal(1), "m": Decimal("0.001"),
    "k": Decimal(10) ** 3, "M": Decimal(10) ** 6, "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12, "P": Decimal(10) ** 15,
    "Ki": Decimal(2) ** 10, "Mi": Decimal(2) ** 20, "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40, "Pi": Decimal(2) ** 50,
}


def quantity_value(quantity: str) -> Decimal:
    """The number a Kubernetes quantity stands for, so "2048Gi" equals the API's "2Ti"."""
    match = _QUANTITY_RE.match(quantity)
    if not match:
        raise ValueError(f"not a Kubernetes quantity: {quantity!r}")
    suffix = match.group(2) or ""
    return Decimal(quantity[: len(quantity) - len(suffix)]) * _SUFFIX_FACTORS[suffix]


class NodePoolFileError(ValueError):
    """The node pool file is malformed; the message names the file, the field and the reason."""


def default_nodes_file() -> Path:
    """``$HWTUNE_NODES_FILE`` if set, else the repository's ``hack/cluster/nodes.yaml``."""
    override = os.environ.get("HWTUNE_NODES_FILE")
    return Path(override) if override else repo_root() / "hack" / "cluster" / "nodes.yaml"


@dataclass(frozen=True)
class GPUSpec:
    """The GPUs of every node in a pool."""

    product: str
    count: int
    memory_mib: int


@dataclass(frozen=True)
class NodePool:
    """One pool of identical simulated nodes."""

    name: str
    nodes: int
    instance_type: str
    cpu: str
    memory: str
    pods: int
    gpu: GPUSpec | None
    name_prefix: str = "kwok-"

    @property
    def gpus_per_node(self) -> int:
        return self.gpu.count if self.gpu else 0

    @property
    def node_names(self) -> tuple[str, ...]:
        return tuple(f"{self.name_prefix}{self.name}-{i}" for i in range(self.nodes))

    @property
    def pool_labels(self) -> dict[str, str]:
        """The labels that say which pool and hardware a node belongs to (no per-node ones)."""
        labels = {
            POOL_LABEL: self.name,
            INSTANCE_TYPE_LABEL: self.instance_type,
        }
        if self.gpu:
            labels[GPU_PRODUCT_LABEL] = self.gpu.product
            labels[GPU_COUNT_LABEL] = str(self.gpu.count)
            labels[GPU_MEMORY_LABEL] = str(self.gpu.memory_mib)
        return labels

    @property
    def taints(self) -> list[dict[str, str]]:
        # GPU nodes repel pods that did not ask for GPUs, as managed GPU pools usually do.
        return [dict(GPU_TAINT)] if self.gpu else []

    @property
    def capacity(self) -> dict[str, str]:
        capacity = {"cpu": self.cpu, "memory": self.memory, "pods": str(self.pods)}
        if self.gpu:
            capacity[GPU_RESOURCE] = str(self.gpu.count)
        return capacity

    def node_labels(self, node_name: str) -> dict[str, str]:
        return {
            **self.pool_labels,
            "type": "kwok",
            "kubernetes.io/hostname": node_name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
        }

    def render(self) -> list[dict[str, Any]]:
        """The KWOK Node objects of this pool."""
        return [
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": node,
                    "labels": self.node_labels(node),
                    "annotations": {KWOK_NODE_ANNOTATION[0]: KWOK_NODE_ANNOTATION[1]},
                },
                "spec": {"taints": self.taints},
                "status": {
                    "capacity": self.capacity,
                    "allocatable": self.capacity,
                },
            }
            for node in self.node_names
        ]


def _require(mapping: dict[str, Any], key: str, where: str) -> Any:
    if key not in mapping or mapping[key] is None:
        raise NodePoolFileError(f"{where}.{key}: required")
    return mapping[key]


def _int_at_least(value: Any, minimum: int, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise NodePoolFileError(f"{where}: must be an integer >= {minimum}, got {value!r}")
    return value


def _quantity(value: Any, where: str) -> str:
    text = str(value) if isinstance(value, (int, str)) and not isinstance(value, bool) else None
    if text is None or not _QUANTITY_RE.match(text):
        raise NodePoolFileError(
            f"{where}: must be a Kubernetes quantity such as 16, 500m or 64Gi, got {value!r}"
        )
    return text


def _label_value(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value or not _LABEL_VALUE_RE.match(value):
        raise NodePoolFileError(
            f"{where}: must be a non-empty label value (<= 63 of A-Z a-z 0-9 - _ .), got {value!r}"
        )
    return value


def _parse_pool(raw: Any, where: str, name_prefix: str) -> NodePool:
    if not isinstance(raw, dict):
        raise NodePoolFileError(f"{where}: must be a mapping, got {type(raw).__name__}")
    known = {"name", "nodes", "instanceType", "cpu", "memory", "pods", "gpu"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise NodePoolFileError(f"{where}: unknown field(s) {unknown}; known: {sorted(known)}")
    name = _require(raw, "name", where)
    if not isinstance(name, str) or not _NAME_RE.match(name) or len(name) > 40:
        raise NodePoolFileError(
            f"{where}.name: must be a lowercase DNS label of at most 40 characters, got {name!r}"
        )
    gpu = None
    if raw.get("gpu") is not None:
        raw_gpu = raw["gpu"]
        gwhere = f"{where}.gpu"
        if not isinstance(raw_gpu, dict):
            raise NodePoolFileError(f"{gwhere}: must be a mapping with product, count, memoryMiB")
        gpu = GPUSpec(
            product=_label_value(_require(raw_gpu, "product", gwhere), f"{gwhere}.product"),
            count=_int_at_least(_require(raw_gpu, "count", gwhere), 1, f"{gwhere}.count"),
            memory_mib=_int_at_least(
                _require(raw_gpu, "memoryMiB", gwhere), 1, f"{gwhere}.memoryMiB"
            ),
        )
    return NodePool(
        name=name,
        nodes=_int_at_least(_require(raw, "nodes", where), 1, f"{where}.nodes"),
        instance_type=_label_value(
            _require(raw, "instanceType", where), f"{where}.instanceType"
        ),
        cpu=_quantity(_require(raw, "cpu", where), f"{where}.cpu"),
        memory=_quantity(_require(raw, "memory", where), f"{where}.memory"),
        pods=_int_at_least(raw.get("pods", 110), 1, f"{where}.pods"),
        gpu=gpu,
        name_prefix=name_prefix,
    )


def load_node_pools(path: str | os.PathLike[str] | None = None) -> list[NodePool]:
    """Parse and validate the node pool file (default: :func:`default_nodes_file`)."""
    file = Path(path) if path is not None else default_nodes_file()
    try:
        document = yaml.safe_load(file.read_text())
    except OSError as exc:
        raise NodePoolFileError(f"{file}: cannot read: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise NodePoolFileError(f"{file}: not valid YAML: {exc}") from exc
    if not isinstance(document, dict):
        raise NodePoolFileError(f"{file}: must be a mapping with a 'pools' list")
    prefix = document.get("namePrefix", "kwok-")
    if not isinstance(prefix, str) or (prefix and not re.match(r"^[a-z0-9][-a-z0-9]*$", prefix)):
        raise NodePoolFileError(
            f"{file}: namePrefix: must be lowercase DNS characters, got {prefix!r}"
        )
    raw_pools = document.get("pools")
    if not isinstance(raw_pools, list) or not raw_pools:
        raise NodePoolFileError(f"{file}: pools: must be a non-empty list")
    pools = [_parse_pool(raw, f"{file}: pools[{i}]", prefix) for i, raw in enumerate(raw_pools)]
    seen: set[str] = set()
    for i, pool in enumerate(pools):
        if pool.name in seen:
            raise NodePoolFileError(f"{file}: pools[{i}].name: duplicate pool name {pool.name!r}")
        seen.add(pool.name)
    return pools


def render_nodes(pools: list[NodePool]) -> dict[str, Any]:
    """All nodes of all pools as one ``v1 List`` (what ``kubectl apply -f -`` takes)."""
    return {"apiVersion": "v1", "kind": "List", "items": [n for p in pools for n in p.render()]}


def scale_pools(pools: list[NodePool], sizes: dict[str, int]) -> list[NodePool]:
    """The pools with ``sizes[pool]`` nodes each (others unchanged). Node names stay
    ``<prefix><pool>-<i>``, so applying a larger pool adds nodes and keeps the existing ones."""
    known = {p.name for p in pools}
    for name, count in sizes.items():
        if name not in known:
            raise NodePoolFileError(f"pool {name!r} is not defined; known pools: {sorted(known)}")
        _int_at_least(count, 1, f"--scale {name}")
    return [dataclasses.replace(p, nodes=sizes.get(p.name, p.nodes)) for p in pools]


def _scale_arg(text: str) -> tuple[str, int]:
    name, _, count = text.partition("=")
    if not name or not count.isdigit():
        raise argparse.ArgumentTypeError(f"expected POOL=N, got {text!r}")
    return name, int(count)


def _pool_by_name(pools: list[NodePool], name: str) -> NodePool:
    for pool in pools:
        if pool.name == name:
            return pool
    raise NodePoolFileError(f"pool {name!r} is not defined; known pools: {[p.name for p in pools]}")


def _kind_patch(pool: NodePool, status: bool) -> dict[str, Any]:
    """Merge patch that turns a real (kind) node into a node of ``pool``.

    Real nodes keep their own cpu/memory/pods: only the GPU capacity is faked.
    """
    if status:
        gpus = {GPU_RESOURCE: str(pool.gpus_per_node)} if pool.gpu else {}
        return {"status": {"capacity": gpus, "allocatable": gpus}}
    return {"metadata": {"labels": pool.pool_labels}, "spec": {"taints": pool.taints}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hwtune.testing.nodes", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["render", "names", "patch"])
    parser.add_argument("pool", nargs="?", help="pool name (patch only)")
    parser.add_argument("--status", action="store_true", help="patch: the status part")
    parser.add_argument("--file", help="node pool file (default: hack/cluster/nodes.yaml)")
    parser.add_argument("--scale", type=_scale_arg, action="append", default=[],
                        metavar="POOL=N", help="render: POOL with N nodes (repeatable)")
    args = parser.parse_args(argv)
    try:
        pools = scale_pools(load_node_pools(args.file), dict(args.scale))
        if args.command == "render":
            json.dump(render_nodes(pools), sys.stdout, indent=1)
            sys.stdout.write("\n")
        elif args.command == "names":
            for pool in pools:
                for node in pool.node_names:
                    print(pool.name, node)
        else:
            if not args.pool:
                parser.error("patch needs a POOL argument")
            json.dump(_kind_patch(_pool_by_name(pools, args.pool), args.status), sys.stdout)
            sys.stdout.write("\n")
    except NodePoolFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
