#!/usr/bin/env bash
# The README's run command: installs what is missing, builds Release, then runs `tca` with the
# given arguments. With no arguments it runs the main job: today the CPU attention benchmark
# (dense vs TCA attention at 8K/16K/32K tokens); once the model runtime lands, a long-context
# question answered by the model that ships with the project.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh release >/dev/null
if [ $# -eq 0 ]; then
    set -- bench attention --lengths 8k,16k,32k --reps 3
fi
exec build/release/tca "$@"
