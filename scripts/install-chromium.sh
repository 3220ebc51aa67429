#!/usr/bin/env bash
# Installs headless Chromium (Debian's `chromium` package) for the browser end-to-end test,
# if it is not installed yet, and prints the path of the binary. Fails loudly otherwise.
set -euo pipefail
find_chromium() { command -v chromium || command -v chromium-browser || true; }
bin="$(find_chromium)"
if [ -z "$bin" ]; then
    sudo=""
    if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq >&2
    $sudo apt-get install -y -qq chromium >&2
    bin="$(find_chromium)"
fi
if [ -z "$bin" ]; then
    echo "install-chromium.sh: chromium could not be installed" >&2
    exit 1
fi
echo "$bin"
