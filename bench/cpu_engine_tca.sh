#!/usr/bin/env bash
# CPU engine measurements of the attention policies (the TCA-in-the-engine issue). Without MODEL:
# generates an 8-layer model with 8 query / 2 KV heads of 128 (random weights). With MODEL (a
# trained GGUF, e.g. models/tca-long-14m.q8_0.gguf) and TEXT (natural text, e.g. the KJV): that
# model. Then calibrates TCA budgets at tau 0.9 (b 64, w 1024), and runs dense, tca (calibrated
# and a fixed 20% keep), streaming, snapkv and oracle (kv budget 30% of the prompt) at 8K and 16K
# prompt tokens with 16 decoded tokens, writing one --stats-json per run.
# usage: bench/cpu_engine_tca.sh [OUT_DIR] [TEXT] [MODEL]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-build/engine-tca}
text=${2:-}
model=${3:-}
tca=build/release/tca
mkdir -p "$out"
if [ -z "$text" ]; then  # any text works for random weights: the project's own sources
    text=$out/text.txt
    find src tests docs -name '*.cpp' -o -name '*.h' -o -name '*.md' | sort | xargs cat > "$text"
fi
if [ -z "$model" ]; then
    $tca bench engine --types f16 --n-embd 1024 --layers 8 --heads 8 --kv-heads 2 --head-dim 128 \
        --ff 2816 --vocab 512 --prompt 64 --gen 2 --reps 1 --model-dir "$out" >/dev/null
    model=$(ls "$out"/random-llama-e1024-l8-h8-kv2-d128-ff2816-v512-f16-*.gguf | head -n 1)
    cal_ctx=2048
    bytes_per_token=74  # per 100 tokens: ~1.35 tokens per byte of source code with the byte vocabulary
else
    cal_ctx=16384       # a trained model: calibrate at the length it is measured at
    bytes_per_token=330 # per 100 tokens: ~3.4 bytes per token of English with a 4096-token BPE
fi
$tca calibrate -m "$model" -f "$text" --ctx $cal_ctx --block-size 64 --local-window 1024 --tau 0.9 \
    -o "$out/budgets.json" --heatmap "$out/heatmap.png" > "$out/calibrate.txt"
for L in 8192 16384; do
    head -c $((L * bytes_per_token / 100)) "$text" > "$out/prompt_$L.txt"
    for a in dense tca tca20 streaming snapkv oracle; do
        case $a in
            tca) policy=(--attention tca --budget-file "$out/budgets.json") ;;
            tca20) policy=(--attention tca --keep 0.2 --block-size 64 --local-window 1024) ;;
            *) policy=(--attention "$a" --kv-budget $((L * 3 / 10))) ;;
        esac
        $tca run -m "$model" -f "$out/prompt_$L.txt" -n 16 --ctx-size $((L + 512)) "${policy[@]}" \
            --stats-json "$out/stats_${a}_$L.json" >/dev/null 2>"$out/log_${a}_$L.txt"
        echo "$L $a $(cat "$out/stats_${a}_$L.json")"
    done
done
