#!/usr/bin/env bash
# End-to-end GPU benchmark (issue 5, deliverable 5): an 8B-shaped random-weight Llama generated
# on the device, `tca run --device cuda` dense vs tca at each length (TTFT, decode per token, KV
# bytes), Hugging Face transformers (sdpa) on the same weights, and the P5-P8 verdicts.
#
#   tools/e2e/run_e2e.sh PKG OUT
#     PKG: folder with the tca binary (scripts/device.sh run engine-bench passes /tmp/tca-device)
#     OUT: where e2e.log, e2e.jsonl and e2e.md go
#   Environment: E2E_LENGTHS (default 131072,32768,16384,8192; the first is the headline),
#     E2E_DIR (default /tmp/e2e: model and prompts, about 15 GB), E2E_KEEP (0.2), E2E_N (16),
#     E2E_HF=0 skips transformers, E2E_WARMUP (tca run --warmup tokens, default w + 2b = 4352).
#
# Order, so that a timeout still leaves the key numbers: model + prompts, tca dense and tca at
# the first (longest) length, transformers at every length, then tca at the other lengths, then
# the report. Each step has its own timeout; the whole run aims at < 9 minutes.
set -uo pipefail

PKG=${1:?usage: run_e2e.sh PKG OUT}
OUT=${2:?usage: run_e2e.sh PKG OUT}
HERE=$(cd "$(dirname "$0")" && pwd)
DIR=${E2E_DIR:-/tmp/e2e}
LENGTHS=${E2E_LENGTHS:-131072,32768,16384,8192}
KEEP=${E2E_KEEP:-0.2}
NGEN=${E2E_N:-16}
BLOCK=128
WINDOW=4096
# tca run --warmup: synthetic tokens run (and forgotten) before the timed prompt, dense and tca
# alike, so TTFT excludes loading kernels and first allocations (w + 2b reaches TCA's
# prompt-end selection); E2E_WARMUP=0 times a cold first prompt as before session 13.
WARMUP=${E2E_WARMUP:-$((WINDOW + 2 * BLOCK))}
mkdir -p "$OUT" "$DIR"
LOG=$OUT/e2e.log
JSONL=$OUT/e2e.jsonl
: >"$JSONL"
T0=$(date +%s)
BUDGET=${E2E_BUDGET:-530}  # seconds for the whole script; each step's timeout fits in what is left

say() { echo "[e2e +$(($(date +%s) - T0))s] $*" | tee -a "$LOG"; }

# A step's time limit: its own, cut to what is left of the budget (20 s kept for the report);
# prints 0 when too little is left to start it.
limit() {
    local left=$((BUDGET - ($(date +%s) - T0) - 20))
    local l=$1
    [ "$left" -lt "$l" ] && l=$left
    [ "$l" -lt 15 ] && l=0
    echo "$l"
}

# Peak GPU memory of one step: nvidia-smi samples every 200 ms in the background.
MEMPID=""
mem_start() {
    MEMPID=""
    if command -v nvidia-smi >/dev/null; then
        nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 >"$DIR/mem.csv" 2>/dev/null &
        MEMPID=$!
    fi
}
mem_stop() {  # prints the peak in MiB (or null)
    if [ -n "$MEMPID" ]; then
        kill "$MEMPID" 2>/dev/null
        wait "$MEMPID" 2>/dev/null
        MEMPID=""
        sort -n "$DIR/mem.csv" 2>/dev/null | tail -n 1 | tr -dc '0-9' | sed 's/^$/null/'
    else
        echo null
    fi
}

IFS=, read -r -a LS <<<"$LENGTHS"
FIRST=${LS[0]}

say "gen_model.py: model and prompts in $DIR (lengths $LENGTHS)"
t=$(date +%s)
PYTHONUNBUFFERED=1 timeout "$(limit 200)" python3 "$HERE"/gen_model.py --out "$DIR" --lengths "$LENGTHS" --no-hf \
    >>"$LOG" 2>&1
