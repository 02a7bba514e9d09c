#!/usr/bin/env bash
# Installs Debian's prometheus package (prometheus + promtool) for the metrics tests, once:
# a no-op when both binaries are on PATH. The Debian service is never started (policy-rc.d
# refuses service starts during the install); tests start their own on 127.0.0.1.
set -euo pipefail
if command -v prometheus >/dev/null && command -v promtool >/dev/null; then
  exit 0
fi
sudo=""
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null || { echo "install-prometheus: need root or sudo to apt-get install prometheus" >&2; exit 1; }
  sudo="sudo"
fi
policy=/usr/sbin/policy-rc.d
created_policy=""
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
  $sudo chmod +x "$policy"
  created_policy=1
fi
cleanup() { if [ -n "$created_policy" ]; then $sudo rm -f "$policy"; fi; }
trap cleanup EXIT
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get install -y --no-install-recommends prometheus \
  || { $sudo apt-get update && $sudo apt-get install -y --no-install-recommends prometheus; }
command -v prometheus >/dev/null && command -v promtool >/dev/null
