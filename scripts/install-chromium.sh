#!/usr/bin/env bash
# Installs headless Chromium (Debian's `chromium` package) for the browser end-to-end test,
# if it is not installed yet, and prints the path of the binary. Fails loudly otherwise.
#
# The browser tests run in parallel and each calls this script: on a fresh machine they
# would all run apt-get at once and all but one fail on apt's lock. One install at a time
# (flock), and whoever waited finds Chromium already there.
set -euo pipefail
find_chromium() { command -v chromium || command -v chromium-browser || true; }
bin="$(find_chromium)"
if [ -z "$bin" ]; then
    exec 9>"${TMPDIR:-/tmp}/sockeye-install-chromium.lock"
    flock 9
    bin="$(find_chromium)"
fi
if [ -z "$bin" ]; then
    sudo=""
    if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
    export DEBIAN_FRONTEND=noninteractive
    # Another apt (not ours) may hold its lock for a while: wait for it up to 5 minutes.
    $sudo apt-get -o DPkg::Lock::Timeout=300 update -qq >&2
    $sudo apt-get -o DPkg::Lock::Timeout=300 install -y -qq chromium >&2
    bin="$(find_chromium)"
fi
if [ -z "$bin" ]; then
    echo "install-chromium.sh: chromium could not be installed" >&2
    exit 1
fi
echo "$bin"
