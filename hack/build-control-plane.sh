#!/usr/bin/env bash
# Builds the local Kubernetes control plane from upstream Go modules (through the Go module
# proxy) into a cache outside the repository:
#   etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, kwok, kwokctl, helm
#
# Idempotent: every binary carries a version stamp; a second run with the cache present only
# checks stamps. Binaries are built to a temporary name and renamed into place, so an
# interrupted build never leaves a half-written binary behind.
#
# Usage: hack/build-control-plane.sh [--background] [--wait] [--print-bin-dir]
#   --background   build in the background, log to $HWTUNE_CACHE_DIR/build.log, return at once
#   --wait         wait for a background build to finish, showing its progress
#   --print-bin-dir  print the directory holding the binaries and exit
# Env: HWTUNE_CACHE_DIR (default ~/.cache/hwtune), K8S_VERSION, ETCD_VERSION, KWOK_VERSION,
#      HELM_VERSION.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-1.36.3}"
ETCD_VERSION="${ETCD_VERSION:-3.6.16}"
KWOK_VERSION="${KWOK_VERSION:-0.8.0}"
HELM_VERSION="${HELM_VERSION:-3.22.0}"
CACHE="${HWTUNE_CACHE_DIR:-$HOME/.cache/hwtune}"
BIN="$CACHE/bin"
SRC="$CACHE/src"
LOG="$CACHE/build.log"
LOCK="$CACHE/build.lock"
mkdir -p "$BIN" "$SRC"

log() { printf '[build-control-plane %(%H:%M:%S)T] %s\n' -1 "$*"; }

have() { # have NAME VERSION: the binary exists and carries this version stamp
  [[ -x "$BIN/$1" && -f "$BIN/.$1.version" && "$(cat "$BIN/.$1.version")" == "$2" ]]
}

install_bin() { # install_bin BUILT_FILE NAME VERSION: atomic rename, then stamp
  chmod +x "$1"
  mv -f "$1" "$BIN/$2"
  printf '%s' "$3" > "$BIN/.$2.version.tmp" && mv -f "$BIN/.$2.version.tmp" "$BIN/.$2.version"
}

all_present() {
  have etcd "$ETCD_VERSION" && have kube-apiserver "$K8S_VERSION" &&
    have kube-controller-manager "$K8S_VERSION" && have kube-scheduler "$K8S_VERSION" &&
    have kubectl "$K8S_VERSION" && have kwok "$KWOK_VERSION" && have kwokctl "$KWOK_VERSION" &&
    have helm "$HELM_VERSION"
}

# A wrapper module that requires the upstream module; k8s.io/kubernetes points its staging
# modules at ./staging, so every staging replace is redirected to the published v0.x version.
wrapper_module() { # wrapper_module DIR MODULE VERSION [replace lines...]
  local dir="$1" mod="$2" ver="$3"; shift 3
  mkdir -p "$dir"
  {
    echo "module hwtune.local/build/$(basename "$dir")"
    echo "go 1.26"
    echo "require $mod $ver"
    for r in "$@"; do echo "replace $r"; done
  } > "$dir/go.mod"
}

