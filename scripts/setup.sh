#!/usr/bin/env bash
# Installs what building and testing need on Debian 12, skipping what is already there:
# the C libraries the Swift targets wrap, the CLI peers the tests talk to (curl, GNU tar, gzip,
# nginx for the HTTP benchmark; igzip and zstd for the bench's baselines), and the Python test peers (requests, PyJWT, websockets, pytest).
set -euo pipefail
cd "$(dirname "$0")/.."

debs=(pkg-config libssl-dev libarchive-dev libcurl4-openssl-dev libmicrohttpd-dev libyaml-dev libisal-dev libzstd-dev
      curl tar gzip zstd isal python3 procps time)
missing=()
for pkg in "${debs[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing Debian packages: ${missing[*]}"
    sudo=""
    [ "$(id -u)" = 0 ] || sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v swift >/dev/null 2>&1 && [ ! -x /opt/swift/usr/bin/swift ]; then
    echo "setup: error: no Swift toolchain found (expected swift on PATH or /opt/swift)" >&2
    exit 1
fi

if ! python3 -c 'import requests, jwt, websockets, pytest' 2>/dev/null; then
    echo "setup: installing Python test peers (Tests/e2e/requirements.txt)"
    python3 -m pip --version >/dev/null 2>&1 || {
        sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
        $sudo apt-get install -y -qq python3-pip >/dev/null
    }
    python3 -m pip install -q -r Tests/e2e/requirements.txt 2>/dev/null \
        || python3 -m pip install -q --break-system-packages -r Tests/e2e/requirements.txt
fi
