#!/usr/bin/env bash
# The test command (README and .ci/run call exactly this). On a fresh machine it installs
# everything it needs: the virtualenv (hack/setup-venv.sh) and the local Kubernetes control plane
# (hack/build-control-plane.sh, built from upstream Go modules), both cached outside the repo
# under ${HWTUNE_CACHE_DIR:-~/.cache/hwtune} and reused when present. Then it runs the whole test
# suite, cluster tests included, and exits non-zero if anything fails.
# Extra arguments go to pytest (e.g. hack/test.sh -m "not cluster" tests/optimize).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
start=$SECONDS
stamp() { printf '[hwtune test %(%H:%M:%S)T +%ss] %s\n' -1 "$((SECONDS - start))" "$*"; }

# The Go build is CPU-bound and the venv install mostly network-bound: overlap them.
stamp "control plane: build or reuse (background)"
hack/build-control-plane.sh --background
stamp "system: Debian's prometheus for the metrics tests (installed once, never started as a service)"
bash hack/install-prometheus.sh
stamp "python: create or reuse the virtualenv"
venv=$(hack/setup-venv.sh)
stamp "python ready: $venv"
stamp "control plane: waiting for the build"
hack/build-control-plane.sh --wait
export PATH="$(hack/build-control-plane.sh --print-bin-dir):$venv/bin:$PATH"

stamp "layering: lint-imports"
lint-imports --no-cache
stamp "pytest"
set +e
python -m pytest "$@"
rc=$?
set -e
stamp "pytest exit code $rc"
# pytest exits 5 when it collected nothing: that is a broken suite, not a pass.
exit "$rc"
