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
  libmicrohttpd-dev libyaml-dev
  libcurl4-openssl-dev libpcre2-dev libsqlite3-dev libpq-dev
  postgresql
  sqlite3
)
# Node.js and npm run the end-to-end tests (tests/e2e, the openai client).
# A Node that is already installed (with its own npm) is kept; otherwise
# Debian's nodejs and npm.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  pkgs+=(nodejs npm)
fi
# Debian's Chromium renders the evaluation report in the browser test
# (tests/report, driven by playwright-core with executablePath /usr/bin/chromium).
if [ ! -x /usr/bin/chromium ]; then
  pkgs+=(chromium)
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi
