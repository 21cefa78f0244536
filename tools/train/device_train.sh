#!/usr/bin/env bash
# One device call of the model training (tools/train/README.md), run on the GPU machine through
# scripts/device.sh exec (which unpacks tca and sets its libraries):
#
#   scripts/device.sh exec tools/train/device_train.sh train TRAIN_MIN
#   scripts/device.sh exec tools/train/device_train.sh train-eval TRAIN_MIN EVAL_MIN
#
# train: resumes the run (the full state in tools/train/runs/main while the machine is warm,
# else the portable checkpoint carried in tools/train/runs/portable, else a fresh start) and
# trains for TRAIN_MIN minutes; train-eval then converts the portable checkpoint to the shipped
# GGUF (q8_0) and evaluates it for EVAL_MIN minutes (tools/train/eval_model.py).
# Carry: tools/train/data, .device (scripts/device.sh pack tca), and tools/train/runs/portable
# when resuming on a cold machine. $OUT gets at most 8 files: train.log, portable.tar.NN,
# loss.csv (and eval_summary.{json,md}, eval_files.tar.gz).
set -uo pipefail
cd "$(dirname "$0")/../.."
mode=${1:?usage: device_train.sh train|train-eval TRAIN_MIN [EVAL_MIN]}
train_min=${2:?usage: device_train.sh train|train-eval TRAIN_MIN [EVAL_MIN]}
eval_min=${3:-5}
OUT=${OUT:-/tmp/train-out}
RUN=tools/train/runs/main
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
LOG=$OUT/train.log
{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    python3 -c 'import torch, tokenizers, safetensors; print("torch", torch.__version__, "tokenizers", tokenizers.__version__)'
} 2>&1 | tee "$LOG"

resume=()
if [ -f "$RUN/ckpt/train_state.json" ]; then
    echo "resuming the full state in $RUN (warm machine)" | tee -a "$LOG"
elif [ -f tools/train/runs/portable/train_state.json ]; then
    resume=(--resume-from tools/train/runs/portable)
    echo "resuming from the carried portable checkpoint" | tee -a "$LOG"
fi
# The model/transformers agreement check runs beside the training on the first call (CPU only).
check_pid=""
if [ ! -f "$RUN/check_model.ok" ]; then
    (python3 tools/train/check_model.py >/tmp/check_model.log 2>&1 && touch "$RUN/check_model.ok") &
    check_pid=$!
fi
python3 tools/train/train.py --run "$RUN" "${resume[@]}" --max-minutes "$train_min" --out "$OUT" 2>&1 | tee -a "$LOG"
rc=${PIPESTATUS[0]}
if [ -n "$check_pid" ]; then
    wait "$check_pid"
    echo "== check_model.py (exit $?)" >>"$LOG"
    cat /tmp/check_model.log >>"$LOG"
fi
echo "train.py exit code $rc" | tee -a "$LOG"
[ "$mode" = train ] && exit "$rc"
[ "$rc" -eq 0 ] || exit "$rc"

# Evaluation of the shipped form: the portable (bf16) checkpoint converted to q8_0.
model=/tmp/tca-long-14m.q8_0.gguf
"${TCA_BIN:?run through scripts/device.sh exec}" convert -m "$RUN/portable" -o "$model" --type q8_0 \
    --name tca-long-14m 2>&1 | tail -n 3 | tee -a "$LOG"
python3 tools/train/eval_model.py --tca "$TCA_BIN" --model "$model" --out "$OUT" --minutes "$eval_min" \
    2>&1 | tee -a "$LOG"
exit "${PIPESTATUS[0]}"
