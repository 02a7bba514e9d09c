"""Searchers propose (config, hardware) pairs; schedulers own one. ``make_searcher`` builds one
by name. The names a study may use are listed once, in ``hwtune.api.algorithms``; each entry
names the module whose import calls ``register_searcher`` for it (this one for random and grid)."""

from __future__ import annotations

import importlib
from typing import Any, Callable, Mapping, Sequence

from hwtune.api import algorithms
from hwtune.api.records import Hardware
from hwtune.optimize.searchers.base import Searcher
from hwtune.optimize.searchers.grid import GridSearcher
from hwtune.optimize.searchers.random import RandomSearcher
from hwtune.optimize.searchers.tpe import TPESearcher
from hwtune.space import SearchSpace

__all__ = ["GridSearcher", "RandomSearcher", "Searcher", "make_searcher", "register_searcher",
           "searcher_names", "TPESearcher"]

SearcherFactory = Callable[..., Searcher]

# name -> factory(space, hardware, seed, settings, **kwargs)
_REGISTRY: dict[str, SearcherFactory] = {}


def register_searcher(name: str, factory: SearcherFactory) -> None:
    """Make ``make_searcher(name, ...)`` call ``factory(space, hardware, seed, settings, **kwargs)``."""
    _REGISTRY[name] = factory


def searcher_names() -> tuple[str, ...]:
    """The names a study may use (``hwtune.api.algorithms``)."""
    return algorithms.searcher_names()


def _setting(settings: Mapping[str, Any], key: str, default: Any) -> Any:
    return settings.get(key, default) if settings else default


def _random(space, hardware, seed, settings, *, candidates=None, **_: Any) -> Searcher:
    return RandomSearcher(space, hardware, seed, candidates=candidates,
                          max_retries=int(_setting(settings, "maxRetries", 100)))


def _grid(space, hardware, seed, settings, *, candidates=None, **_: Any) -> Searcher:
    return GridSearcher(space, hardware, seed, candidates=candidates,
                        points_per_dim=int(_setting(settings, "gridPoints", 5)),
                        shuffle=bool(_setting(settings, "gridShuffle", False)))


def _tpe(space, hardware, seed, settings, *, candidates=None, objectives=None, context=None,
         **_: Any) -> Searcher:
    # TPE models one metric: the study's first objective.
    objectives = objectives or getattr(context, "objectives", None)
    kwargs: dict[str, Any] = {}
    if "tpeStartup" in settings:
        kwargs["n_startup"] = int(settings["tpeStartup"])
    return TPESearcher(space, hardware, seed, candidates=candidates,
                       objective=objectives[0] if objectives else None,
                       gamma=float(_setting(settings, "tpeGamma", 0.25)),
                       n_candidates=int(_setting(settings, "tpeCandidates", 32)), **kwargs)


register_searcher("random", _random)
register_searcher("tpe", _tpe)
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
    benchmark table's configs, so every suggestion is in the table)."""
    entry = algorithms.searcher(name)  # ValueError naming the searchers that exist
    if name not in _REGISTRY:
        try:
            importlib.import_module(entry.provider)
        except ImportError as exc:
            raise ValueError(f"searcher {name!r} needs {entry.provider}, which failed to import: "
                             f"{exc}") from exc
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise ValueError(f"searcher {name!r} is listed but {entry.provider} registered no "
                         "factory for it") from None
    return factory(space, hardware, seed, dict(settings or {}), **kwargs)
