"""Advisory locks on the work directory (one tuner at a time) and on each trial's directory
(held by the trial's processes, so a resumed study can tell when an orphan still runs).

Both are ``flock`` locks. The kernel releases one when the last descriptor of its open file is
closed, which includes the death of every process holding it, even by SIGKILL: a lock file left
behind by a dead process is never "held", and taking it over needs no guess about whether its
pid is alive or was reused. The file's content (who holds it) is only for the error message.
flock does not work across machines on some network filesystems; keep work directories local.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["LockHeld", "WorkdirLock", "describe_holder", "read_holder", "try_lock"]

LOCK_NAME = ".hwtune.lock"


class LockHeld(RuntimeError):
    """The lock is held by a live process; ``holder`` is what it wrote into the lock file."""

    def __init__(self, path: Path, holder: dict[str, Any]) -> None:
        super().__init__(f"{path} is locked by {describe_holder(holder)}")
        self.path = path
        self.holder = holder


def read_holder(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def describe_holder(holder: dict[str, Any]) -> str:
    if not holder.get("pid"):
        return "another process"
    since = holder.get("since")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since)) if since else "?"
    return f"pid {holder['pid']} on {holder.get('host', '?')} (since {when})"


def try_lock(path: Path, holder: dict[str, Any], *, inheritable: bool = False) -> int:
    """Take the exclusive lock on ``path`` without waiting and record ``holder`` in it; returns
    the descriptor (closing it releases the lock). Raises ``LockHeld`` when a live process holds
    it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise LockHeld(path, read_holder(path)) from None
        raise
    try:
        # Ours now: whatever a dead holder wrote is replaced.
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder, sort_keys=True).encode(), 0)
        os.set_inheritable(fd, inheritable)
    except BaseException:
        os.close(fd)
        raise
    return fd


class WorkdirLock:
    """``<workdir>/.hwtune.lock``, held by the one ``hwtune tune`` working in that directory."""

    def __init__(self, workdir: Path) -> None:
        self.path = Path(workdir) / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time(),
                  "argv": sys.argv[:8]}
        self._fd = try_lock(self.path, holder)

    def release(self) -> None:
        # The file stays: unlinking it would let a third process lock a new inode while a second
        # one still waits on the old.
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __del__(self) -> None:  # a constructor that failed after acquire() leaves no lock held
        self.release()
