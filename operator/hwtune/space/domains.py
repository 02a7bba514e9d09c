"""Parameter domains: what values one hyperparameter may take, and how to sample, check,
encode and enumerate them.

Four kinds, parsed from the study spec (``parameters.<name>``):

- ``{type: float, min, max, scale: linear|log}``  -> ``FloatDomain``
- ``{type: int, min, max, scale: linear|log}``    -> ``IntDomain``
- ``{type: int|float, values: [...]}``            -> ``OrdinalDomain`` (ordered numbers)
- ``{type: categorical, values: [...]}``          -> ``CategoricalDomain`` (unordered)

Every domain may carry ``default`` and ``condition: {parameter, in: [...]}``.

Encoding for models maps each domain onto columns in [0, 1]: one column for float, int and
ordinal (log scales in log space, ordinals by position), one-hot columns for categoricals.
"""

from __future__ import annotations

import abc
import math
import re
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from hwtune.space.errors import SpecError, join_path

__all__ = [
    "CategoricalDomain",
    "Condition",
    "Domain",
    "FloatDomain",
    "IntDomain",
    "OrdinalDomain",
    "domain_from_model",
    "domain_from_spec",
]

NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")  # the CRD's PARAMETER_NAME


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _is_integral(value: Any) -> bool:
    return _is_number(value) and math.isfinite(float(value)) and float(value).is_integer()


@dataclass(frozen=True)
class Condition:
    """The parameter is active only while ``parameter`` is active and takes one of ``values``."""

    parameter: str
    values: tuple[Any, ...]

    def holds(self, config: Mapping[str, Any]) -> bool:
        return self.parameter in config and config[self.parameter] in self.values

    def to_spec(self) -> dict[str, Any]:
        return {"parameter": self.parameter, "in": list(self.values)}


class Domain(abc.ABC):
    """One parameter's domain. Immutable after construction."""

    type_name: str  # the spec's ``type``

    def __init__(self, name: str, *, default: Any = None, condition: Condition | None = None) -> None:
        self.name = name
        self.condition = condition
        self.default = None if default is None else self.validate(
            default, f"spec.parameters[{name}].default")

    # -- values ---------------------------------------------------------------------------------
    @abc.abstractmethod
    def sample(self, rng: np.random.Generator) -> Any:
        """One value drawn with ``rng`` (uniform, or log-uniform on a log scale)."""

    @abc.abstractmethod
    def validate(self, value: Any, path: str) -> Any:
        """``value`` as this domain's canonical Python type; ``SpecError(path, ...)`` if it does
        not belong to the domain."""

    @abc.abstractmethod
    def grid(self, points: int) -> list[Any]:
        """Values for grid search: every choice of a categorical or ordinal domain; for ranges,
        ``points`` values evenly spread in the scale's space (all of an int range that has no
        more than ``points`` values)."""

    @property
    def size(self) -> int | None:
        """How many distinct values, or None when continuous."""
        return None

    # -- encoding -------------------------------------------------------------------------------
    @property
    def width(self) -> int:
        """Columns this domain takes in an encoded vector."""
        return 1

    @abc.abstractmethod
    def encode(self, value: Any, out: np.ndarray) -> None:
        """Write ``value``'s encoding (in [0, 1]) into ``out`` (``width`` columns)."""

    @abc.abstractmethod
    def decode(self, columns: np.ndarray) -> Any:
        """The value whose encoding is nearest ``columns`` (clipped to [0, 1])."""

    # -- spec -----------------------------------------------------------------------------------
    @abc.abstractmethod
    def _spec_fields(self) -> dict[str, Any]: ...

    def to_spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"type": self.type_name, **self._spec_fields()}
        if self.default is not None:
            spec["default"] = self.default
        if self.condition is not None:
            spec["condition"] = self.condition.to_spec()
        return spec

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.to_spec() == other.to_spec() and self.name == other.name  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self), self.name, repr(self.to_spec())))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {self._spec_fields()!r})"


