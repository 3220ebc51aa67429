#!/usr/bin/env bash
# Installs the Python peers' dependencies (websockets) into a venv, idempotently.
#
# usage: tests/peers/install.sh [VENV]
#   VENV defaults to $SOCKEYE_PEERS_VENV, else ~/.cache/sockeye-peers.
# Needs python3 with the venv module and pip (PyPI reachable on first run). When the venv
# already has the pinned version this returns in well under a second. Concurrent runs
# (parallel test binaries) are serialised with flock.
set -euo pipefail
venv="${1:-${SOCKEYE_PEERS_VENV:-$HOME/.cache/sockeye-peers}}"
want="17.4"
python="${PYTHON3:-python3}"

installed() {
  [ -x "$venv/bin/python" ] &&
    "$venv/bin/python" -c "import sys, websockets; sys.exit(websockets.__version__ != '$want')" 2>/dev/null
}

installed && { echo "$venv/bin/python"; exit 0; }
mkdir -p "$(dirname "$venv")"
exec 9>"$venv.lock"
flock -w 300 9 || { echo "install.sh: timed out waiting for $venv.lock" >&2; exit 1; }
if ! installed; then
  rm -rf "$venv"
  "$python" -m venv "$venv" >&2
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "websockets==$want" >&2
fi
installed || { echo "install.sh: websockets $want not importable in $venv" >&2; exit 1; }
echo "$venv/bin/python"
