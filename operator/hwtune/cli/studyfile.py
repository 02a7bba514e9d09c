"""Reading a study file: YAML documents, one TuningStudy plus optional HardwarePools, validated
with the same pydantic models as the CRDs, then with the engine's own parser. Every problem is a
``StudyFileError`` listing ``file: field path: reason`` lines."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from hwtune.api.crd import HardwarePool, ManifestError, TuningStudy, parse_manifest
from hwtune.api.pools import validate_study_against_pools
from hwtune.backends.local.template import ProcessTemplate
from hwtune.engine import StudyConfig
from hwtune.optimize.hardware import DEFAULT_CATALOG, PoolSpec
from hwtune.space.errors import SpecError

__all__ = ["StudyFile", "StudyFileError", "load_study_file"]


class StudyFileError(ValueError):
    """The file cannot be used; ``problems`` are ``field path: reason`` strings."""

    def __init__(self, path: str, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        super().__init__("\n".join(f"{path}: {p}" for p in problems))


@dataclass(frozen=True)
class StudyFile:
    path: Path
    name: str
    spec: Mapping[str, Any]  # the TuningStudy's spec, as written
    pools: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # HardwarePool specs
    config: StudyConfig | None = None

    @property
    def catalog(self) -> dict[str, PoolSpec]:
        catalog = dict(DEFAULT_CATALOG)
        for name, spec in self.pools.items():
            catalog[name] = PoolSpec.from_spec(spec, f"pools.{name}")
        return catalog


def _yaml_documents(path: Path) -> list[Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise StudyFileError(str(path), ["no such file"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise StudyFileError(str(path), [f"cannot read: {exc}"]) from None
    try:
        return [doc for doc in yaml.safe_load_all(text) if doc is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise StudyFileError(str(path), [f"{where}not valid YAML: {problem}"]) from None


def load_study_file(path: str | Path) -> StudyFile:
    """Parse and validate ``path``. Raises ``StudyFileError`` with every problem found."""
    path = Path(path)
    docs = _yaml_documents(path)
    problems: list[str] = []
    studies: list[tuple[int, TuningStudy, Mapping[str, Any]]] = []
    pools: dict[str, Mapping[str, Any]] = {}
    for index, doc in enumerate(docs, 1):
        where = f"document {index}" if len(docs) > 1 else ""
        prefix = f"{where}: " if where else ""
        try:
            manifest = parse_manifest(doc)
        except ManifestError as exc:
            problems.extend(f"{prefix}{error}" for error in exc.errors)
            continue
        if isinstance(manifest, TuningStudy):
            studies.append((index, manifest, doc["spec"]))
        elif isinstance(manifest, HardwarePool):
            name = manifest.metadata.name
            if name in pools:
                problems.append(f"{prefix}metadata.name: HardwarePool {name!r} is defined twice")
            pools[name] = doc["spec"]
        else:
            problems.append(f"{prefix}kind: {doc.get('kind')} does not belong in a study file "
                            "(TuningStudy and HardwarePool only)")
    if not problems and len(studies) != 1:
        problems.append(f"expected exactly one TuningStudy, found {len(studies)}")
    if problems:
        raise StudyFileError(str(path), problems)
    _, study, spec = studies[0]
    catalog_specs = {name: pool.to_spec() for name, pool in DEFAULT_CATALOG.items()}
    catalog_specs.update(pools)
    problems.extend(str(error) for error in validate_study_against_pools(spec, catalog_specs))
    if problems:
        raise StudyFileError(str(path), problems)
    result = StudyFile(path=path, name=study.metadata.name or path.stem, spec=spec, pools=pools)
    try:
        config = StudyConfig.from_spec(spec, catalog=result.catalog, require_trial_template=True)
        ProcessTemplate.from_trial_template(spec.get("trialTemplate"))
    except SpecError as exc:
        raise StudyFileError(str(path), [f"spec.{exc.path}: {exc.reason}" if exc.path
                                         else f"spec: {exc.reason}"]) from None
    return StudyFile(path=path, name=result.name, spec=spec, pools=pools, config=config)
