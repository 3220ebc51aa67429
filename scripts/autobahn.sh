#!/usr/bin/env bash
# Conformance: the Autobahn testsuite, groups 1-10 and 12-13 (permessage-deflate), against
# the echo server and driving the client of each runtime (sockeye-std, sockeye-smol); every
# run's verdicts are diffed against the ones committed in autobahn/expected-{server,client}.json
# (groups 1-10) and autobahn/expected-{server,client}-deflate.json (12-13): both runtimes
# must give the same verdicts.
#
# The four suites (server and client of each runtime) run at once: each is a ping-pong
# between wstest and our process, so one suite keeps about one core busy. Our side
# compresses at level AUTOBAHN_DEFLATE_LEVEL (default 1): at zlib's default 6 our echoes'
# compressing took as much CPU as wstest's whole side of groups 12-13 (which send 1000
# messages per case, up to 128 KiB each, and wait for each echo); the level changes the
# ratio, not the protocol the cases check.
#
# usage: scripts/autobahn.sh [--update]   (--update rewrites the expected files of the
#                                          groups run, from the std run)
# env:   AUTOBAHN_DIR (default ../shared/autobahn), CASES (default groups 1-10, plus 12
#        and 13 unless AUTOBAHN_DEFLATE=0), RUNTIMES (default "std smol"),
#        AUTOBAHN_DEFLATE_LEVEL (default 1)
# Skips (exit 0) when the suite is not present beside the project.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ab="${AUTOBAHN_DIR:-$root/../shared/autobahn}"
if [ ! -x "$ab/run-server-suite.sh" ]; then
  echo "autobahn: $ab not found; skipping conformance"
  exit 0
fi
update=0; [ "${1:-}" = "--update" ] && update=1
cases="${CASES:-1.*,2.*,3.*,4.*,5.*,6.*,7.*,9.*,10.*}"
deflate="${AUTOBAHN_DEFLATE:-1}"
if [ "$deflate" = 1 ] && [ -z "${CASES:-}" ]; then cases="$cases,12.*,13.*"; fi
export AUTOBAHN_DEFLATE_LEVEL="${AUTOBAHN_DEFLATE_LEVEL:-1}"
out="$root/target/autobahn"
mkdir -p "$out"

venv="${AUTOBAHN_VENV:-$HOME/.cache/autobahn-py3}"
if [ ! -x "$venv/bin/wstest" ]; then
  echo "autobahn: installing wstest into $venv"
  bash "$ab/setup.sh" "$venv" > "$out/setup.log" 2>&1 || { cat "$out/setup.log"; exit 1; }
fi
export WSTEST="$venv/bin/wstest"

cd "$root"
cargo build --release -q -p sockeye-std --features deflate --example echo_server --example autobahn_client
cargo build --release -q -p sockeye-smol --features deflate --example smol_echo_server --example smol_autobahn_client

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

# One suite: the server suite (wstest's fuzzing client against our echo server) or the
# client suite (wstest's fuzzing server driving our client), its report in $run/$side.
suite() {
  local runtime="$1" side="$2" run="$out/$1" echo_bin client_bin port server_pid
  case "$runtime" in
    std) echo_bin=echo_server; client_bin=autobahn_client ;;
    smol) echo_bin=smol_echo_server; client_bin=smol_autobahn_client ;;
  esac
  port="$(free_port)"
  if [ "$side" = server ]; then
    "target/release/examples/$echo_bin" "127.0.0.1:$port" --deflate-level "$AUTOBAHN_DEFLATE_LEVEL" \
      > "$run/echo_server.log" 2>&1 &
    server_pid=$!
    for _ in $(seq 1 100); do
      python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 0.2).close()" 2>/dev/null && break
      sleep 0.1
    done
    timeout 2400 "$ab/run-server-suite.sh" "ws://127.0.0.1:$port" sockeye "$run/server" "$cases" || true
    kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true
  else
    PORT="$port" CLIENT_TIMEOUT=2400 timeout 2500 \
      "$ab/run-client-suite.sh" sockeye "$run/client" "$cases" -- "target/release/examples/$client_bin" || true
  fi
}

jobs=()
for runtime in ${RUNTIMES:-std smol}; do
  case "$runtime" in
    std|smol) ;;
    *) echo "autobahn: unknown runtime $runtime"; exit 2 ;;
  esac
  mkdir -p "$out/$runtime"
  for side in server client; do
    suite "$runtime" "$side" > "$out/$runtime/$side-suite.log" 2>&1 &
    jobs+=($!)
  done
done
trap 'kill "${jobs[@]}" 2>/dev/null || true' EXIT
wait "${jobs[@]}" || true
trap - EXIT

status=0
for runtime in ${RUNTIMES:-std smol}; do
  run="$out/$runtime"
  for side in server client; do
    sed "s/^/  /" "$run/$side-suite.log"
    python3 scripts/autobahn-verdicts.py extract "$run/$side" sockeye > "$run/$side-verdicts.json" || {
      echo "autobahn ($runtime): no $side report (see $run/$side)"; status=1; continue; }
    # The deflate groups' verdicts live in a file of their own, compared only when run.
    expected=("autobahn/expected-$side.json")
    [ "$deflate" = 1 ] && expected+=("autobahn/expected-$side-deflate.json")
    if [ "$update" = 1 ] && [ "$runtime" = std ]; then
      python3 scripts/autobahn-verdicts.py split "$run/$side-verdicts.json" "${expected[@]}"
      echo "autobahn: updated ${expected[*]}"
    fi
    echo "autobahn ($runtime, $side):"
    python3 scripts/autobahn-verdicts.py compare "${expected[@]}" "$run/$side-verdicts.json" || status=1
  done
done
exit $status
