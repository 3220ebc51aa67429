#!/usr/bin/env bash
# Footprint of the `sockeye` server on a small host (a report, not a test): stripped binary
# size, idle RSS, and RSS with N idle WebSocket clients connected.
# Targets: binary < 3 MiB stripped, idle RSS < 4 MiB, < 16 KiB per connected client on
# threads and < 2 KiB on smol (measured at 10,000 and 19,000: a process may hold 20,000
# descriptors here), with the projection for 100,000 and 1,000,000 clients.
#   bash scripts/footprint.sh [CLIENTS]   (default 1000; SOCKEYE_RUNTIME=smol for that runtime)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
clients="${1:-1000}"
port="${SOCKEYE_FOOTPRINT_PORT:-9411}"
profile=release-small
cargo build --profile "$profile" -p sockeye --bin sockeye >&2
cargo build --profile "$profile" -p sockeye-std --example idle_clients >&2
bin="target/$profile/sockeye"
stripped="$(mktemp)"
cp "$bin" "$stripped"
strip "$stripped" 2>/dev/null || true
size=$(stat -c %s "$stripped")
rm -f "$stripped"
printf 'binary (stripped, profile %s): %d bytes (%.2f MiB)\n' "$profile" "$size" "$(echo "$size/1048576" | bc -l)"

# Each connection is a file descriptor on both sides.
ulimit -n $((clients * 2 + 256)) 2>/dev/null || ulimit -n "$(ulimit -Hn)"
"$bin" --listen "127.0.0.1:$port" --max-connections $((clients + 10)) \
    --max-connections-per-user 4 --log-level warn 2>/dev/null &
server=$!
trap 'kill -TERM $server 2>/dev/null || true' EXIT
rss() { awk '/^VmRSS/ {print $2}' "/proc/$server/status"; }
for _ in $(seq 50); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
done
sleep 0.5
idle=$(rss)
echo "idle RSS: ${idle} KiB"

hold=8
out="$(mktemp)"
"target/$profile/examples/idle_clients" "127.0.0.1:$port" "$clients" "$hold" >"$out" &
load=$!
for _ in $(seq 300); do
    grep -q connected "$out" && break
    sleep 0.1
done
grep -q connected "$out" || { echo "clients did not connect" >&2; exit 1; }
sleep 1
loaded=$(rss)
echo "RSS with $clients clients: ${loaded} KiB"
per=$(( (loaded - idle) * 1024 / clients ))
echo "per client: ${per} bytes ($(echo "($loaded-$idle)/$clients" | bc -l | cut -c1-5) KiB)"
# Linear projection from this run (the process's own memory; the kernel's socket state
# and buffers come on top and are not in RSS).
for n in 100000 1000000; do
    echo "projected RSS at $n clients: $(( (idle * 1024 + per * n) / 1048576 )) MiB"
done
wait $load
rm -f "$out"
kill -TERM $server
wait $server || true
trap - EXIT
