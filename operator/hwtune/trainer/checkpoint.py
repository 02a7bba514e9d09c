"""A trial's checkpoint: one state dict and the resource level it was taken at.

The location is a directory (a PVC mount, a local workdir) or an fsspec URI (``file://``,
``memory://``, ``s3://`` with s3fs installed). Two files live there:

- ``latest.ckpt``: ``{"format": "hwtune-checkpoint/1", "resource": r, "state": state}``,
  written with ``torch.save`` when the trainer has imported torch (tensors stay tensors),
  else with pickle. Checkpoints are pickles: load only your own trials' checkpoints.
- ``latest.json``: ``{"resource": r, "bytes": n, "format": "torch"|"pickle", "savedAt": t}``,
  written after the checkpoint so that a backend learns the level without unpickling.

Writes are atomic (temporary file, then rename): a trial killed mid-save leaves the previous
checkpoint intact, never a torn one.

A third file, ``pending-report.json`` (``{"resource": r, "metrics": {...}}``), exists while the
report of a checkpointed level is not acknowledged by the study. A trial killed in that window
(its tuner killed with it, say) sends it first when it resumes, so the level is not lost.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from typing import Any, Mapping
from urllib.parse import urlsplit

__all__ = ["CHECKPOINT_FILE", "META_FILE", "PENDING_REPORT_FILE", "Checkpoint", "CheckpointStore",
           "read_checkpoint_meta"]

CHECKPOINT_FILE = "latest.ckpt"
META_FILE = "latest.json"
PENDING_REPORT_FILE = "pending-report.json"
_FORMAT = "hwtune-checkpoint/1"
_ZIP_MAGIC = b"PK\x03\x04"  # torch.save writes a zip archive


@dataclass(frozen=True)
class Checkpoint:
    resource: int
    state: Mapping[str, Any]


def _local_path(location: str) -> str | None:
    """The filesystem path for a plain path or a file:// URI; None for any other scheme."""
    if "://" not in location:
        return location
    parts = urlsplit(location)
    if parts.scheme == "file":
        return parts.path
    return None


def _serialize(state: Mapping[str, Any], resource: int) -> tuple[bytes, str]:
    record = {"format": _FORMAT, "resource": resource, "state": dict(state)}
    torch = sys.modules.get("torch")  # only when the trainer itself uses torch
    buffer = io.BytesIO()
    if torch is not None:
        torch.save(record, buffer)
        return buffer.getvalue(), "torch"
    pickle.dump(record, buffer, protocol=pickle.HIGHEST_PROTOCOL)
    return buffer.getvalue(), "pickle"


def _deserialize(data: bytes, where: str) -> Checkpoint:
    if data[:4] == _ZIP_MAGIC:
        import torch  # the checkpoint holds tensors, so the trainer has torch

        record = torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)
    else:
        record = pickle.loads(data)
    if not isinstance(record, dict) or record.get("format") != _FORMAT:
        raise ValueError(f"{where} is not an hwtune checkpoint")
    return Checkpoint(resource=int(record["resource"]), state=record["state"])


class CheckpointStore:
    def __init__(self, location: str) -> None:
        if not location:
            raise ValueError("checkpoint location must not be empty")
        self.location = location.rstrip("/") or "/"
        self._path = _local_path(self.location)
        self._fs = None
        if self._path is None:
            import fsspec  # lazy: only for object stores and memory://

            self._fs, self._root = fsspec.core.url_to_fs(self.location)

    @property
    def checkpoint_uri(self) -> str:
        return f"{self.location}/{CHECKPOINT_FILE}"

    def save(self, state: Mapping[str, Any], resource: int) -> Checkpoint:
        if not isinstance(state, Mapping):
            raise TypeError(f"checkpoint state must be a dict, got {type(state).__name__}")
        if isinstance(resource, bool) or not isinstance(resource, int) or resource < 1:
            raise ValueError(f"checkpoint resource must be an integer >= 1, got {resource!r}")
        data, fmt = _serialize(state, resource)
        meta = json.dumps({"resource": resource, "bytes": len(data), "format": fmt,
                           "savedAt": time.time()}).encode()
        self._write_atomic(CHECKPOINT_FILE, data)
        self._write_atomic(META_FILE, meta)
        return Checkpoint(resource=resource, state=state)

    def load(self) -> Checkpoint | None:
        data = self._read(CHECKPOINT_FILE)
        if data is None:
            return None
        return _deserialize(data, self.checkpoint_uri)

    def meta(self) -> dict[str, Any] | None:
        data = self._read(META_FILE)
        return None if data is None else json.loads(data)

    def save_pending_report(self, resource: int, metrics: Mapping[str, float]) -> None:
        """Keep the report of ``resource`` beside its checkpoint until it is acknowledged."""
        self._write_atomic(PENDING_REPORT_FILE, json.dumps(
            {"resource": resource, "metrics": dict(metrics)}).encode())

    def pending_report(self) -> tuple[int, dict[str, float]] | None:
        """The unacknowledged report of a checkpointed level, or None (also for a damaged
        file, which atomic writes never leave behind)."""
        data = self._read(PENDING_REPORT_FILE)
        if data is None:
            return None
        try:
            record = json.loads(data)
            return int(record["resource"]), {str(k): float(v)
                                             for k, v in record["metrics"].items()}
        except (ValueError, KeyError, TypeError, AttributeError):
            return None

    def clear_pending_report(self) -> None:
        if self._path is not None:
            try:
                os.unlink(os.path.join(self._path, PENDING_REPORT_FILE))
            except FileNotFoundError:
                pass
            return
        target = f"{self._root}/{PENDING_REPORT_FILE}"
        if self._fs.exists(target):
            self._fs.rm(target)

    def _read(self, name: str) -> bytes | None:
        if self._path is not None:
            try:
                with open(os.path.join(self._path, name), "rb") as fh:
                    return fh.read()
            except FileNotFoundError:
                return None
        target = f"{self._root}/{name}"
        if not self._fs.exists(target):
            return None
        return self._fs.cat_file(target)

    def _write_atomic(self, name: str, data: bytes) -> None:
        if self._path is not None:
            os.makedirs(self._path, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=self._path)
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, os.path.join(self._path, name))
            except BaseException:
                # Also on SIGTERM's SystemExit: never leave a stray temp file behind.
                try:
                    os.unlink(tmp)
                except FileNotFoundError:
                    pass
                raise
            return
        target = f"{self._root}/{name}"
        tmp = f"{self._root}/.{name}.{uuid.uuid4().hex}.tmp"
        self._fs.makedirs(self._root, exist_ok=True)
        self._fs.pipe_file(tmp, data)
        self._fs.mv(tmp, target)


def read_checkpoint_meta(location: str) -> dict[str, Any] | None:
    """The metadata of the latest checkpoint at ``location``, or None: what a backend reads to
    know where a resumed trial will continue from."""
    return CheckpointStore(location).meta()
