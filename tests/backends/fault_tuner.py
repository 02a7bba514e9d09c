"""``LocalStudyRun`` in its own process, for tests that kill the tuner with SIGKILL:
``python fault_tuner.py WORKDIR SPEC_JSON [--resume] [--options JSON]``. Options are
``LocalBackend`` keyword arguments (``inactivity`` as a dict of ``InactivityLimit`` fields).
Prints ``started <pid>`` once the study runs; exits 0 when it finishes, 75 after an
infrastructure failure."""

from __future__ import annotations

import argparse
import json
import sys

from hwtune.backends.local import LocalStudyRun
from hwtune.backends.local.backend import InactivityLimit


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("workdir")
    parser.add_argument("spec")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--options", default="{}")
    args = parser.parse_args()
    options = json.loads(args.options)
    if "inactivity" in options:
        options["inactivity"] = InactivityLimit(**options["inactivity"])
    with open(args.spec) as fh:
        spec = json.load(fh)
    run = LocalStudyRun("faults", spec, workdir=args.workdir, resume=args.resume,
                        backend_options=options)
    print("started", flush=True)
    result = run.run()
    print(f"done: {result.stop_reason}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
