#!/usr/bin/env bash
# `bash hack/demo.sh --cluster`: a real study on the local Kubernetes control plane.
#
# Starts the local control plane (hack/cluster.sh: real API server, scheduler and Job
# controller; KWOK simulates the GPU nodes of hack/cluster/nodes.yaml), applies the CRDs and
# examples/pools.yaml, starts the operator (`hwtune operator`) and the simulated trainer
# (`python -m hwtune.testing.simtrainer`, which plays the trainer of every trial pod by replaying
# benchmarks/tables/digits-quick.jsonl through the operator's report endpoint), applies
# examples/kwok-study.yaml and waits until the study completes; then prints `kubectl get` of the
# study, its trials and the Pareto front, and stops everything it started.
#
# Expects hwtune on PATH (hack/demo.sh sets up the venv). Env: HWTUNE_DEMO_DIR (logs and
# checkpoints, default ./runs/demo-cluster), HWTUNE_DEMO_TIMEOUT (seconds, default 900),
# HWTUNE_DEMO_TIME_SCALE (simulated seconds per wall second, default 0.2),
# HWTUNE_DEMO_KEEP=1 (leave the cluster running; `hack/cluster.sh down --name demo` stops it).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
out="${HWTUNE_DEMO_DIR:-$root/runs/demo-cluster}"
timeout="${HWTUNE_DEMO_TIMEOUT:-900}"
time_scale="${HWTUNE_DEMO_TIME_SCALE:-0.2}"
namespace=ml-team
study=digits-kwok
cluster=demo

hack/build-control-plane.sh
export PATH="$(hack/build-control-plane.sh --print-bin-dir):$PATH"
rm -rf "$out"
mkdir -p "$out"

pids=()
cleanup() {
  local status=$?
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  if [[ "${HWTUNE_DEMO_KEEP:-0}" == "1" ]]; then
    echo "cluster left running: eval \"\$(hack/cluster.sh env --name $cluster)\"" >&2
  else
    hack/cluster.sh down --name "$cluster" >/dev/null || true
  fi
  exit "$status"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

hack/cluster.sh up --name "$cluster"
eval "$(hack/cluster.sh env --name "$cluster")"
kubectl apply -f crds/ >/dev/null
kubectl wait --for=condition=Established crd --all --timeout=60s >/dev/null
kubectl apply -f examples/pools.yaml
kubectl create namespace "$namespace" --dry-run=client -o yaml | kubectl apply -f - >/dev/null

# The operator's report endpoint is what runs studies; an operator without one only admits them.
operator_help=$(hwtune operator --help 2>/dev/null || true)
if [[ "$operator_help" != *--report-port* ]]; then
  echo "This hwtune's operator does not run studies yet (no report endpoint): showing the"
  echo "CRDs on the cluster instead."
  kubectl apply -n "$namespace" -f examples/study.yaml
  echo; kubectl get nodes -L hwtune.io/pool,nvidia.com/gpu.count
  echo; kubectl get hardwarepools
  echo; kubectl get tuningstudies -A
  echo; echo "An invalid study is refused by the API server itself:"
  sed 's/goal: minimize/goal: minimise/' examples/study.yaml | kubectl apply -n "$namespace" -f - || true
  exit 0
fi

report_port=$(free_port)
webhook_port=$(free_port)
metrics=()
[[ "$operator_help" == *--metrics-port* ]] && metrics=(--metrics-port "$(free_port)")
echo "operator: report endpoint on 127.0.0.1:$report_port (log: $out/operator.log)"
# The master key of report tokens (the chart keeps it in a Secret), so a restarted operator
# derives the same tokens.
HWTUNE_OPERATOR_KEY=$(python -c "import secrets; print(secrets.token_hex(32))") \
hwtune operator --kubeconfig "$KUBECONFIG" --namespace "$namespace" --standalone \
  --webhook-host 127.0.0.1 --webhook-port "$webhook_port" --report-port "$report_port" \
  "${metrics[@]}" > "$out/operator.log" 2>&1 &
pids+=($!)
echo "simulated trainer: time scale $time_scale (log: $out/simtrainer.log)"
python -m hwtune.testing.simtrainer --kubeconfig "$KUBECONFIG" --namespace "$namespace" \
  --time-scale "$time_scale" --report-url "http://127.0.0.1:$report_port" \
  --checkpoint-root "$out/checkpoints" > "$out/simtrainer.log" 2>&1 &
pids+=($!)

# The webhook must be registered before the study is applied (its pool checks are admission).
for _ in $(seq 1 60); do
  if kubectl apply -n "$namespace" -f examples/kwok-study.yaml 2>"$out/apply.err"; then
    break
  fi
  for pid in "${pids[@]}"; do
    kill -0 "$pid" 2>/dev/null || { echo "a demo process died; see $out/*.log" >&2; exit 1; }
  done
  sleep 1
done
kubectl get -n "$namespace" tuningstudy "$study" >/dev/null || { cat "$out/apply.err" >&2; exit 1; }

echo "waiting for study $study to complete (timeout ${timeout}s)..."
start=$SECONDS
phase=""
while (( SECONDS - start < timeout )); do
  phase=$(kubectl get -n "$namespace" tuningstudy "$study" -o jsonpath='{.status.phase}')
  [[ "$phase" == "Completed" || "$phase" == "Failed" ]] && break
  for pid in "${pids[@]}"; do
    kill -0 "$pid" 2>/dev/null || { echo "a demo process died; see $out/*.log" >&2; exit 1; }
  done
  if (( (SECONDS - start) % 15 == 0 )); then
    kubectl get -n "$namespace" tuningstudy "$study" --no-headers 2>/dev/null || true
  fi
  sleep 1
done

echo; kubectl get -n "$namespace" tuningstudies -o wide
echo; kubectl get -n "$namespace" tuningtrials --sort-by=.spec.trialId
echo; echo "Pareto front of $study:"
kubectl get -n "$namespace" tuningstudy "$study" -o json > "$out/study.json"
python3 - "$out/study.json" <<'PY'
import json
import sys

with open(sys.argv[1]) as fh:
    status = json.load(fh).get("status") or {}
front = status.get("paretoFront") or []
names = sorted({k for p in front for k in p.get("objectives", {})})
print(f"  {'TRIAL':<24} {'HARDWARE':<10} " + " ".join(f"{n.upper():>12}" for n in names))
for p in sorted(front, key=lambda p: p.get("trialId", 0)):
    hw = p.get("hardware") or {}
    where = f"{hw.get('pool', '-')}x{hw.get('gpuCount', 1)}" if hw else "-"
    values = " ".join(f"{p['objectives'].get(n, float('nan')):>12.4g}" for n in names)
    print(f"  {p.get('trial', ''):<24} {where:<10} {values}")
if not front:
    print("  (empty)")
PY
echo; echo "An invalid study is refused by the API server itself:"
sed 's/goal: minimize/goal: minimise/' examples/kwok-study.yaml | kubectl apply -n "$namespace" -f - || true
echo; echo "simulated trainer: $(grep -c ': completed\|: stopped\|: paused\|: failed\|: preempted' "$out/simtrainer.log" || true) pod ends (log: $out/simtrainer.log)"
if [[ "$phase" != "Completed" ]]; then
  echo "study $study did not complete (phase: ${phase:-none}) within ${timeout}s" >&2
  exit 1
fi
