#!/usr/bin/env bash
# Installs what tca needs to build and test on Debian 12, skipping what is already present.
# Safe to run repeatedly; needs root (or sudo) only when something is missing.
set -euo pipefail

pkgs=(cmake ninja-build g++ make pkg-config libgtest-dev nlohmann-json3-dev libicu-dev git ca-certificates)
# node and npm install the llama.cpp peer (scripts/test-assets.sh). Checked by command, not by
# package: CI machines ship node from elsewhere (NodeSource, with npm bundled), and Debian's
# npm package would conflict with that nodejs.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    pkgs+=(nodejs npm)
fi
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "setup: installing ${missing[*]}" >&2
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
