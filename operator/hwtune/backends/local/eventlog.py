"""``events.jsonl``: the local backend's persisted study event log.

One ``StudyEvent.to_dict()`` per line, as compact JSON whose last member is a CRC-32 of the
rest of the line::

    {"kind":"created","seq":0,...,"crc32":"1c291ca3"}

``crc32`` is computed over the line's bytes with that member removed (``...}``), so checking it
needs no re-serialisation, and every line is still plain JSON for ``jq`` and for tests.

Writing: each line is one ``write()`` on an ``O_APPEND`` descriptor, so a process killed at any
moment leaves a prefix of a line at worst; a failed write (a full disk) is cut back to the last
whole line. Events are fsynced before the effect they justify: a report's decision is durable
before the trainer is answered, a trial's creation before its process starts. Only ``running``
(re-derived on resume) is left to the page cache.

Reading: a line whose checksum fails, or that is not JSON, is damage. Damage at the end of the
file (after the last good line: a torn write, garbage after a power loss, whatever it ends with,
newline included) is dropped with a warning and cut off before the next append. Damage followed
by good lines is an error naming the file and line: events after it would replay without the
ones it held. Sequence numbers must run 0, 1, 2, ...: anything else (two writers) is an error
naming the line. Logs written before checksums existed (no ``crc32`` member) load as they are.
"""

from __future__ import annotations

import json
import logging
import os
import re
import zlib
from pathlib import Path
from typing import Any

from hwtune.backends.base import InfrastructureError
from hwtune.backends.local.errors import WorkdirError
from hwtune.engine import EventKind, StudyEvent

__all__ = ["EventLog", "EventLogError", "decode_line", "encode_line"]

log = logging.getLogger(__name__)

_CRC = re.compile(rb',"crc32":"([0-9a-f]{8})"\}\s*$')
# Re-derived on resume (an interrupted trial is paused and relaunched): no fsync needed.
_NO_FSYNC = frozenset({EventKind.RUNNING})


class EventLogError(WorkdirError):
    """The log is damaged where it cannot simply be cut (in the middle) or out of sequence."""


def encode_line(record: dict[str, Any]) -> bytes:
    if "crc32" in record:
        raise ValueError("an event must not carry a 'crc32' member")
    body = json.dumps(record, sort_keys=True, separators=(",", ":")).encode()
    if not body.startswith(b"{") or body == b"{}":
        raise ValueError(f"an event is a non-empty JSON object, got {record!r}")
    return body[:-1] + b',"crc32":"%08x"}\n' % zlib.crc32(body)


def decode_line(raw: bytes) -> tuple[dict[str, Any] | None, bool, str]:
    """(record or None, has a checksum, what is wrong)."""
    match = _CRC.search(raw)
    if match is not None:
        body = raw[:match.start()] + b"}"
        if zlib.crc32(body) != int(match.group(1), 16):
            return None, True, "checksum mismatch"
        text = body
    else:
        text = raw
    try:
        record = json.loads(text)
    except (ValueError, RecursionError):
        return None, match is not None, "not a JSON event line"
    if not isinstance(record, dict):
        return None, match is not None, "not a JSON object"
    return record, match is not None, ""


class EventLog:
    """Append-only event log of one study (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._fd: int | None = None
        self._broken: str | None = None

    # -- reading --------------------------------------------------------------------------------
    def _scan(self) -> tuple[list[dict[str, Any]], int, bool]:
        """(records, byte size of the good prefix, whether that prefix ends mid-line)."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return [], 0, False
        records: list[dict[str, Any]] = []
        good_end = 0
        checksummed = False
        damage: tuple[int, str] | None = None  # first bad line: number, problem
        offset = 0
        lines = data.split(b"\n")
        for number, raw in enumerate(lines, 1):
            last = number == len(lines)
            end = offset + len(raw) + (0 if last else 1)
            if not raw.strip(b" \t\r"):
                if damage is None:
                    good_end = end
                offset = end
                continue
            record, has_crc, problem = decode_line(raw)
            if record is not None and not has_crc and checksummed:
                record, problem = None, "no checksum after lines that have one"
            if record is None:
                if damage is None:
                    damage = (number, problem)
                offset = end
                continue
            if damage is not None:
                raise EventLogError(
                    f"{self.path}:{damage[0]}: {damage[1]}, followed by good events (from line "
                    f"{number}): the log is damaged in the middle, not torn at its end. Restore "
                    "it from a copy, or cut it before that line to give up what follows")
            checksummed |= has_crc
            expected = len(records)
            if record.get("seq") != expected:
                raise EventLogError(
                    f"{self.path}:{number}: event sequence number {record.get('seq')!r} where "
                    f"{expected} was expected; two processes wrote this log (hwtune before the "
                    "work-directory lock could do that) and it cannot be replayed")
            records.append(record)
            good_end = end
            offset = end
        if damage is not None:
            log.warning("%s: dropping a torn or corrupt tail from line %d (%s, %d bytes)",
                        self.path, damage[0], damage[1], len(data) - good_end)
        ends_mid_line = good_end > 0 and not data[:good_end].endswith(b"\n")
        return records, good_end, ends_mid_line

    def read(self) -> list[dict[str, Any]]:
        """The events as dicts (without their checksums), in order."""
        return self._scan()[0]

    # -- writing --------------------------------------------------------------------------------
    def _open(self) -> int:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        created = not self.path.exists()
        _, good_end, ends_mid_line = self._scan()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            if os.fstat(fd).st_size > good_end:
                os.ftruncate(fd, good_end)  # the torn tail the reader dropped
            if ends_mid_line:
                os.write(fd, b"\n")  # a good last line whose newline was lost
            os.fsync(fd)
            if created:
                _fsync_dir(self.path.parent)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def append(self, event: StudyEvent) -> None:
        """Write one event as one line; fsync unless it is re-derivable. When that fails (a full
        disk) the file is cut back to its last whole line and ``InfrastructureError`` raised;
        every later append raises too, so the log never holds a gap."""
        if self._broken is not None:
            raise InfrastructureError(f"{self.path}: no longer written after an earlier "
                                      f"failure: {self._broken}")
        try:
            self._append(event)
        except OSError as exc:
            self._broken = f"{exc.strerror or exc}"
            raise InfrastructureError(f"cannot write the study's event log {self.path}: "
                                      f"{exc.strerror or exc}") from exc

    def _append(self, event: StudyEvent) -> None:
        if self._fd is None:
            self._fd = self._open()
        line = encode_line(event.to_dict())
        fd = self._fd
        size = os.fstat(fd).st_size
        try:
            view = memoryview(line)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            if event.kind not in _NO_FSYNC:
                os.fsync(fd)
        except OSError:
            try:
                os.ftruncate(fd, size)
            except OSError:
                pass  # the reader drops the partial line
            raise

    def close(self) -> None:
        if self._fd is not None:
            try:
                os.fsync(self._fd)
            except OSError:
                pass
            os.close(self._fd)
            self._fd = None


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
