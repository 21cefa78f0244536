#!/usr/bin/env bash
# The README's run command: installs what is missing, builds Release, then runs `tca` with the
# given arguments. With no arguments it runs the main job: the model that ships with the project
# (models/tca-long-14m.q8_0.gguf, tools/train) answers a needle-in-a-haystack question over a
# 16K-token document on this CPU, once with dense attention and once with TCA (budgets
# calibrated at tau 0.9 with pooled global selection, a 32-query observation window and a 0.25
# floor, models/tca-long-14m.budgets.json); it prints each answer, the time and the KV cache
# each one held.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh release >/dev/null
if [ $# -eq 0 ]; then
    set -- eval --task niah_single_number --ctx 16k --n-samples 1 --seed 7 --attention dense,tca \
        --budget-file models/tca-long-14m.budgets.json --verbose
fi
exec build/release/tca "$@"
