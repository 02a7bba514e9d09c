"""Checks of a TuningStudy against the HardwarePools that exist: what no schema can see.

A CRD schema (and a ValidatingAdmissionPolicy) sees one object at a time, so "the study names a
pool that does not exist" cannot be refused at admission without a validating webhook. The
operator's admission webhook (``hwtune.controller.admission``) calls ``validate_study_against_pools``
with the pools it watches; the CLI calls it with the pools of the YAML files it was given (or the
default catalog).
"""

from __future__ import annotations

from typing import Any, Mapping

from hwtune.api._base import FieldError, ManifestError
from hwtune.api.crd import HardwarePoolSpec, TuningStudySpec, parse_spec

__all__ = ["validate_study_against_pools"]


def _as_pool(name: str, pool: Any) -> HardwarePoolSpec:
    if isinstance(pool, HardwarePoolSpec):
        return pool
    return parse_spec(HardwarePoolSpec, pool, prefix=f"pools[{name}]")


def validate_study_against_pools(
    spec: TuningStudySpec | Mapping[str, Any],
    pools: Mapping[str, HardwarePoolSpec | Mapping[str, Any]],
) -> list[FieldError]:
    """Errors (with ``spec.hardware...`` paths) of a study's hardware section given the pools by
    name; empty when every referenced pool exists and at least one (pool, GPU count) fits.

    ``spec`` may be a model or a spec mapping (validated first; its own errors are returned).
    Pools whose spec is invalid raise ManifestError: they are the caller's input, not the study's.
    """
    if not isinstance(spec, TuningStudySpec):
        try:
            spec = parse_spec(TuningStudySpec, spec)
        except ManifestError as exc:
            return exc.errors
    known = {name: _as_pool(name, pool) for name, pool in pools.items()}
    hw = spec.hardware
    errors: list[FieldError] = []
    if hw is None:
        return errors
    listed = list(hw.pools or [])
    known_names = ", ".join(sorted(known)) or "none"
    for index, name in enumerate(listed):
        if name not in known:
            errors.append(FieldError(
                f"spec.hardware.pools[{index}]",
                f"Not found: HardwarePool {name!r} does not exist (known pools: {known_names})"))
    for name in sorted(hw.overrides or {}):
        if name not in known:
            errors.append(FieldError(
                f"spec.hardware.overrides[{name}]",
                f"Not found: HardwarePool {name!r} does not exist (known pools: {known_names})"))
    candidates = [n for n in listed if n in known] if listed else sorted(known)
    if not candidates:
        if not listed:
            errors.append(FieldError("spec.hardware.pools",
                                     "Not found: no HardwarePool exists in the cluster"))
        return errors
    counts = list(hw.gpu_counts or [1])
    fits = []
    for name in candidates:
        per_node = known[name].gpus_per_node
        override = (hw.overrides or {}).get(name)
        if override is not None and override.gpus_per_node is not None:
            per_node = override.gpus_per_node
        fits += [(name, n) for n in counts if n <= per_node]
    if not fits:
        errors.append(FieldError(
            "spec.hardware.gpuCounts",
            f"Invalid value: no GPU count in {counts} fits on a node of pools "
            f"{', '.join(candidates)}"))
    return errors