rc=$?
say "gen_model.py exit code $rc in $(($(date +%s) - t)) s"
if [ $rc -ne 0 ] || [ ! -f "$DIR/model/config.json" ]; then
    tail -n 30 "$LOG"
    exit 1
fi

tca_one() {  # L policy timeout
    local L=$1 pol=$2 lim
    lim=$(limit "$3")
    if [ "$lim" -eq 0 ]; then
        say "tca L=$L $pol skipped: the time budget ($BUDGET s) is spent"
        printf '{"bench":"tca","L":%d,"policy":"%s","error":"skipped (time budget)"}\n' "$L" "$pol" >>"$JSONL"
        return
    fi
    local stats=$DIR/stats_${L}_${pol}.json
    rm -f "$stats"
    local args=(run -m "$DIR/model" -f "$DIR/prompt_$L.txt" --no-bos -n "$NGEN" --temp 0
                --device cuda --ctx-size $((L + NGEN)) --batch-size "$L" --attention "$pol"
                --stats-json "$stats")
    [ "$pol" = tca ] && args+=(--keep "$KEEP" --block-size $BLOCK --local-window $WINDOW)
    [ "$WARMUP" -gt 0 ] && args+=(--warmup "$WARMUP")
    say "tca ${args[*]}"
    mem_start
    local t1 r=0
    t1=$(date +%s.%N)
    timeout "$lim" "$PKG"/tca "${args[@]}" >"$DIR/gen_${L}_${pol}.txt" 2>"$DIR/tca_${L}_${pol}.err" || r=$?
    local wall
    wall=$(awk -v a="$t1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
    local peak
    peak=$(mem_stop)
    # Everything but the progress lines goes to the log.
    grep -v -E 'prefill [0-9]+/|generate [0-9]+/' "$DIR/tca_${L}_${pol}.err" | tail -n 12 >>"$LOG"
    if [ $r -eq 0 ] && [ -s "$stats" ]; then
        printf '{"bench":"tca","L":%d,"policy":"%s","keep":%s,"block_size":%d,"local_window":%d,"warmup":%d,"wall_s":%.2f,"peak_gpu_mib":%s,"stats":%s}\n' \
            "$L" "$pol" "$KEEP" $BLOCK $WINDOW "$WARMUP" "$wall" "$peak" "$(tr -d '\n' <"$stats")" >>"$JSONL"
        say "tca L=$L $pol: $(tr -d '\n' <"$stats") (wall ${wall} s, peak GPU ${peak} MiB)"
    else
        printf '{"bench":"tca","L":%d,"policy":"%s","error":"exit code %d","wall_s":%.2f,"peak_gpu_mib":%s}\n' \
            "$L" "$pol" "$r" "$wall" "$peak" >>"$JSONL"
        say "tca L=$L $pol FAILED (exit code $r, wall ${wall} s, peak GPU ${peak} MiB):"
        tail -n 8 "$DIR/tca_${L}_${pol}.err" | tee -a "$LOG"
    fi
}

limit_for() { [ "$1" -ge 65536 ] && echo 150 || echo 60; }

for pol in dense tca; do
    tca_one "$FIRST" "$pol" "$(limit_for "$FIRST")"
done

if [ "${E2E_HF:-1}" != 0 ]; then
    say "transformers (sdpa) on the same weights"
    t=$(date +%s)
    hl=$(limit 200)
    [ "$hl" -eq 0 ] && hl=1
    PYTHONUNBUFFERED=1 timeout "$hl" python3 "$HERE"/gen_model.py --out "$DIR" --lengths "$LENGTHS" --hf-only \
        --jsonl "$JSONL" >>"$LOG" 2>&1
    say "transformers exit code $? in $(($(date +%s) - t)) s"
fi

for L in "${LS[@]:1}"; do
    for pol in dense tca; do
        tca_one "$L" "$pol" "$(limit_for "$L")"
    done
done

say "report"
python3 "$HERE"/report.py --jsonl "$JSONL" --out "$OUT/e2e.md" --keep "$KEEP" | tee -a "$LOG"
say "done in $(($(date +%s) - T0)) s"
