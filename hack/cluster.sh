#!/usr/bin/env bash
# A real Kubernetes control plane on this machine, with no Docker: etcd, kube-apiserver,
# kube-controller-manager (Job controller, garbage collector, ...), kube-scheduler and the
# kwok controller run as plain processes on 127.0.0.1, and KWOK simulates the GPU node pools
# of hack/cluster/nodes.yaml and the pod lifecycles of hack/kwok/stages.yaml.
#
# How: kwokctl's "binary" runtime, pointed at the binaries that hack/build-control-plane.sh
# built into the cache (it never downloads: every binary is given as a local path). kwokctl
# generates the PKI (admin client certificate, service-account signing key), picks free ports
# for every component, starts each process in its own session with a pid file and a log file,
# and stops them again on delete. This script adds the node pools, the readiness checks and
# the kubeconfig location the tests use.
#
# Usage: hack/cluster.sh up|down|status|env [--name NAME]
#   up      start the cluster (already running: checks it and returns); waits until /readyz is
#           ok, the default namespace and service account exist and every node is Ready
#   down    stop every process of the cluster and remove its state
#   status  print the components and their health; exit 0 only when the cluster is ready
#   env     print shell exports for the cluster: eval "$(hack/cluster.sh env)"
#
# State: ${HWTUNE_CACHE_DIR:-~/.cache/hwtune}/clusters/NAME (kubeconfig, pki/, logs/, pids/, etcd/)
# Env:   HWTUNE_CACHE_DIR, HWTUNE_BIN_DIR (default $HWTUNE_CACHE_DIR/bin), HWTUNE_NODES_FILE,
#        HWTUNE_PYTHON (interpreter for the node renderer), HWTUNE_UP_TIMEOUT (seconds, 120)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${HWTUNE_CACHE_DIR:-$HOME/.cache/hwtune}"
BIN="${HWTUNE_BIN_DIR:-$CACHE/bin}"
STAGES="$REPO/hack/kwok/stages.yaml"
UP_TIMEOUT="${HWTUNE_UP_TIMEOUT:-120}"
COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok kwokctl kubectl)

usage() { sed -n '14,19p' "$0" | sed 's/^# \{0,1\}//'; }
die() { echo "cluster.sh: $*" >&2; exit 1; }
log() { printf '[cluster %s %(%H:%M:%S)T] %s\n' "$NAME" -1 "$*" >&2; }

COMMAND="" NAME=hwtune
while (($#)); do
  case "$1" in
    --name) [[ $# -ge 2 ]] || die "--name needs a value"; NAME="$2"; shift 2 ;;
    --name=*) NAME="${1#--name=}"; shift ;;
    -h|--help|help) usage; exit 0 ;;
    up|down|status|env) [[ -z "$COMMAND" ]] || die "one command at a time, got '$COMMAND' and '$1'"
      COMMAND="$1"; shift ;;
    *) die "unknown argument: $1 (usage: hack/cluster.sh up|down|status|env [--name NAME])" ;;
  esac
done
[[ -n "$COMMAND" ]] || { usage >&2; exit 2; }
[[ "$NAME" =~ ^[a-z0-9][a-z0-9-]{0,39}$ ]] ||
  die "--name: must be 1-40 characters of a-z 0-9 - starting with a letter or digit, got '$NAME'"

CLUSTERS="$CACHE/clusters"
# flock files and scratch space, outside $CLUSTERS: kwokctl treats every directory there as a
# cluster. Lock files are never removed while in use (the test fixture reaps finished ones).
LOCKS="$CACHE/cluster-locks"
DIR="$CLUSTERS/$NAME"
KUBECONFIG_PATH="$DIR/kubeconfig"