class _RangeDomain(Domain):
    """Shared by float and int ranges: bounds and a linear or log scale."""

    def __init__(self, name: str, low: float, high: float, log: bool, **kwargs: Any) -> None:
        path = f"spec.parameters[{name}]"
        if not low < high:
            raise SpecError(join_path(path, "max"), f"must be > min ({low}), got {high}")
        if log and low <= 0:
            raise SpecError(join_path(path, "min"), f"must be > 0 for scale: log, got {low}")
        self.low, self.high, self.log = low, high, log
        self._t_low = math.log(low) if log else float(low)
        self._t_span = (math.log(high) if log else float(high)) - self._t_low
        super().__init__(name, **kwargs)

    def _to_unit(self, value: float) -> float:
        t = math.log(value) if self.log else float(value)
        return min(1.0, max(0.0, (t - self._t_low) / self._t_span))

    def _from_unit(self, x: float) -> float:
        t = self._t_low + min(1.0, max(0.0, float(x))) * self._t_span
        return math.exp(t) if self.log else t

    def encode(self, value: Any, out: np.ndarray) -> None:
        out[0] = self._to_unit(value)

    def _check_number(self, value: Any, path: str) -> float:
        if not _is_number(value) or not math.isfinite(float(value)):
            raise SpecError(path, f"must be a finite number, got {value!r}")
        if not self.low <= value <= self.high:
            raise SpecError(path, f"must be in [{self.low}, {self.high}], got {value!r}")
        return float(value)

    def _spec_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {"min": self.low, "max": self.high}
        if self.log:
            fields["scale"] = "log"
        return fields


class FloatDomain(_RangeDomain):
    type_name = "float"

    def __init__(self, name: str, low: float, high: float, *, log: bool = False, **kwargs: Any) -> None:
        super().__init__(name, float(low), float(high), log, **kwargs)

    def sample(self, rng: np.random.Generator) -> float:
        # Clip: exp(log(x)) can land a hair outside the bounds.
        return min(self.high, max(self.low, self._from_unit(rng.random())))

    def validate(self, value: Any, path: str) -> float:
        return self._check_number(value, path)

    def decode(self, columns: np.ndarray) -> float:
        return min(self.high, max(self.low, self._from_unit(columns[0])))

    def grid(self, points: int) -> list[float]:
        if points == 1:
            return [self._from_unit(0.5)]
        return [min(self.high, max(self.low, self._from_unit(i / (points - 1)))) for i in range(points)]


class IntDomain(_RangeDomain):
    type_name = "int"

    def __init__(self, name: str, low: int, high: int, *, log: bool = False, **kwargs: Any) -> None:
        super().__init__(name, int(low), int(high), log, **kwargs)

    @property
    def size(self) -> int:
        return int(self.high - self.low + 1)

    def sample(self, rng: np.random.Generator) -> int:
        if not self.log:
            return int(rng.integers(self.low, self.high + 1))
        # Discrete log-uniform: floor of a log-uniform draw on [low, high + 1), so k is drawn
        # with probability log((k+1)/k) / log((high+1)/low).
        lo, hi = math.log(self.low), math.log(self.high + 1)
        return int(min(self.high, max(self.low, math.floor(math.exp(lo + rng.random() * (hi - lo))))))

    def validate(self, value: Any, path: str) -> int:
        if not _is_integral(value):
            raise SpecError(path, f"must be an integer, got {value!r}")
        return int(self._check_number(value, path))

    def decode(self, columns: np.ndarray) -> int:
        return int(min(self.high, max(self.low, round(self._from_unit(columns[0])))))

    def grid(self, points: int) -> list[int]:
        if self.size <= points:
            return list(range(int(self.low), int(self.high) + 1))
        raw = [round(self._from_unit(i / (points - 1))) if points > 1 else round(self._from_unit(0.5))
               for i in range(points)]
        return sorted({int(min(self.high, max(self.low, v))) for v in raw})


class OrdinalDomain(Domain):
    """Ordered numeric choices (``{type: int, values: [64, 128, 256]}``). Sampled uniformly over
    the choices; encoded by position, so neighbours are close for a model."""

    def __init__(self, name: str, values: Sequence[Any], *, integer: bool, **kwargs: Any) -> None:
        path = f"spec.parameters[{name}].values"
        if not values:
            raise SpecError(path, "must list at least one value")
        clean = []
        for i, v in enumerate(values):
            if integer and not _is_integral(v):
                raise SpecError(f"{path}[{i}]", f"must be an integer for type int, got {v!r}")
            if not _is_number(v) or not math.isfinite(float(v)):
                raise SpecError(f"{path}[{i}]", f"must be a finite number, got {v!r}")
            clean.append(int(v) if integer else float(v))
        if len(set(clean)) != len(clean):
            raise SpecError(path, f"values must be unique, got {list(values)!r}")
        self.integer = integer
        self.values: tuple[Any, ...] = tuple(sorted(clean))
        super().__init__(name, **kwargs)

    @property
    def type_name(self) -> str:  # type: ignore[override]
        return "int" if self.integer else "float"

    @property
    def size(self) -> int:
        return len(self.values)

    def sample(self, rng: np.random.Generator) -> Any:
        return self.values[int(rng.integers(len(self.values)))]

    def validate(self, value: Any, path: str) -> Any:
        if _is_number(value):
            canonical = int(value) if self.integer and _is_integral(value) else float(value)
            if canonical in self.values:
                return canonical
        raise SpecError(path, f"must be one of {list(self.values)}, got {value!r}")

    def encode(self, value: Any, out: np.ndarray) -> None:
        k = len(self.values)
        out[0] = 0.5 if k == 1 else self.values.index(value) / (k - 1)

    def decode(self, columns: np.ndarray) -> Any:
        k = len(self.values)
        x = min(1.0, max(0.0, float(columns[0])))
        return self.values[int(round(x * (k - 1)))]

    def grid(self, points: int) -> list[Any]:
        return list(self.values)

    def _spec_fields(self) -> dict[str, Any]:
        return {"values": list(self.values)}


