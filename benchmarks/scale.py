"""MO-ASHA at scale: asha, mo-asha, mo-asha-promotion and Syne Tune's MOASHA at 1,000 / 5,000 /
20,000 trials, each measurement beside its target. See ``hwtune.bench.scale``.

    python benchmarks/scale.py            # full table (minutes; run it niced in the background)
    python benchmarks/scale.py --quick    # CI size, a few seconds
"""

import sys

from hwtune.bench.scale import main

if __name__ == "__main__":
    sys.exit(main())
