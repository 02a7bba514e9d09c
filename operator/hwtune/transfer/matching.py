"""Matching an earlier study's search space to the new one (HT-AA's developer adjustments).

``match_spaces(old, new)`` splits the new space's parameters into

- shared: in both, with values in common. Each carries the *overlap* domain (the intersection
  of the two ranges, or the common choices) and what changed (``same``, ``shrunk``, ``grown``,
  ``shifted``, ``choices-added``, ``choices-removed``, ``choices-changed``);
- new: only in the new space, or in both with nothing in common (a range that moved away
  entirely, a categorical whose choices were all replaced, a type change): the old values say
  nothing about them;
- removed: only in the old space (or vanished, as above).

Hardware is a hyperparameter like the others, named ``HARDWARE``: its choices are
``(pool, gpu count)`` pairs; a pool added or retired shows up as ``choices-added`` /
``choices-removed`` and a study that gained (lost) a hardware dimension has it as new
(removed). Conditions are matched too: a shared parameter whose condition changed is listed in
``condition_changed``; an old value counts only where the parameter was active in that old
trial, and ``complete`` makes the result valid under the *new* conditions (a projected value that
is inactive now is dropped; a newly active parameter is filled in).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from hwtune.api.records import Hardware
from hwtune.optimize.searchers.tpe import HARDWARE
from hwtune.space import SearchSpace
from hwtune.space.domains import (
    CategoricalDomain,
    Domain,
    FloatDomain,
    IntDomain,
    OrdinalDomain,
)

__all__ = ["HARDWARE", "SharedParameter", "SpaceMatch", "match_spaces", "overlap_domain"]


@dataclass(frozen=True)
class SharedParameter:
    name: str
    overlap: Domain  # values valid in both spaces (the new space's type)
    change: str

    def contains(self, value: Any) -> bool:
        try:
            self.overlap.validate(value, self.name)
            return True
        except ValueError:
            return False


def _numeric_values(d: Domain) -> tuple[float, ...] | None:
    # Unordered (categorical) numbers stay categorical: they share nothing with a range.
    return tuple(float(v) for v in d.values) if isinstance(d, OrdinalDomain) else None


def overlap_domain(old: Domain, new: Domain) -> tuple[Domain | None, str]:
    """The new-typed domain of values valid in both, and what changed; (None, why) when
    nothing is shared."""
    name = new.name
    if isinstance(new, (FloatDomain, IntDomain)) and isinstance(old, (FloatDomain, IntDomain)):
        lo, hi = max(old.low, new.low), min(old.high, new.high)
        if isinstance(new, IntDomain):
            lo, hi = int(np.ceil(lo)), int(np.floor(hi))
        if not lo < hi:
            return None, "vanished"
        if (old.low, old.high) == (new.low, new.high):
            change = "same"
        elif old.low <= new.low and new.high <= old.high:
            change = "shrunk"
        elif new.low <= old.low and old.high <= new.high:
            change = "grown"
        else:
            change = "shifted"
        cls = IntDomain if isinstance(new, IntDomain) else FloatDomain
        return cls(name, lo, hi, log=new.log), change
    new_vals: tuple[Any, ...]
    if isinstance(new, (FloatDomain, IntDomain)):
        old_vals = _numeric_values(old)
        if old_vals is None:
            return None, "vanished"
        common = [v for v in old_vals if new.low <= v <= new.high]
        if isinstance(new, IntDomain):
            common = [int(v) for v in common if float(v).is_integer()]
        if not common:
            return None, "vanished"
        return OrdinalDomain(name, sorted(set(common)), integer=isinstance(new, IntDomain)), "shifted"
    if isinstance(new, OrdinalDomain):
        if isinstance(old, (FloatDomain, IntDomain)):
            common = [v for v in new.values if old.low <= v <= old.high]
        elif isinstance(old, OrdinalDomain):
            olds = {float(v) for v in old.values}
            common = [v for v in new.values if float(v) in olds]
        else:
            return None, "vanished"
        if not common:
            return None, "vanished"
        return OrdinalDomain(name, common, integer=new.integer), _choice_change(
            {float(v) for v in (old.values if isinstance(old, OrdinalDomain) else common)},
            {float(v) for v in new.values}, ordered_old=isinstance(old, OrdinalDomain))
    assert isinstance(new, CategoricalDomain)
    if not isinstance(old, CategoricalDomain):
        return None, "vanished"
    olds = {(type(v).__name__, v) for v in old.values}
    common = [v for v in new.values if (type(v).__name__, v) in olds]
    if not common:
        return None, "vanished"
    news = {(type(v).__name__, v) for v in new.values}
    return CategoricalDomain(name, common), _choice_change(olds, news)


def _choice_change(old: set, new: set, ordered_old: bool = True) -> str:
    if old == new:
        return "same"
    if old < new:
        return "choices-added"
    if new < old:
        return "choices-removed"
    return "choices-changed"


@dataclass
class SpaceMatch:
    old: SearchSpace
    new: SearchSpace
    shared: dict[str, SharedParameter] = field(default_factory=dict)
    new_names: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    vanished: tuple[str, ...] = ()  # in both spaces, nothing in common (also in new and removed)
    condition_changed: tuple[str, ...] = ()
    old_hardware: tuple[Hardware, ...] = ()
    new_hardware: tuple[Hardware, ...] = ()
    renames: dict[str, str] = field(default_factory=dict)  # old name -> new name

    # -- hardware -------------------------------------------------------------------------------
    @property
    def shared_hardware(self) -> tuple[Hardware, ...]:
        olds = set(self.old_hardware)
        return tuple(h for h in self.new_hardware if h in olds)

    def summary(self) -> dict[str, Any]:
        """What changed, by parameter (``HARDWARE`` for the hardware choices)."""
        return {
            "shared": {n: s.change for n, s in self.shared.items()},
            "new": list(self.new_names),
            "removed": list(self.removed),
            "vanished": list(self.vanished),
            "conditionChanged": list(self.condition_changed),
        }

    # -- configs --------------------------------------------------------------------------------
    def project(self, old_config: Mapping[str, Any], old_hardware: Hardware | None = None,
                *, clip: bool = False) -> tuple[dict[str, Any], Hardware | None]:
        """The shared part of an old trial: values of shared parameters that were active in it
        and lie in the overlap (with ``clip``, values outside it move to the nearest overlap
        value instead of being dropped), and its hardware when the new study offers it."""
        if self.renames:
            old_config = {self.renames.get(k, k): v for k, v in old_config.items()}
        out: dict[str, Any] = {}
        for name, shared in self.shared.items():
            if name == HARDWARE or name not in old_config:
                continue
            value = old_config[name]
            if shared.contains(value):
                out[name] = shared.overlap.validate(value, name)
            elif clip:
                out[name] = _nearest(shared.overlap, value)
        hardware = old_hardware if old_hardware in set(self.new_hardware) else None
        return out, hardware

    def complete(self, partial: Mapping[str, Any], rng: np.random.Generator,
                 *, fill: str = "sample") -> dict[str, Any]:
        """A valid new config: ``partial``'s values where they are active under the new
        conditions, the rest drawn (``fill="sample"``) or set to the default (``"default"``)."""
        space = self.new
        config: dict[str, Any] = {}
        for name in _order(space):
            if not space.is_active(name, config):
                continue
            d = space[name]
            if name in partial:
                config[name] = d.validate(partial[name], name)
            elif fill == "default" and d.default is not None:
                config[name] = d.default
            else:
                config[name] = d.sample(rng)
        return space.validate(config)


def _order(space: SearchSpace) -> tuple[str, ...]:
    return space._order  # noqa: SLF001 - the topological order conditions need


def _nearest(d: Domain, value: Any) -> Any:
    if isinstance(d, (FloatDomain, IntDomain)):
        v = min(d.high, max(d.low, float(value)))
        return int(round(v)) if isinstance(d, IntDomain) else v
    if isinstance(d, OrdinalDomain):
        return min(d.values, key=lambda x: abs(float(x) - float(value)))
    return d.values[0]


def match_spaces(old: SearchSpace, new: SearchSpace, *, old_hardware: Sequence[Hardware] = (),
                 new_hardware: Sequence[Hardware] = (),
                 renames: Mapping[str, str] | None = None) -> SpaceMatch:
    """``renames`` maps old parameter names to new ones (a parameter the developer renamed)."""
    renames = dict(renames or {})
    unknown = sorted(k for k in renames if k not in old.names)
    if unknown:
        raise ValueError(f"renames: {unknown[0]!r} is not a parameter of the earlier study")
    old_name = {new_name: o for o, new_name in renames.items()}
    shared: dict[str, SharedParameter] = {}
    new_names: list[str] = []
    vanished: list[str] = []
    cond_changed: list[str] = []
    for name in new.names:
        oname = old_name.get(name, name if name not in renames else None)
        if oname is None or oname not in old.names:
            new_names.append(name)
            continue
        overlap, change = overlap_domain(old[oname], new[name])
        if overlap is None:
            vanished.append(name)
            new_names.append(name)
            continue
        shared[name] = SharedParameter(name, overlap, change)
        oc, nc = old[oname].condition, new[name].condition
        if (oc is None) != (nc is None) or (oc is not None and nc is not None and (
                renames.get(oc.parameter, oc.parameter) != nc.parameter or set(map(repr, oc.values)) != set(map(repr, nc.values)))):
            cond_changed.append(name)
    mapped = {old_name.get(n, n if n not in renames else None) for n in new.names}
    removed = [n for n in old.names if n not in mapped] + vanished
    old_hw, new_hw = tuple(old_hardware), tuple(new_hardware)
    if new_hw and old_hw:
        common = [h for h in new_hw if h in set(old_hw)]
        if common:
            pseudo = CategoricalDomain(HARDWARE, [str(h) for h in common])
            shared[HARDWARE] = SharedParameter(
                HARDWARE, pseudo, _choice_change(set(old_hw), set(new_hw)))
        else:
            vanished.append(HARDWARE)
            new_names.append(HARDWARE)
            removed.append(HARDWARE)
    elif new_hw:
        new_names.append(HARDWARE)
    elif old_hw:
        removed.append(HARDWARE)
    return SpaceMatch(old, new, shared, tuple(new_names), tuple(removed), tuple(vanished),
                      tuple(cond_changed), old_hw, new_hw, renames)
