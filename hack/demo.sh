#!/usr/bin/env bash
# The demo (README's first command). On a fresh machine it installs what it needs and then:
#   default     runs a real multi-objective study on the embedded (local) default: the reference
#               PyTorch trainer as local processes, MO-ASHA over quality/runtime/cost with GPU
#               pools simulated by the hardware model; ends with the Pareto front and a plot.
#   --cluster   starts the local Kubernetes control plane (real API server, KWOK GPU pools),
#               applies the CRDs, the example HardwarePools and TuningStudy, and shows them with
#               kubectl get (printer columns), then stops the cluster.
# Output goes to ./runs/demo (override with HWTUNE_DEMO_DIR).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
venv=$(hack/setup-venv.sh)
export PATH="$venv/bin:$PATH"
out="${HWTUNE_DEMO_DIR:-$root/runs/demo}"

if [[ "${1:-}" == "--cluster" ]]; then
  hack/build-control-plane.sh
  export PATH="$(hack/build-control-plane.sh --print-bin-dir):$PATH"
  hack/cluster.sh up --name demo
  eval "$(hack/cluster.sh env --name demo)"
  trap 'hack/cluster.sh down --name demo' EXIT
  kubectl apply -f crds/
  kubectl wait --for=condition=Established crd --all --timeout=60s
  kubectl apply -f examples/pools.yaml
  kubectl create namespace ml-team --dry-run=client -o yaml | kubectl apply -f -
  kubectl apply -n ml-team -f examples/study.yaml
  echo; kubectl get nodes -L hwtune.io/pool,nvidia.com/gpu.count
  echo; kubectl get hardwarepools
  echo; kubectl get tuningstudies -A
  echo; echo "An invalid study is refused by the API server itself:"
  sed 's/goal: minimize/goal: minimise/' examples/study.yaml | kubectl apply -n ml-team -f - || true
  exit 0
fi

rm -rf "$out"
hwtune tune examples/local-study.yaml --workdir "$out" --plot "$out/front.png"
echo "Pareto front plot: $out/front.png"
