"""A tiny trainer for backend and CLI tests: no torch, starts in a fraction of a second.

val_error(epoch) = (x - 0.3)^2 + 1 / epoch (also reported as loss). Env knobs (set in the trial template's container env):
TOY_SLEEP seconds per epoch; TOY_CRASH_TRIAL the trial id that raises at epoch 1.
"""

import os
import sys
import time

import hwtune.trainer as hwt

trial = hwt.init()
x = float(trial.param("x", trial.param("lr", 0.5)))
checkpoint = trial.load_checkpoint()
start = checkpoint.resource + 1 if checkpoint else 1
if checkpoint:
    print(f"resumed from the checkpoint of epoch {checkpoint.resource}", flush=True)
for epoch in trial.resource_levels(start, max_resource=3):
    time.sleep(float(os.environ.get("TOY_SLEEP", "0")))
    if os.environ.get("TOY_CRASH_TRIAL") == trial.id:
        print("about to fail", flush=True)
        raise RuntimeError(f"boom in trial {trial.id} at epoch {epoch}")
    trial.save_checkpoint({"epoch": epoch, "x": x}, epoch)
    error = (x - 0.3) ** 2 + 1.0 / epoch
    decision = trial.report(epoch, val_error=error, loss=error)
    print(f"epoch {epoch} -> {decision.value}", flush=True)
sys.exit(0)
