#!/usr/bin/env bash
# Regenerates the chart's PrometheusRule template and Grafana dashboard JSON from
# operator/hwtune/observe/queries.py (needs the dev extra: grafana-foundation-sdk).
# tests/observe/test_chart_observe.py fails when they are stale.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv_python="${HWTUNE_VENV:-${HWTUNE_CACHE_DIR:-$HOME/.cache/hwtune}/venv}/bin/python"
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x "$venv_python" ]]; then PYTHON="$venv_python"; else PYTHON=python3; fi
fi
cd "$root"
PYTHONPATH="$root/operator${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" -m hwtune.observe.chartgen --chart charts/hwtune
