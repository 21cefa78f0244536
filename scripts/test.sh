#!/usr/bin/env bash
# The test command (README, .ci/run): installs what is missing (packages, peer assets), builds Release and
# ASan+UBSan, and runs every ctest suite on both. Extra arguments are passed to ctest
# (e.g. scripts/test.sh -L parity).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# Peer test assets (llama.cpp via npm, tokenizer files) before configuring: CMake builds the
# llama.cpp peer only when they are present.
scripts/test-assets.sh
for preset in release asan; do
    echo "== build ($preset)" >&2
    scripts/build.sh "$preset"
    echo "== test ($preset)" >&2
    # Sanitizers: fail on the first error; leaks are errors too. Label `cuda` needs a GPU
    # (scripts/device.sh runs it on the GPU machine); here it is only built.
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        ctest --test-dir "build/$preset" --output-on-failure --no-tests=error -j"$(nproc)" -LE cuda "$@"
done
