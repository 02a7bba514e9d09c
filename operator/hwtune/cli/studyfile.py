"""Reading a study file: YAML documents read as kubectl reads them (``hwtune.api.yamlio``), one
TuningStudy plus optional HardwarePools, validated once by the CRD models, checked against the
pools, then turned into the engine's ``StudyConfig`` from that same validated model. Every
problem is a ``StudyFileError`` listing ``file: field path: reason`` lines.

``check_runs_locally`` is what only ``hwtune tune`` needs (a command to start a local process);
``hwtune validate`` judges the study as the cluster would and does not ask for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from hwtune.api.crd import HardwarePool, ManifestError, TuningStudy, parse_manifest
from hwtune.api.pools import validate_study_against_pools
from hwtune.api.yamlio import read_manifest_file
from hwtune.backends.local.template import ProcessTemplate
from hwtune.engine import StudyConfig
from hwtune.engine.config import pool_catalog
from hwtune.optimize.hardware import DEFAULT_CATALOG

__all__ = ["StudyFile", "StudyFileError", "check_runs_locally", "load_study_file"]


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
    study: TuningStudy  # the validated model
    spec: Mapping[str, Any]  # the TuningStudy's spec, as written (kept in the work directory)
    config: StudyConfig  # the engine's view of ``study.spec``
    pools: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # HardwarePool specs


def _problems(exc: ManifestError, path: Path) -> list[str]:
    # The file is named once by StudyFileError; keep the document when the error names one.
    where = exc.source[len(str(path)):].lstrip(", ") if exc.source.startswith(str(path)) \
        else exc.source
    prefix = f"{where}: " if where else ""
    return [f"{prefix}{error}" for error in exc.errors]


def load_study_file(path: str | Path) -> StudyFile:
    """Parse and validate ``path``. Raises ``StudyFileError`` with every problem found."""
    path = Path(path)
    try:
        docs = read_manifest_file(str(path))
    except ManifestError as exc:
        raise StudyFileError(str(path), _problems(exc, path)) from None
    problems: list[str] = []
    studies: list[tuple[TuningStudy, Mapping[str, Any]]] = []
    pools: dict[str, Mapping[str, Any]] = {}
    for index, doc in enumerate(docs, 1):
        prefix = f"document {index}: " if len(docs) > 1 else ""
        try:
            manifest = parse_manifest(doc)
        except ManifestError as exc:
            problems.extend(f"{prefix}{error}" for error in exc.errors)
            continue
        if isinstance(manifest, TuningStudy):
            studies.append((manifest, doc["spec"]))
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
    study, spec = studies[0]
    catalog_specs = {name: pool.to_spec() for name, pool in DEFAULT_CATALOG.items()}
    catalog_specs.update(pools)
    problems.extend(str(error) for error in validate_study_against_pools(study.spec, catalog_specs))
    if problems:
        raise StudyFileError(str(path), problems)
    try:
        config = StudyConfig.from_model(study.spec, catalog=pool_catalog(pools))
        config.check_algorithm()
    except ManifestError as exc:
        raise StudyFileError(str(path), _problems(exc, path)) from None
    return StudyFile(path=path, name=study.metadata.name or path.stem, study=study, spec=spec,
                     config=config, pools=pools)


def check_runs_locally(study: StudyFile) -> ProcessTemplate:
    """What ``hwtune tune`` needs beyond a valid study: the first container must say how to
    start the trainer as a local process. Raises ``StudyFileError`` worded as such."""
    try:
        return ProcessTemplate.from_trial_template(study.spec.get("trialTemplate"),
                                                   base_dir=str(study.path.resolve().parent))
    except ManifestError as exc:
        raise StudyFileError(str(study.path), [
            f"{error.path}: {error.message} (hwtune tune starts each trial as a local process; "
            "the study itself is valid for a cluster)" for error in exc.errors]) from None
