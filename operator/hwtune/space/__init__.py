"""Search spaces: parameter domains, conditions, sampling, validation, encoding and grids."""

from hwtune.space.domains import (
    CategoricalDomain,
    Condition,
    Domain,
    FloatDomain,
    IntDomain,
    OrdinalDomain,
    domain_from_model,
    domain_from_spec,
)
from hwtune.space.errors import SpecError
from hwtune.space.space import SearchSpace, config_key

__all__ = [
    "CategoricalDomain",
    "Condition",
    "Domain",
    "FloatDomain",
    "IntDomain",
    "OrdinalDomain",
    "SearchSpace",
    "SpecError",
    "config_key",
    "domain_from_model",
    "domain_from_spec",
]
