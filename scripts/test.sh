#!/usr/bin/env bash
# The whole test suite, on a fresh machine: unit, property, simulation and interop tests
# (the interop tests install their Python peers themselves), then Autobahn conformance.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# The multi-node scenarios (tests/tests/cluster.rs, cluster_sessions.rs, cluster_tls_auth.rs)
# start their own redis-server (Debian's is built with TLS, which cluster_tls_auth.rs needs).
if ! command -v redis-server >/dev/null 2>&1; then
  apt-get update -qq && apt-get install -y -qq redis-server
fi
cargo test --workspace --all-targets
cargo test --workspace --doc
# The server's scenario suite, the multi-node scenarios and the binary's SIGKILL and
# signal tests, again on the threads runtime (the run above used the default, smol).
SOCKEYE_RUNTIME=threads cargo test -p sockeye-tests --test server_scenarios
SOCKEYE_RUNTIME=threads cargo test -p sockeye-tests --test cluster
SOCKEYE_RUNTIME=threads cargo test -p sockeye-tests --test cluster_sessions
SOCKEYE_RUNTIME=threads cargo test -p sockeye-tests --test cluster_tls_auth
SOCKEYE_RUNTIME=threads cargo test -p sockeye --test server_binary
(cd clients/js && npm ci --silent && npm test)
bash scripts/autobahn.sh
