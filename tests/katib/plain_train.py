"""A training script that knows nothing of hwtune: it reads its hyperparameters from argv and
prints Katib-style ``name=value`` lines (or JSON lines with --json). Nothing imports hwtune."""

import argparse
import json
import math
import sys
import time

parser = argparse.ArgumentParser()
parser.add_argument("--learning-rate", type=float, required=True)
parser.add_argument("--epochs", type=int, default=9)
parser.add_argument("--json", action="store_true")
parser.add_argument("--silent", action="store_true", help="print no metric at all")
parser.add_argument("--sleep", type=float, default=0.05)
args = parser.parse_args()

# The best learning rate is 0.1; the loss falls with the epochs.
for epoch in range(1, args.epochs + 1):
    time.sleep(args.sleep)
    loss = abs(math.log10(args.learning_rate) + 1.0) + 1.0 / epoch
    if args.silent:
        print(f"epoch {epoch} done")
    elif args.json:
        print(json.dumps({"epoch": epoch, "loss": round(loss, 6)}))
    else:
        print(f"Epoch {epoch}/{args.epochs}")
        print(f"epoch={epoch} loss={loss:.6f} lr={args.learning_rate} "
              f"accuracy={1.0 / (1.0 + loss):.6f}")
    sys.stdout.flush()
print("training finished")