class CategoricalDomain(Domain):
    """Unordered choices, one-hot encoded."""

    type_name = "categorical"

    def __init__(self, name: str, values: Sequence[Any], **kwargs: Any) -> None:
        path = f"spec.parameters[{name}].values"
        if not values:
            raise SpecError(path, "must list at least one value")
        for i, v in enumerate(values):
            if not isinstance(v, (str, int, float, bool)) or (isinstance(v, float) and not math.isfinite(v)):
                raise SpecError(f"{path}[{i}]", f"must be a string, number or boolean, got {v!r}")
        # Compare by (type, value): True == 1 in Python, but they are different choices.
        keys = [(type(v).__name__, v) for v in values]
        if len(set(keys)) != len(keys):
            raise SpecError(path, f"values must be unique, got {list(values)!r}")
        self.values: tuple[Any, ...] = tuple(values)
        self._index = {k: i for i, k in enumerate(keys)}
        super().__init__(name, **kwargs)

    @property
    def size(self) -> int:
        return len(self.values)

    @property
    def width(self) -> int:
        return len(self.values)

    def index(self, value: Any) -> int:
        return self._index[(type(value).__name__, value)]

    def sample(self, rng: np.random.Generator) -> Any:
        return self.values[int(rng.integers(len(self.values)))]

    def validate(self, value: Any, path: str) -> Any:
        key = (type(value).__name__, value)
        if key in self._index:
            return value
        # YAML may give 1 where the values list says 1.0 (or the reverse): accept equal numbers.
        if _is_number(value):
            for v in self.values:
                if _is_number(v) and float(v) == float(value):
                    return v
        raise SpecError(path, f"must be one of {list(self.values)}, got {value!r}")

    def encode(self, value: Any, out: np.ndarray) -> None:
        out[:] = 0.0
        out[self.index(value)] = 1.0

    def decode(self, columns: np.ndarray) -> Any:
        return self.values[int(np.argmax(columns))]

    def grid(self, points: int) -> list[Any]:
        return list(self.values)

    def _spec_fields(self) -> dict[str, Any]:
        return {"values": list(self.values)}


def domain_from_model(name: str, p: Any) -> Domain:
    """One validated ``hwtune.api.crd.ParameterSpec`` as a domain: the CRD model has checked
    every field, so nothing here validates the spec again."""
    from hwtune.api.crd import ParameterType, Scale

    condition = (Condition(p.condition.parameter, tuple(p.condition.in_))
                 if p.condition is not None else None)
    common: dict[str, Any] = {"default": p.default, "condition": condition}
    if p.type is ParameterType.CATEGORICAL:
        return CategoricalDomain(name, p.values, **common)
    if p.values is not None:
        return OrdinalDomain(name, p.values, integer=p.type is ParameterType.INT, **common)
    if p.step is not None:  # a stepped range is its grid, ordered
        return OrdinalDomain(name, p.step_values(), integer=p.type is ParameterType.INT, **common)
    log = p.scale is Scale.LOG
    if p.type is ParameterType.INT:
        return IntDomain(name, int(p.min), int(p.max), log=log, **common)
    return FloatDomain(name, p.min, p.max, log=log, **common)


def domain_from_spec(name: str, spec: Any, path: str) -> Domain:
    """Parse one ``parameters.<name>`` map: validated by the CRD's ``ParameterSpec`` (the same
    rules and messages as ``hwtune validate`` and the API server), then ``domain_from_model``.
    The condition's parent is checked by the space."""
    from hwtune.api.crd import PARAMETER_NAME, ParameterSpec, parse_spec

    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise SpecError(path, f"parameter names must match {PARAMETER_NAME}, got {name!r}")
    return domain_from_model(name, parse_spec(ParameterSpec, spec, prefix=path))
