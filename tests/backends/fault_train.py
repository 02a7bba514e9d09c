"""A tiny trainer with fault knobs for the fault tests (no torch; starts in a fraction of a
second). val_error(epoch) = (x - 0.3)^2 + 1 / epoch, like toy_train.py. Env knobs:

FAULT_SLEEP            seconds per epoch
FAULT_EVAL_SLEEP       seconds between an epoch's checkpoint and its report (an evaluation)
FAULT_HANG_AT          epoch at which the trainer hangs (after its checkpoint, before its report)
FAULT_IGNORE_SIGTERM   1: SIGTERM is ignored (a trainer stuck where signals cannot reach it)
FAULT_STAMPS           a file to which a thread appends "<pid> <wall time>" every 20 ms
FAULT_NO_REPORT        1: exit 0 without a single report
FAULT_SPAM_BYTES       write this many bytes to stdout before training
FAULT_DISK_FULL        a path: while it exists, saving a checkpoint fails with ENOSPC
FAULT_WAIT_FOR         a path: each epoch waits while it exists
"""

import errno
import os
import signal
import sys
import threading
import time

import hwtune.trainer as hwt

trial = hwt.init()
if os.environ.get("FAULT_IGNORE_SIGTERM") == "1":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
stamps = os.environ.get("FAULT_STAMPS")
if stamps:
    def stamp() -> None:
        while True:
            with open(stamps, "a") as fh:
                fh.write(f"{os.getpid()} {time.time():.6f}\n")
            time.sleep(0.02)

    threading.Thread(target=stamp, daemon=True).start()
spam = int(os.environ.get("FAULT_SPAM_BYTES", "0"))
line = b"x" * 1023 + b"\n"
for _ in range(spam // 1024):
    sys.stdout.buffer.write(line)
sys.stdout.flush()
if os.environ.get("FAULT_NO_REPORT") == "1":
    print("finishing without a report", flush=True)
    sys.exit(0)

disk_full = os.environ.get("FAULT_DISK_FULL")
if disk_full:
    store = trial.checkpoint_store
    real_save = store.save

    def save(state, resource):
        if os.path.exists(disk_full):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), store.location)
        return real_save(state, resource)

    store.save = save

x = float(trial.param("x", 0.5))
checkpoint = trial.load_checkpoint()
start = checkpoint.resource + 1 if checkpoint else 1
hang_at = int(os.environ.get("FAULT_HANG_AT", "0"))
for epoch in trial.resource_levels(start, max_resource=3):
    while os.path.exists(os.environ.get("FAULT_WAIT_FOR", "/nonexistent/")):
        time.sleep(0.05)
    time.sleep(float(os.environ.get("FAULT_SLEEP", "0")))
    trial.save_checkpoint({"epoch": epoch, "x": x}, epoch)
    if epoch == hang_at:
        print(f"hanging at epoch {epoch}", flush=True)
        while True:
            time.sleep(3600)
    time.sleep(float(os.environ.get("FAULT_EVAL_SLEEP", "0")))
    error = (x - 0.3) ** 2 + 1.0 / epoch
    decision = trial.report(epoch, val_error=error, loss=error)
    print(f"epoch {epoch} -> {decision.value}", flush=True)
sys.exit(0)
