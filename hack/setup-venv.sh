#!/usr/bin/env bash
# Creates (or reuses) the project's virtual environment outside the repository and installs
# hwtune with every extra, at the versions of hack/constraints.txt. Idempotent: a stamp of the
# hash of pyproject.toml and the constraints skips a second install.
# Env: HWTUNE_VENV (default ~/.cache/hwtune/venv). Prints the venv path last.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
VENV="${HWTUNE_VENV:-${HWTUNE_CACHE_DIR:-$HOME/.cache/hwtune}/venv}"
stamp="$VENV/.hwtune-install-stamp"
want=$( (cat "$root/pyproject.toml" "$root/hack/constraints.txt"; echo "$root") | sha256sum | cut -d' ' -f1)
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  echo "$VENV"; exit 0
fi
[[ -x "$VENV/bin/python" ]] || python3.11 -m venv "$VENV" 1>&2
"$VENV/bin/python" -m pip install -q --upgrade pip 1>&2
# Pinned by hack/constraints.txt: the same versions on every machine and every day.
"$VENV/bin/python" -m pip install -q --progress-bar off -c "$root/hack/constraints.txt" -e "$root[all]" 1>&2
# Syne Tune 0.13 (the last release with instance-type tuning; pinned in the bench extra of
# pyproject.toml) pins numpy<1.27 for parts we do not use; its schedulers run on numpy 2, so it
# goes in without its dependency pins ([all] lists every other bench dependency).
syne=$(grep -o 'syne-tune==[0-9.]*' "$root/pyproject.toml" | head -n 1)
"$VENV/bin/python" -m pip install -q --no-deps "$syne" 1>&2
echo "$want" > "$stamp"
echo "$VENV"
