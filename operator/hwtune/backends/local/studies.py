"""Earlier studies from ``hwtune tune`` work directories, for transfer (``hwtune.transfer``).

``load_workdir(path)`` reads ``study.json`` and ``events.jsonl`` with the same ``EventLog``
that writes them and folds the events into a ``PastStudy`` with ``hwtune.transfer.from_events``.
``load_studies(names, search_dirs)`` resolves names with ``hwtune.transfer.resolve_local``: a
name that is a work directory is used as is, else ``<search dir>/<name>``; ``hwtune tune``
searches the parent of the new study's work directory (``.hwtune/`` by default).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Mapping, Sequence

from hwtune.backends.local.runner import EVENTS_FILE, STUDY_FILE, EventLog, WorkdirError
from hwtune.transfer.records import PastStudy, TransferError, study_from_dict, study_to_dict
from hwtune.transfer.sources import from_events, resolve_local

__all__ = ["SNAPSHOT_FILE", "load_studies", "load_workdir", "read_snapshot", "write_snapshot"]

# The earlier studies as this study first loaded them: a resumed study replays with exactly the
# data its searcher was built from, even if an earlier study ran on since.
SNAPSHOT_FILE = "transfer.json"


def load_workdir(path: str | Path, name: str | None = None) -> PastStudy:
    """The study a ``hwtune tune`` run left in ``path`` (finished or interrupted)."""
    path = Path(path)
    study_file = path / STUDY_FILE
    if not study_file.is_file():
        raise TransferError(f"{path}: not a hwtune work directory (no {STUDY_FILE})")
    try:
        stored = json.loads(study_file.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise TransferError(f"{study_file}: not JSON: {exc}") from None
    if not isinstance(stored, Mapping) or not isinstance(stored.get("spec"), Mapping):
        raise TransferError(f"{study_file}: has no spec")
    try:
        events = EventLog(path / EVENTS_FILE).read()
    except WorkdirError as exc:
        raise TransferError(str(exc)) from None
    try:
        return from_events(name or str(stored.get("name") or path.name), stored["spec"], events,
                           source=f"workdir:{path}", catalog=stored.get("pools") or {})
    except ValueError as exc:
        if isinstance(exc, TransferError):
            raise
        raise TransferError(f"{path / EVENTS_FILE}: {exc}") from None


def load_studies(names: Sequence[str], search_dirs: Sequence[str | Path]) -> list[PastStudy]:
    """The earlier studies ``names`` (``transfer.fromStudies``), in order."""
    return [load_workdir(resolve_local(name, search_dirs), name=None) for name in names]


def write_snapshot(workdir: str | Path, studies: Sequence[PastStudy]) -> Path:
    path = Path(workdir) / SNAPSHOT_FILE
    tmp = path.with_suffix(".json.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump([study_to_dict(s) for s in studies], fh, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path


def read_snapshot(workdir: str | Path) -> list[PastStudy] | None:
    """The snapshot in ``workdir``, or None when there is none."""
    path = Path(workdir) / SNAPSHOT_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise TransferError(f"{path}: not JSON: {exc}") from None
    if not isinstance(data, list):
        raise TransferError(f"{path}: expected a list of studies")
    return [study_from_dict(d, str(path)) for d in data]