build_kubernetes() {
  local dir="$SRC/kubernetes-$K8S_VERSION" modfile staging=() m
  modfile=$(go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
  # "k8s.io/api => ./staging/src/k8s.io/api" -> "k8s.io/api => k8s.io/api v0.36.3"
  while read -r m; do
    staging+=("$m => $m v0.${K8S_VERSION#1.}")
  done < <(grep -E '^\s*k8s\.io/[^ ]+ => \./staging/' "$modfile" | awk '{print $1}')
  log "kubernetes v$K8S_VERSION: ${#staging[@]} staging modules -> v0.${K8S_VERSION#1.}"
  wrapper_module "$dir" k8s.io/kubernetes "v$K8S_VERSION" "${staging[@]}"
  local cmds=(kube-apiserver kube-controller-manager kube-scheduler kubectl) c pkgs=()
  for c in "${cmds[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$c"); done
  (cd "$dir" && go get "${pkgs[@]/%/@v$K8S_VERSION}" >/dev/null 2>&1 || go get "${pkgs[@]}")
  for c in "${cmds[@]}"; do
    if have "$c" "$K8S_VERSION"; then continue; fi
    log "building $c v$K8S_VERSION (minutes on a cold cache)"
    (cd "$dir" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w \
      -X k8s.io/component-base/version.gitVersion=v$K8S_VERSION \
      -X k8s.io/component-base/version.gitMajor=1 \
      -X k8s.io/component-base/version.gitMinor=${K8S_VERSION#1.} \
      -X k8s.io/client-go/pkg/version.gitVersion=v$K8S_VERSION" \
      -o "$BIN/.$c.tmp" "k8s.io/kubernetes/cmd/$c")
    install_bin "$BIN/.$c.tmp" "$c" "$K8S_VERSION"
    log "built $c"
  done
}

build_etcd() {
  have etcd "$ETCD_VERSION" && return
  local dir="$SRC/etcd-$ETCD_VERSION"
  wrapper_module "$dir" go.etcd.io/etcd/server/v3 "v$ETCD_VERSION"
  log "building etcd v$ETCD_VERSION"
  (cd "$dir" && go get "go.etcd.io/etcd/server/v3@v$ETCD_VERSION" >/dev/null &&
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$BIN/.etcd.tmp" go.etcd.io/etcd/server/v3)
  install_bin "$BIN/.etcd.tmp" etcd "$ETCD_VERSION"
  log "built etcd"
}

build_plain() { # build_plain NAME MODULE PACKAGE VERSION: modules with no replaces
  have "$1" "$4" && return
  local dir="$SRC/$1-$4"
  wrapper_module "$dir" "$2" "v$4"
  log "building $1 v$4"
  (cd "$dir" && go get "$3@v$4" >/dev/null &&
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w $5" -o "$BIN/.$1.tmp" "$3")
  install_bin "$BIN/.$1.tmp" "$1" "$4"
  log "built $1"
}

build_all() {
  exec 9>"$LOCK"
  if ! flock -n 9; then log "another build holds $LOCK; waiting"; flock 9; fi
  if all_present; then log "all binaries present in $BIN"; return 0; fi
  local start=$SECONDS
  export GOFLAGS="${GOFLAGS:--buildvcs=false}" GOTOOLCHAIN=local
  build_etcd
  build_plain kwok sigs.k8s.io/kwok sigs.k8s.io/kwok/cmd/kwok "$KWOK_VERSION" \
    "-X sigs.k8s.io/kwok/pkg/consts.Version=v$KWOK_VERSION"
  build_plain kwokctl sigs.k8s.io/kwok sigs.k8s.io/kwok/cmd/kwokctl "$KWOK_VERSION" \
    "-X sigs.k8s.io/kwok/pkg/consts.Version=v$KWOK_VERSION"
  build_plain helm helm.sh/helm/v3 helm.sh/helm/v3/cmd/helm "$HELM_VERSION" \
    "-X helm.sh/helm/v3/internal/version.version=v$HELM_VERSION"
  build_kubernetes
  all_present || { log "some binaries are still missing"; return 1; }
  log "done in $((SECONDS - start))s; binaries in $BIN"
}

case "${1:-}" in
  --print-bin-dir) echo "$BIN" ;;
  --background)
    if all_present; then log "all binaries present in $BIN"; exit 0; fi
    nohup "$0" > "$LOG" 2>&1 < /dev/null &
    echo $! > "$CACHE/build.pid"
    log "building in the background (pid $!); progress: tail -f $LOG; wait: $0 --wait"
    ;;
  --wait)
    while [[ -f "$CACHE/build.pid" ]] && kill -0 "$(cat "$CACHE/build.pid")" 2>/dev/null; do
      tail -n 1 "$LOG" 2>/dev/null; sleep 20
    done
    all_present || { log "build failed; last lines of $LOG:"; tail -n 30 "$LOG"; exit 1; }
    log "all binaries present in $BIN"
    ;;
  "") build_all ;;
  *) echo "unknown argument: $1" >&2; exit 2 ;;
esac
