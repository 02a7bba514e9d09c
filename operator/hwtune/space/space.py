"""``SearchSpace``: named domains with conditions.

A config is a plain dict ``{name: value}`` holding exactly the *active* parameters: a parameter
with a condition is active when its parent is active and takes one of the listed values;
inactive parameters are absent (not None). ``validate`` enforces this, ``sample`` and ``grid``
produce only such configs, and ``encode`` turns one into a fixed-width vector in [0, 1]^dim with a
mask (inactive columns are 0 and masked out) for model-based searchers.
"""

from __future__ import annotations

import math
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from hwtune.space.domains import Condition, Domain, domain_from_spec
from hwtune.space.errors import SpecError, join_key, join_path

__all__ = ["SearchSpace", "config_key"]


def config_key(config: Mapping[str, Any]) -> tuple:
    """A hashable, order-independent identity of a config (for dedupe). Values keep their type
    so the category ``True`` and the number ``1`` differ."""
    return tuple(sorted((k, type(v).__name__, v) for k, v in config.items()))


class SearchSpace:
    """Domains in spec order, with conditions resolved. Build with ``from_spec`` or from
    ``Domain`` objects."""

    def __init__(self, domains: Sequence[Domain], *, path: str = "spec.parameters") -> None:
        if not domains:
            raise SpecError(path, "must define at least one parameter")
        self._domains: dict[str, Domain] = {}
        for d in domains:
            if d.name in self._domains:
                raise SpecError(join_key(path, d.name), "is defined twice")
            self._domains[d.name] = d
        self._check_conditions(path)
        self._order = self._topological_order(path)
        # Column layout of the encoding, in spec order.
        self._slices: dict[str, slice] = {}
        start = 0
        for d in self._domains.values():
            self._slices[d.name] = slice(start, start + d.width)
            start += d.width
        self.dim = start

    @classmethod
    def from_spec(cls, spec: Any, path: str = "spec.parameters") -> "SearchSpace":
        """Parse a study's ``parameters`` map (name -> domain spec), each validated by the CRD's
        ParameterSpec (``hwtune.api.crd``)."""
        if not isinstance(spec, Mapping):
            raise SpecError(path, f"must be a map of parameter name -> domain, got {type(spec).__name__}")
        return cls([domain_from_spec(name, s, join_key(path, name)) for name, s in spec.items()],
                   path=path)

    def to_spec(self) -> dict[str, dict[str, Any]]:
        return {name: d.to_spec() for name, d in self._domains.items()}

    # -- structure ------------------------------------------------------------------------------
    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._domains)

    @property
    def domains(self) -> Mapping[str, Domain]:
        return dict(self._domains)

    def __getitem__(self, name: str) -> Domain:
        return self._domains[name]

    def __len__(self) -> int:
        return len(self._domains)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SearchSpace) and self.to_spec() == other.to_spec()

    def __repr__(self) -> str:
        return f"SearchSpace({', '.join(repr(d) for d in self._domains.values())})"

    def column_slice(self, name: str) -> slice:
        """Where parameter ``name`` sits in an encoded vector."""
        return self._slices[name]

    def _check_conditions(self, path: str) -> None:
        for d in self._domains.values():
            if d.condition is None:
                continue
            cpath = join_path(join_key(path, d.name), "condition")
            parent = self._domains.get(d.condition.parameter)
            if parent is None:
                raise SpecError(join_path(cpath, "parameter"),
                                f"names unknown parameter {d.condition.parameter!r}")
            if parent is d:
                raise SpecError(join_path(cpath, "parameter"), "a parameter cannot depend on itself")
            canonical = tuple(parent.validate(v, f"{join_path(cpath, 'in')}[{i}]")
                              for i, v in enumerate(d.condition.values))
            d.condition = Condition(parent.name, canonical)

    def _topological_order(self, path: str) -> tuple[str, ...]:
        order: list[str] = []
        state: dict[str, int] = {}  # 1 = visiting, 2 = done

        def visit(name: str, chain: tuple[str, ...]) -> None:
            if state.get(name) == 2:
                return
            if state.get(name) == 1:
                cycle = " -> ".join(chain + (name,))
                raise SpecError(join_path(join_key(path, name), "condition"),
                                f"conditions form a cycle: {cycle}")
            state[name] = 1
            cond = self._domains[name].condition
            if cond is not None:
                visit(cond.parameter, chain + (name,))
            state[name] = 2
            order.append(name)

        for name in self._domains:
            visit(name, ())
        return tuple(order)

    def is_active(self, name: str, config: Mapping[str, Any]) -> bool:
        """Whether ``name`` is active given the (other) values in ``config``."""
        cond = self._domains[name].condition
        return cond is None or (self.is_active(cond.parameter, config) and cond.holds(config))

    # -- configs --------------------------------------------------------------------------------
    def validate(self, config: Any, path: str = "config") -> dict[str, Any]:
        """The config with canonical values, in spec order. Raises ``SpecError`` naming
        ``<path>.<name>`` for an unknown name, a missing active parameter, a present inactive
        one, or a value outside its domain."""
        if not isinstance(config, Mapping):
            raise SpecError(path, f"must be a map of parameter -> value, got {type(config).__name__}")
        unknown = sorted(str(k) for k in config if k not in self._domains)
        if unknown:
            raise SpecError(join_path(path, unknown[0]), "is not a parameter of this search space")
        clean: dict[str, Any] = {}
        for name in self._order:
            if not self.is_active(name, clean):
                if name in config:
                    cond = self._domains[name].condition
                    assert cond is not None
                    raise SpecError(join_path(path, name),
                                    f"is inactive (it applies only when {cond.parameter} is in "
                                    f"{list(cond.values)}); leave it out")
                continue
            if name not in config:
                raise SpecError(join_path(path, name), "is missing")
            clean[name] = self._domains[name].validate(config[name], join_path(path, name))
        return {name: clean[name] for name in self._domains if name in clean}

    def sample(self, rng: np.random.Generator) -> dict[str, Any]:
        """A random config: each active parameter drawn from its domain."""
        config: dict[str, Any] = {}
        for name in self._order:
            if self.is_active(name, config):
                config[name] = self._domains[name].sample(rng)
        return {name: config[name] for name in self._domains if name in config}

    def default_config(self) -> dict[str, Any]:
        """Each parameter's ``default``, or the middle of its encoding when it has none."""
        config: dict[str, Any] = {}
        for name in self._order:
            if self.is_active(name, config):
                d = self._domains[name]
                config[name] = d.default if d.default is not None else d.decode(np.full(d.width, 0.5))
        return {name: config[name] for name in self._domains if name in config}

    def grid(self, points_per_dim: int = 5) -> Iterator[dict[str, Any]]:
        """Every config of the grid: every choice of categorical and ordinal parameters,
        ``points_per_dim`` evenly spread values (in the scale's space) of float and int ranges.
        Inactive parameters do not multiply the grid. Order: the first parameter varies
        slowest."""
        if points_per_dim < 1:
            raise ValueError(f"points_per_dim must be >= 1, got {points_per_dim}")
        values = {name: d.grid(points_per_dim) for name, d in self._domains.items()}
        order = self._order

        def expand(i: int, partial: dict[str, Any]) -> Iterator[dict[str, Any]]:
            if i == len(order):
                yield {name: partial[name] for name in self._domains if name in partial}
                return
            name = order[i]
            if not self.is_active(name, partial):
                yield from expand(i + 1, partial)
                return
            for v in values[name]:
                partial[name] = v
                yield from expand(i + 1, partial)
            del partial[name]

        yield from expand(0, {})

    def grid_size(self, points_per_dim: int = 5) -> int:
        if all(d.condition is None for d in self._domains.values()):
            return math.prod(len(d.grid(points_per_dim)) for d in self._domains.values())
        return sum(1 for _ in self.grid(points_per_dim))

    @property
    def size(self) -> int | None:
        """How many distinct configs exist, or None when some active domain is continuous."""
        sizes = [d.size for d in self._domains.values()]
        if any(n is None for n in sizes):
            return None
        # With as many points as the largest domain has values, the grid holds every config.
        return self.grid_size(max(sizes))  # type: ignore[type-var]

    # -- encoding -------------------------------------------------------------------------------
    def encode(self, config: Mapping[str, Any]) -> np.ndarray:
        """A ``dim``-vector in [0, 1]; inactive parameters' columns are 0 (see ``active_mask``).
        ``config`` must be valid (``validate`` it first when it comes from outside)."""
        out = np.zeros(self.dim, dtype=float)
        for name, d in self._domains.items():
            if name in config:
                d.encode(config[name], out[self._slices[name]])
        return out

    def active_mask(self, config: Mapping[str, Any]) -> np.ndarray:
        """Boolean ``dim``-vector: True on the columns of the config's active parameters."""
        mask = np.zeros(self.dim, dtype=bool)
        for name in config:
            mask[self._slices[name]] = True
        return mask

    def encode_many(self, configs: Sequence[Mapping[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
        """(n x dim values, n x dim mask)."""
        x = np.zeros((len(configs), self.dim), dtype=float)
        m = np.zeros((len(configs), self.dim), dtype=bool)
        for i, c in enumerate(configs):
            x[i] = self.encode(c)
            m[i] = self.active_mask(c)
        return x, m

    def decode(self, vector: Sequence[float] | np.ndarray) -> dict[str, Any]:
        """The config nearest ``vector`` (values clipped to [0, 1]); conditions decide which
        parameters appear, so the result always validates."""
        vector = np.asarray(vector, dtype=float)
        if vector.shape != (self.dim,):
            raise ValueError(f"expected a vector of {self.dim} values, got shape {vector.shape}")
        config: dict[str, Any] = {}
        for name in self._order:
            if self.is_active(name, config):
                config[name] = self._domains[name].decode(vector[self._slices[name]])
        return {name: config[name] for name in self._domains if name in config}
