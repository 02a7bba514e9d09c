"""The supervisor between ``hwtune tune`` and one trial process, so that trainers die with their
tuner, even when the tuner is killed with SIGKILL and even when a trainer hangs.

Run as a script (``python -I -S supervise.py TUNER_PID GRACE -- ARGV...``: standard library only,
no hwtune import, so it starts in milliseconds); it is the leader of the trial's process group.

- It forks the trainer with ``PR_SET_PDEATHSIG(SIGKILL)`` (Linux, through ctypes): the trainer
  cannot outlive its supervisor.
- It watches the tuner by polling its own parent pid. ``PR_SET_PDEATHSIG`` cannot serve here: it
  fires when the *thread* that forked exits, and the tuner spawns from whichever thread runs it.
  When the tuner is gone it sends SIGTERM to the group (the SDK checkpoints and exits 75), and
  SIGKILL to the group, itself included, after GRACE seconds: a hung trainer dies too.
- SIGTERM sent to the supervisor (the tuner pausing or stopping the trial, an "eviction") is
  passed on to the group once, so the trainer and its children see exactly one SIGTERM.
- It exits as the trainer did: the same exit status, or the same signal.
- A command that cannot be executed exits 127 with the reason on stderr (the trial log); a
  fork that fails (no processes left) exits 74, which the backend treats as the machine's
  failure.
"""

from __future__ import annotations

import os
import signal
import sys
import time

POLL_SECONDS = 0.1
EXIT_CANNOT_EXEC = 127
EXIT_INFRASTRUCTURE = 74  # hwtune.trainer.EXIT_INFRASTRUCTURE (not imported: stdlib only here)
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # no prctl: the supervisor's group kill still applies
        pass


def _forward(signum: int, frame: object) -> None:
    # Ignored while sending, so that the supervisor does not signal itself in a loop.
    signal.signal(signum, signal.SIG_IGN)
    try:
        os.killpg(0, signum)
    finally:
        signal.signal(signum, _forward)


def _run_child(supervisor: int, argv: list[str]) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # an ignored signal stays ignored over exec
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    _die_with_parent()
    if os.getppid() != supervisor:  # the supervisor died before prctl took effect
        os._exit(1)
    try:
        os.execvp(argv[0], argv)
    except OSError as exc:
        os.write(2, f"=== hwtune: cannot run {argv[0]!r}: {exc.strerror or exc}\n".encode())
    os._exit(EXIT_CANNOT_EXEC)


def main(args: list[str]) -> int:
    if len(args) < 4 or args[2] != "--":
        os.write(2, b"usage: supervise.py TUNER_PID GRACE_SECONDS -- ARGV...\n")
        return 2
    tuner, grace, argv = int(args[0]), float(args[1]), args[3:]
    signal.signal(signal.SIGTERM, _forward)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if os.getppid() != tuner:
        return 1  # the tuner died before this started: run nothing
    me = os.getpid()
    try:
        child = os.fork()
    except OSError as exc:  # no processes left: the machine's failure, not the trial's
        os.write(2, f"=== hwtune: cannot fork the trial: {exc.strerror or exc}\n".encode())
        return EXIT_INFRASTRUCTURE
    if child == 0:
        _run_child(me, argv)
    orphaned_at: float | None = None
    while True:
        pid, status = os.waitpid(child, os.WNOHANG)
        if pid == child:
            break
        now = time.monotonic()
        if orphaned_at is None and os.getppid() != tuner:
            orphaned_at = now
            os.write(2, b"=== hwtune: the tuner is gone; stopping the trial\n")
            _forward(signal.SIGTERM, None)
        elif orphaned_at is not None and now - orphaned_at > grace:
            os.write(2, b"=== hwtune: the trial did not stop; killing it\n")
            os.killpg(0, signal.SIGKILL)  # this supervisor included
        time.sleep(POLL_SECONDS)
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            signal.signal(sig, signal.SIG_DFL)
        except (OSError, ValueError):  # SIGKILL and SIGSTOP have no handler to reset
            pass
        os.kill(me, sig)
        time.sleep(1)  # not reached for terminating signals
        return 128 + sig
    return os.waitstatus_to_exitcode(status)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
