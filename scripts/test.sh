#!/usr/bin/env bash
# Runs every test of sluice: the unit, CLI and end-to-end server tests in a
# normal build, the same tests under AddressSanitizer +
# UndefinedBehaviorSanitizer, the scheduler under ThreadSanitizer, and a
# short smoke run of every libFuzzer target (clang). This is the README's test
# command; .ci/run runs exactly this.
#
# Tests that need ../shared/assets skip with a message when it is absent.
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${JOBS:-$(nproc)}

bash scripts/install-deps.sh

step() { printf '\n==== %s ====\n' "$*"; }

step "e2e dependencies (npm ci in tests/e2e)"
(cd tests/e2e && npm ci --no-audit --no-fund --loglevel=error)
step "report browser-test dependencies (npm ci in tests/report)"
(cd tests/report && npm ci --no-audit --no-fund --loglevel=error)

step "build (RelWithDebInfo, -Werror)"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSLUICE_WERROR=ON >/dev/null
cmake --build build -j "$JOBS"
step "tests"
ctest --test-dir build --output-on-failure -j "$JOBS"

step "build with AddressSanitizer + UndefinedBehaviorSanitizer"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_FLAGS_DEBUG="-O1 -g" \
      -DSLUICE_SANITIZE=address,undefined -DSLUICE_WERROR=ON >/dev/null
cmake --build build-asan -j "$JOBS"
step "tests under ASan + UBSan"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir build-asan --output-on-failure -j "$JOBS"

step "scheduler under ThreadSanitizer"
cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_FLAGS_DEBUG="-O1 -g" \
      -DSLUICE_SANITIZE=thread -DSLUICE_WERROR=ON >/dev/null
cmake --build build-tsan -j "$JOBS" --target test_sched test_router
TSAN_OPTIONS=halt_on_error=1 ctest --test-dir build-tsan --output-on-failure -R '^test_(sched|router)$'

step "fuzz smoke runs (clang, libFuzzer + ASan + UBSan)"
CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_FLAGS_DEBUG="-O1 -g" \
      -DSLUICE_SANITIZE=address,undefined -DSLUICE_FUZZ=ON >/dev/null
cmake --build build-fuzz -j "$JOBS"
ctest --test-dir build-fuzz --output-on-failure -L fuzz -j "$JOBS"
