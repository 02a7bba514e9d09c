"""Searchers propose (config, hardware) pairs; schedulers own one. ``make_searcher`` builds one
by name; model-based searchers (dyhpo, fms, transfer) register themselves with
``register_searcher`` when their package is imported."""

from __future__ import annotations

import importlib
from typing import Any, Callable, Mapping, Sequence

from hwtune.api.records import Hardware
from hwtune.optimize.searchers.base import Searcher
from hwtune.optimize.searchers.grid import GridSearcher
from hwtune.optimize.searchers.random import RandomSearcher
from hwtune.space import SearchSpace

__all__ = ["GridSearcher", "RandomSearcher", "Searcher", "make_searcher", "register_searcher",
           "searcher_names"]

SearcherFactory = Callable[..., Searcher]

# name -> factory(space, hardware, seed, settings, **kwargs)
_REGISTRY: dict[str, SearcherFactory] = {}
# Where searchers of other packages live; importing the module registers them.
_PROVIDERS = {"dyhpo": "hwtune.surrogate", "fms": "hwtune.surrogate", "fms-flat": "hwtune.surrogate",
              "fms-nocurve": "hwtune.surrogate", "transfer": "hwtune.transfer"}


def register_searcher(name: str, factory: SearcherFactory) -> None:
    """Make ``make_searcher(name, ...)`` call ``factory(space, hardware, seed, settings, **kwargs)``."""
    _REGISTRY[name] = factory


def searcher_names() -> tuple[str, ...]:
    return tuple(sorted(_REGISTRY))


def _setting(settings: Mapping[str, Any], key: str, default: Any) -> Any:
    return settings.get(key, default) if settings else default


def _random(space, hardware, seed, settings, *, candidates=None, **_: Any) -> Searcher:
    return RandomSearcher(space, hardware, seed, candidates=candidates,
                          max_retries=int(_setting(settings, "maxRetries", 100)))


def _grid(space, hardware, seed, settings, *, candidates=None, **_: Any) -> Searcher:
    return GridSearcher(space, hardware, seed, candidates=candidates,
                        points_per_dim=int(_setting(settings, "gridPoints", 5)),
                        shuffle=bool(_setting(settings, "gridShuffle", False)))


register_searcher("random", _random)
register_searcher("grid", _grid)


def make_searcher(
    name: str,
    space: SearchSpace,
    hardware: Sequence[Hardware] | None = None,
    seed: int | None = 0,
    *,
    settings: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> Searcher:
    """A searcher by name. ``settings`` is the study's ``algorithm.settings`` (keys a searcher
    does not know are ignored: they may be the scheduler's); random reads ``maxRetries``, grid
    ``gridPoints`` and ``gridShuffle``. ``kwargs`` go to the factory (e.g. ``candidates=`` a
    benchmark table's configs, so every suggestion is in the table) and ``context=`` the study's
    ``SearchContext`` (objectives, fidelity, hardware model, a read-only view of the trials;
    ``hwtune.optimize.context``) when the study builds it."""
    if name not in _REGISTRY and name in _PROVIDERS:
        try:
            importlib.import_module(_PROVIDERS[name])
        except ImportError as exc:
            raise ValueError(f"searcher {name!r} needs {_PROVIDERS[name]}, which failed to import: {exc}") from exc
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown searcher {name!r} (available: {', '.join(searcher_names())})") from None
    return factory(space, hardware, seed, dict(settings or {}), **kwargs)
