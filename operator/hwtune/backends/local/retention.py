"""Per-level checkpoints of the local backend, within a retention limit.

The trainer SDK keeps one checkpoint per trial, ``<root>/<trial>/latest.ckpt``, replaced (a new
file renamed over the name) at every save. FMS reads a trial's weights *at a level* (the
checkpoint a point of its training set started from), and a freeze-thaw trial that was paused
and resumed has overwritten them. So when a study's searcher reads checkpoints (``fms``,
``fms-flat``, ``fms-nocurve``), after each accepted report of level r whose checkpoint is of
level r the backend hard-links it as ``<root>/<trial>/levels/<r>/latest.ckpt`` (and its
``latest.json``). While it is still the latest checkpoint the link costs no disk; once the
trainer saves again, the link keeps the older file alive.

Retention: ``latest.ckpt`` always (the trial resumes from it), plus the last ``keep`` levels of
each trial (default 3: the level a resume candidate starts from and the two before, the points
the surrogate's refits see most); older level copies are deleted when a new one is kept. Disk is
therefore at most trials x (keep + 1) checkpoints. The report is answered only after this, and
the trainer waits for the answer before it trains (and saves) again, so the file linked is the
one of that level. Object-store roots (``s3://``...) keep only the latest checkpoint.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from hwtune.trainer.checkpoint import CHECKPOINT_FILE, META_FILE, read_checkpoint_meta

__all__ = ["DEFAULT_KEEP_LEVELS", "keep_level", "level_location"]

log = logging.getLogger(__name__)

DEFAULT_KEEP_LEVELS = 3
LEVELS_DIR = "levels"


def _local(root: str) -> bool:
    return "://" not in root or root.startswith("file://")


def _path(root: str) -> Path:
    return Path(root[len("file://"):] if root.startswith("file://") else root)


def level_location(root: str, trial_id: int, level: int) -> str:
    """Where the checkpoint of ``trial_id`` at ``level`` can be read: its kept copy when there is
    one, else the trial's location (whose checkpoint a reader checks for the level)."""
    base = f"{root.rstrip('/')}/{trial_id}"
    if _local(root) and (_path(base) / LEVELS_DIR / str(level) / CHECKPOINT_FILE).exists():
        return f"{base}/{LEVELS_DIR}/{level}"
    return base


def keep_level(location: str, level: int, keep: int) -> bool:
    """Keep the checkpoint at ``location`` as the copy of ``level`` when it is of that level;
    drop copies beyond the last ``keep`` levels. True when a copy was made. Never raises for a
    disk problem (the study goes on; the surrogate then counts that checkpoint as missing)."""
    if keep < 1 or not _local(location):
        return False
    try:
        meta = read_checkpoint_meta(location)
        if meta is None or int(meta.get("resource", -1)) != level:
            return False  # this level was not checkpointed (or not yet)
        base = _path(location)
        target = base / LEVELS_DIR / str(level)
        target.mkdir(parents=True, exist_ok=True)
        for name in (CHECKPOINT_FILE, META_FILE):
            dest = target / name
            dest.unlink(missing_ok=True)
            try:
                os.link(base / name, dest)
            except OSError:  # a filesystem without hard links: a copy
                shutil.copy2(base / name, dest)
        levels = sorted((int(p.name) for p in (base / LEVELS_DIR).iterdir() if p.name.isdigit()),
                        reverse=True)
        for old in levels[keep:]:
            shutil.rmtree(base / LEVELS_DIR / str(old), ignore_errors=True)
        return True
    except (OSError, ValueError) as exc:
        log.warning("checkpoint of level %s at %s not kept: %s", level, location, exc)
        return False