# fd 8 (the cluster lock) is closed for kwokctl: the components it starts would inherit it and
# hold the lock for as long as the cluster runs.
# $BIN leads PATH: kwokctl probes the API server with the first kubectl on PATH.
kwokctl() { PATH="$BIN:$PATH" KWOK_WORKDIR="$CACHE" "$BIN/kwokctl" --name "$NAME" "$@" 8>&-; }
# A discovery cache per cluster: ports are reused, and kubectl's default cache is keyed by host:port.
kc() {
  "$BIN/kubectl" --kubeconfig "$KUBECONFIG_PATH" --cache-dir "$DIR/.kube-cache" \
    --request-timeout=10s "$@"
}

python_bin() {
  if [[ -n "${HWTUNE_PYTHON:-}" ]]; then echo "$HWTUNE_PYTHON"
  elif [[ -x "$CACHE/venv/bin/python" ]]; then echo "$CACHE/venv/bin/python"
  else command -v python3 || die "no python3 found (set HWTUNE_PYTHON)"; fi
}

check_binaries() {
  local missing=() c
  for c in "${COMPONENTS[@]}"; do [[ -x "$BIN/$c" ]] || missing+=("$c"); done
  ((${#missing[@]} == 0)) && return 0
  die "missing control-plane binaries in $BIN: ${missing[*]}.
Build them once with: hack/build-control-plane.sh (or --background, then --wait)."
}

# Every process the cluster runs, from kwokctl's pid files: "component pid" lines.
cluster_pids() {
  local f
  [[ -d "$DIR/pids" ]] || return 0
  for f in "$DIR"/pids/*.pid; do
    [[ -f "$f" ]] && printf '%s %s\n' "$(basename "$f" .pid)" "$(cat "$f")"
  done
}

# True when PID is alive and runs one of our binaries (pid files can outlive a reboot, and
# the number may belong to somebody else's process by now).
ours_alive() {
  local exe
  kill -0 "$1" 2>/dev/null || return 1
  exe="$(readlink "/proc/$1/exe" 2>/dev/null)" || return 1
  [[ "${exe% (deleted)}" == "$(realpath "$BIN")"/* ]]
}

all_components_alive() { # the five components kwokctl started all still run
  local comp pid count=0
  while read -r comp pid; do ours_alive "$pid" || return 1; count=$((count + 1)); done \
    < <(cluster_pids)
  ((count >= 5))
}

apiserver_ready() {
  [[ -f "$KUBECONFIG_PATH" ]] && [[ "$(kc get --raw /readyz 2>/dev/null)" == "ok" ]]
}

wait_until() { # wait_until SECONDS WHAT COMMAND...: poll COMMAND until it succeeds
  local deadline=$((SECONDS + $1)) what="$2"; shift 2
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || { log "timed out after $UP_TIMEOUT s waiting for $what"; return 1; }
    sleep 0.25
  done
}

# The Job controller syncs 5 Jobs at a time by default: with hundreds of trial Jobs made per
# minute (benchmarks/operator_scale.py) it, not the operator, decides when their pods exist.
# One instance each, so no leader election: on a starved machine (a niced cluster beside a
# busy one) a renewal that misses its 10 s deadline made the controller manager and the
# scheduler exit ("leaderelection lost"), and nothing restarts them.
EXTRA_ARGS=(--extra-args kube-controller-manager=concurrent-job-syncs=50
            --extra-args kube-controller-manager=leader-elect=false
            --extra-args kube-scheduler=leader-elect=false)

# The kwokctl configuration: local binaries only, loopback only, then our Stage documents.
write_config() {
  cat > "$1" <<EOF
apiVersion: config.kwok.x-k8s.io/v1alpha1
kind: KwokctlConfiguration
options:
  runtime: binary
  bindAddress: 127.0.0.1
  securePort: true
  disableQPSLimits: true
  cacheDir: $CACHE/kwokctl-cache
  etcdBinary: $BIN/etcd
  kubeApiserverBinary: $BIN/kube-apiserver
  kubeControllerManagerBinary: $BIN/kube-controller-manager
  kubeSchedulerBinary: $BIN/kube-scheduler
  kwokControllerBinary: $BIN/kwok
  kubectlBinary: $BIN/kubectl
  nodeLeaseDurationSeconds: 40
  # Logs objects (kwok.x-k8s.io) tell the kwok server which file is a container's log: the
  # simulated trainer's exec mode writes one per pod, so `kubectl logs` (and the operator's
  # metrics collector) read what the pod's command printed.
  enableCRDs: [Logs]
---
EOF
  cat "$STAGES" >> "$1"
}

WANT_NODES=""
nodes_ready() { # every node from nodes.yaml exists and is Ready
  local ready
  [[ -n "$WANT_NODES" ]] ||
    WANT_NODES="$(PYTHONPATH="$REPO/operator" "$(python_bin)" -m hwtune.testing.nodes names | wc -l)"
  ready="$(kc get nodes -l type=kwok -o \
    jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' |
    grep -c '^True$')" || true
  [[ "$ready" -ge "$WANT_NODES" ]]
}

apply_nodes() {
  local manifest
  manifest="$(PYTHONPATH="$REPO/operator" "$(python_bin)" -m hwtune.testing.nodes render)" ||
    die "could not render the node pools (see the error above)"
  kc apply -f - <<<"$manifest" >/dev/null
}

cmd_up() {
  check_binaries
  [[ -f "$STAGES" ]] || die "missing $STAGES"
  local start=$SECONDS out
  mkdir -p "$CLUSTERS" "$LOCKS"
  if [[ -d "$DIR" ]]; then
    # A slow API server (a busy machine) is waited for below; only a cluster with a dead
    # component is started afresh.
    if all_components_alive; then
      log "already running"
    else
      log "found a cluster with stopped components; recreating it"
      cmd_down
    fi
  fi
  if ! [[ -d "$DIR" ]]; then
    local cfg createlog
    # Fixed names (the per-name lock is held): a killed run leaves nothing new behind.
    cfg="$LOCKS/$NAME.config.yaml" createlog="$LOCKS/$NAME.create.log"
    write_config "$cfg"
    log "starting etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok"
    # kwokctl picks free ports and binds them later: one creation at a time on this machine.
    if ! (exec 7>"$LOCKS/create.lock"; flock -w "$UP_TIMEOUT" 7 &&
          kwokctl create cluster --config "$cfg" --kubeconfig "" --timeout "${UP_TIMEOUT}s" \
            "${EXTRA_ARGS[@]}" 7>&-) \
        >"$createlog" 2>&1; then
      cat "$createlog" >&2
      rm -f "$cfg" "$createlog"
      cmd_down >/dev/null 2>&1 || true
      die "kwokctl could not create cluster $NAME (its output is above)"
    fi
    mkdir -p "$DIR/logs" && mv "$createlog" "$DIR/logs/kwokctl-create.log"
    rm -f "$cfg"
    cp "$DIR/kubeconfig.yaml" "$KUBECONFIG_PATH"
  fi
  wait_until "$UP_TIMEOUT" "kube-apiserver /readyz" apiserver_ready || up_failed
  apply_nodes
  wait_until "$UP_TIMEOUT" "namespace default" kc get namespace default || up_failed
  wait_until "$UP_TIMEOUT" "service account default/default" \
    kc -n default get serviceaccount default || up_failed
  wait_until "$UP_TIMEOUT" "every node to be Ready" nodes_ready || up_failed
  out="$(kc get nodes --no-headers | wc -l)"
  log "ready in $((SECONDS - start))s: $out nodes, $(kc config view --minify -o jsonpath='{.clusters[0].cluster.server}')"
  cat <<EOF
Cluster $NAME is up. Use it with:
  export KUBECONFIG=$KUBECONFIG_PATH
  export PATH=$BIN:\$PATH
Stop it with: hack/cluster.sh down --name $NAME
EOF
}

# A cluster that did not come up is stopped (no processes left behind); its logs are kept.
up_failed() {
  local kept="$CACHE/failed-clusters/$NAME"
  log "last lines of the component logs:"
  tail -n 5 "$DIR"/logs/*.log >&2 2>/dev/null || true
  rm -rf "$kept" && mkdir -p "$kept" && cp -r "$DIR/logs/." "$kept/" 2>/dev/null || true
  cmd_down
  die "cluster $NAME did not become ready; it was stopped, its logs are in $kept"
}

cmd_down() {
  if ! [[ -d "$DIR" ]]; then log "not running (no state in $DIR)"; return 0; fi
  # Only pids that run our binaries now: after that, "gone" simply means kill -0 fails.
  local pids=() comp pid
  while read -r comp pid; do ours_alive "$pid" && pids+=("$pid"); done < <(cluster_pids)
  if [[ -x "$BIN/kwokctl" ]]; then
    # kwokctl wants a kubeconfig to remove its context from: give it the one we delete anyway.
    kwokctl delete cluster --kubeconfig "$KUBECONFIG_PATH" >"$LOCKS/$NAME.delete.log" 2>&1 ||
      log "kwokctl delete failed ($(tail -n 1 "$LOCKS/$NAME.delete.log")); stopping the processes directly"
    rm -f "$LOCKS/$NAME.delete.log"
  fi
  # kwokctl signals and returns; wait until every process has really exited (TERM for any it
  # missed), then KILL what is left after 10 s.
  local deadline=$((SECONDS + 10)) left
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  while :; do
    left=()
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && left+=("$pid"); done
    ((${#left[@]} == 0)) && break
    if ((SECONDS >= deadline)); then
      log "killing processes that ignored TERM: ${left[*]}"
      kill -KILL "${left[@]}" 2>/dev/null || true
      break
    fi
    sleep 0.2
  done
  rm -rf "$DIR"
  rm -f "$LOCKS/$NAME.config.yaml" "$LOCKS/$NAME.create.log"
  log "stopped and removed"
}

cmd_status() {
  if ! [[ -d "$DIR" ]]; then echo "cluster $NAME: not created"; return 1; fi
  local comp pid ok=0
  echo "cluster $NAME ($DIR)"
  while read -r comp pid; do
    if ours_alive "$pid"; then echo "  $comp: running (pid $pid)"; else echo "  $comp: NOT running"; ok=1; fi
  done < <(cluster_pids)
  if apiserver_ready; then
    echo "  apiserver: $(kc config view --minify -o jsonpath='{.clusters[0].cluster.server}') /readyz ok"
    echo "  nodes: $(kc get nodes --no-headers 2>/dev/null | awk '$2=="Ready"' | wc -l) Ready of $(kc get nodes --no-headers 2>/dev/null | wc -l)"
    nodes_ready || ok=1
  else
    echo "  apiserver: not ready"; ok=1
  fi
  echo "  kubeconfig: $KUBECONFIG_PATH"
  return $ok
}

cmd_env() {
  [[ -f "$KUBECONFIG_PATH" ]] || die "cluster $NAME is not up (run: hack/cluster.sh up --name $NAME)"
  printf 'export KUBECONFIG=%q\nexport PATH=%q:"$PATH"\n' "$KUBECONFIG_PATH" "$BIN"
}

# One up/down at a time per cluster: concurrent test sessions must not interleave them.
lock_cluster() {
  mkdir -p "$LOCKS"
  exec 8>"$LOCKS/$NAME.lock"
  flock -w "$UP_TIMEOUT" 8 || die "another hack/cluster.sh holds $LOCKS/$NAME.lock"
}

case "$COMMAND" in
  up) lock_cluster; cmd_up ;;
  down) lock_cluster; cmd_down ;;
  status) cmd_status ;;
  env) cmd_env ;;
esac
