#!/usr/bin/env bash
# The demo (README's first command). On a fresh machine it installs what it needs and then:
#   default     runs a real multi-objective study on the embedded (local) default: the reference
#               PyTorch trainer as local processes, MO-ASHA over quality/runtime/cost with GPU
#               pools simulated by the hardware model; ends with the Pareto front and a plot.
#   --cluster   runs a real study on the local Kubernetes control plane (real API server,
#               scheduler and Job controller; KWOK GPU pools): the operator launches the trials
#               as Jobs, the simulated trainer plays their pods' trainers, and the study's
#               status, trials and Pareto front are printed with kubectl (hack/demo-cluster.sh).
# Output goes to ./runs/demo (override with HWTUNE_DEMO_DIR).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
venv=$(hack/setup-venv.sh)
export PATH="$venv/bin:$PATH"
out="${HWTUNE_DEMO_DIR:-$root/runs/demo}"

if [[ "${1:-}" == "--cluster" ]]; then
  exec bash hack/demo-cluster.sh
fi

rm -rf "$out"
hwtune tune examples/local-study.yaml --workdir "$out" --plot "$out/front.png"
echo "Pareto front plot: $out/front.png"
