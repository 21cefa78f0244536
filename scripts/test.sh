#!/usr/bin/env bash
# The test command (README, .ci/run): installs what is missing, builds Release and
# ASan+UBSan, and runs every ctest suite on both. Extra arguments are passed to ctest
# (e.g. scripts/test.sh -L parity).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
for preset in release asan; do
    echo "== build ($preset)" >&2
    scripts/build.sh "$preset"
    echo "== test ($preset)" >&2
    # Sanitizers: fail on the first error; leaks are errors too.
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        ctest --test-dir "build/$preset" --output-on-failure --no-tests=error -j"$(nproc)" "$@"
done
