#!/usr/bin/env bash
# Regenerates the CRDs (and the TuningStudy admission policy) from the pydantic models in
# operator/hwtune/api/crd.py into crds/ and the Helm chart's copy, charts/hwtune/crds/.
# tests/api/test_crds_fresh.py fails when either copy is stale.
# Env: PYTHON (default: the project venv's python if present, else python3).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv_python="${HWTUNE_VENV:-${HWTUNE_CACHE_DIR:-$HOME/.cache/hwtune}/venv}/bin/python"
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x "$venv_python" ]]; then PYTHON="$venv_python"; else PYTHON=python3; fi
fi
cd "$root"
"$PYTHON" -m hwtune.api.crdgen --out crds/ --out charts/hwtune/crds/
