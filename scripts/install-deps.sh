#!/usr/bin/env bash
# Installs everything sluice needs to build and test on Debian 12, from
# Debian's own packages. See docs/dependencies.md for why each one is here.
set -euo pipefail
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
pkgs=(
  build-essential cmake pkg-config
  clang libclang-rt-14-dev
  libutf8proc-dev
  libjansson-dev
)
missing=()
for p in "${pkgs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi
