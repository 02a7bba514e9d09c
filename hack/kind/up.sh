#!/usr/bin/env bash
# Creates a kind cluster that looks like the local control plane of hack/cluster.sh, so the
# same tests run on it: HWTUNE_TEST_KUBECONFIG=<printed path> pytest -m cluster
#
#  1. kind cluster from hack/kind/cluster.yaml (1 control plane + 1 worker per pool)
#  2. each worker becomes a node of one pool of hack/cluster/nodes.yaml: pool labels, the
#     nvidia.com/gpu taint and faked nvidia.com/gpu capacity (status subresource; no GPUs
#     and no device plugin: pods asking for GPUs are scheduled, they get no device)
#  3. unless --no-kwok: the kwok controller (release manifest, needs network), the Stage
#     objects of hack/kwok/stages.yaml and the KWOK nodes of nodes.yaml, so pods on
#     `type: kwok` nodes follow the hwtune.io/sim-* annotations exactly as on the local plane
#
# Usage: hack/kind/up.sh [--name NAME] [--no-kwok] [--delete]
# Env:   KIND_NODE_IMAGE (default kindest/node:v1.36.1), KWOK_VERSION (default v0.8.0),
#        HWTUNE_CACHE_DIR (kubeconfig goes to $HWTUNE_CACHE_DIR/clusters/kind-NAME/kubeconfig)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CACHE="${HWTUNE_CACHE_DIR:-$HOME/.cache/hwtune}"
IMAGE="${KIND_NODE_IMAGE:-kindest/node:v1.36.1}"
KWOK_VERSION="${KWOK_VERSION:-v0.8.0}"
NAME=hwtune WITH_KWOK=1 DELETE=0
while (($#)); do
  case "$1" in
    --name) NAME="$2"; shift 2 ;;
    --no-kwok) WITH_KWOK=0; shift ;;
    --delete) DELETE=1; shift ;;
    *) echo "usage: hack/kind/up.sh [--name NAME] [--no-kwok] [--delete]" >&2; exit 2 ;;
  esac
done
for tool in docker kind kubectl python3; do
  command -v "$tool" >/dev/null || { echo "up.sh: $tool is required" >&2; exit 1; }
done
KUBECONFIG_PATH="$CACHE/clusters/kind-$NAME/kubeconfig"
export KUBECONFIG="$KUBECONFIG_PATH"
nodes() { PYTHONPATH="$REPO/operator" python3 -m hwtune.testing.nodes "$@"; }

if ((DELETE)); then
  kind delete cluster --name "$NAME"
  rm -rf "$(dirname "$KUBECONFIG_PATH")"
  exit 0
fi

mkdir -p "$(dirname "$KUBECONFIG_PATH")"
if kind get clusters | grep -qx "$NAME"; then
  kind export kubeconfig --name "$NAME" --kubeconfig "$KUBECONFIG_PATH"
else
  kind create cluster --name "$NAME" --image "$IMAGE" --config "$REPO/hack/kind/cluster.yaml" \
    --kubeconfig "$KUBECONFIG_PATH" --wait 120s
fi

# Worker i (sorted by name) joins the i-th pool of nodes.yaml.
mapfile -t workers < <(kubectl get nodes -l '!node-role.kubernetes.io/control-plane' \
  -o jsonpath='{range .items[*]}{.metadata.name}{"\n"}{end}' | sort -V)
mapfile -t pools < <(nodes names | awk '!seen[$1]++ {print $1}')
((${#workers[@]} >= ${#pools[@]})) ||
  { echo "up.sh: ${#workers[@]} workers for ${#pools[@]} pools; edit hack/kind/cluster.yaml" >&2; exit 1; }
for i in "${!pools[@]}"; do
  kubectl patch node "${workers[$i]}" --type merge -p "$(nodes patch "${pools[$i]}")"
  kubectl patch node "${workers[$i]}" --subresource=status --type merge \
    -p "$(nodes patch "${pools[$i]}" --status)"
done

if ((WITH_KWOK)); then
  kubectl apply -f "https://github.com/kubernetes-sigs/kwok/releases/download/$KWOK_VERSION/kwok.yaml"
  kubectl wait --for=condition=Established crd/stages.kwok.x-k8s.io --timeout=60s
  kubectl -n kube-system rollout status deployment/kwok-controller --timeout=120s
  kubectl apply -f "$REPO/hack/kwok/stages.yaml"
  nodes render | kubectl apply -f -
  kubectl wait --for=condition=Ready node -l type=kwok --timeout=120s
fi
kubectl get nodes -L hwtune.io/pool,nvidia.com/gpu.count
echo "Run the cluster tests against it with: export HWTUNE_TEST_KUBECONFIG=$KUBECONFIG_PATH"
