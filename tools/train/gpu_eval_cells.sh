#!/usr/bin/env bash
# The 50-item GPU evaluation of a model and its budget file, one `tca eval --device cuda`
# process per (task, context, policy) cell, 16 at a time, to a deadline; no calibration (for
# that and the tau sweep see eval_model.py). Run on the GPU machine through scripts/device.sh
# exec (which sets TCA_BIN), repo root, tools/train/data carried:
#
#   MODEL_DIR=models KVB=4947 scripts/device.sh exec bash tools/train/gpu_eval_cells.sh
#
# Cells (seed 0, 50 items, KJV haystack, b = 64, w = 1024): 16K dense and tca on the 8 tasks;
# snapkv and streaming on the 6 retrieval tasks at KVB tokens (set it to tca's KV fraction x
# 16384: 4947 for the shipped budgets); 8K single needle dense and tca. Environment:
#   MODEL_DIR  folder with tca-long-14m.q8_0.gguf and tca-long-14m.budgets.json (required)
#   KVB        the baselines' --kv-budget (required)
#   EVAL_S     deadline in seconds for all cells (default 260); a cell cut by it keeps the
#              items it finished in its items.jsonl
#   ONLY_BASELINES=1  the snapkv and streaming cells alone
# $OUT gets eval_cells.log (hashes, each cell's exit code and time) and eval_cells.tar.gz
# (every cell's summary.json, items.jsonl and log).
set -uo pipefail
OUT=${OUT:?set OUT (the device call sets it)}
MD=${MODEL_DIR:?set MODEL_DIR}
KVB=${KVB:?set KVB, the baselines kv budget}
M=$MD/tca-long-14m.q8_0.gguf
BUD=$MD/tca-long-14m.budgets.json
W=/tmp/eval-cells; rm -rf $W; mkdir -p $W
start0=$(date +%s); export start0
zcat tools/train/data/text/kjv.txt.gz > $W/kjv.txt
LOG=$OUT/eval_cells.log
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee $LOG
sha256sum $M $BUD | tee -a $LOG
common="-m $M --device cuda --n-samples 50 --seed 0 --haystack $W/kjv.txt --threads 1"
tcaargs="--block-size 64 --local-window 1024"
jobs=$W/jobs.txt; : > $jobs
retr="niah_single_number niah_single_word niah_single_uuid niah_multikey niah_multivalue niah_multiquery"
all="$retr variable_tracking common_words"
# Slowest first (streaming, then snapkv): they bound the call.
for p in streaming snapkv; do
    for t in $retr; do
        echo "b16_${p}_$t --task $t --ctx 16k --attention $p --kv-budget $KVB --n-sink 4 --obs-window 32" >> $jobs
    done
done
if [ "${ONLY_BASELINES:-0}" != 1 ]; then
    for t in $all; do
        echo "d16_dense_$t --task $t --ctx 16k --attention dense" >> $jobs
        echo "d16_tca_$t --task $t --ctx 16k --attention tca --budget-file $BUD $tcaargs" >> $jobs
    done
    for t in niah_single_number niah_single_word niah_single_uuid; do
        echo "d8_dense_$t --task $t --ctx 8k --attention dense" >> $jobs
        echo "d8_tca_$t --task $t --ctx 8k --attention tca --budget-file $BUD $tcaargs" >> $jobs
    done
fi
run1() {
    local name=$1; shift
    local left=$(( ${EVAL_S:-260} - ($(date +%s) - start0) ))
    if [ $left -le 5 ]; then echo "$name skipped at $(( $(date +%s) - start0 )) s" >> $W/done.txt; return; fi
    timeout $left "$TCA_BIN" eval $common "$@" --out $W/$name > $W/$name.log 2>&1
    echo "$name rc=$? at $(( $(date +%s) - start0 )) s" >> $W/done.txt
}
export -f run1; export W TCA_BIN common EVAL_S
xargs -P 16 -L 1 bash -c 'run1 "$@"' _ < $jobs
echo "evaluation done in $(( $(date +%s) - start0 )) s; $(grep -c 'rc=0' $W/done.txt) of $(wc -l < $jobs) cells finished" | tee -a $LOG
cat $W/done.txt >> $LOG
(cd $W && tar -czf $OUT/eval_cells.tar.gz */summary.json */items.jsonl *.log 2>/dev/null)
