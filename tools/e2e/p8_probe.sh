#!/usr/bin/env bash
# P8 probe (performance.md P8: never slower than dense at <= 16K): where TCA's extra time to
# first token at a short length goes, on the model and prompt that run_e2e.sh made.
#
#   tools/e2e/p8_probe.sh PKG OUT
#     PKG: folder with the tca binary; OUT: where p8.log and p8_ncu.csv go.
#   Environment: E2E_DIR (default /tmp/e2e, run_e2e.sh's), P8_L (default 8192), P8_REPS (5),
#     P8_WARMUP (4352), P8_NCU=1 adds the ncu pass.
#
# 1. tca run dense and tca at L, warmed up (--warmup P8_WARMUP tokens first, default 4352 =
#    w + 2b, as run_e2e.sh), tca warmed up with TCA_CUDA_SYNC_UPLOADS=1 (every small upload
#    waits, as before the pinned staging ring), and dense and tca cold (--warmup 0: the first
#    prompt of the process pays kernel loading and first allocations, TCA for more kernels),
#    P8_REPS rounds (default 5) in alternation, and the median of each: on an H100 (session
#    10) two cold runs of the same dense prompt took 419 and 548 ms, so one run per side
#    cannot resolve a gap of 30 ms. (Dropped in session 13: CUDA_MODULE_LOADING=EAGER, which
#    makes cuBLAS load every kernel inside the first prefill, and TCA_CUDA_KVC_SERIAL=1.)
# 2. ncu (when installed, P8_NCU=1): the GPU time of each kernel of one tca run at L, so that
#    the prompt-end kernels (selection, kv_compact) can be summed against the gap.
set -uo pipefail

PKG=${1:?usage: p8_probe.sh PKG OUT}
OUT=${2:?usage: p8_probe.sh PKG OUT}
DIR=${E2E_DIR:-/tmp/e2e}
L=${P8_L:-8192}
mkdir -p "$OUT"
LOG=$OUT/p8.log
[ -f "$DIR/prompt_$L.txt" ] || { echo "p8_probe: no $DIR/prompt_$L.txt (run run_e2e.sh first)" | tee -a "$LOG"; exit 1; }

WARM=${P8_WARMUP:-4352}

args_for() {  # policy stats-file warmup
    local a=(run -m "$DIR/model" -f "$DIR/prompt_$L.txt" --no-bos -n 2 --temp 0 --device cuda
             --ctx-size $((L + 16)) --batch-size "$L" --attention "$1" --stats-json "$2" --warmup "$3")
    [ "$1" = tca ] && a+=(--keep 0.2 --block-size 128 --local-window 4096)
    echo "${a[@]}"
}

one() {  # policy rep tag warmup [VAR=value for the run]
    local pol=$1 rep=$2 tag=$3 warm=$4 var=${5:-}
    local stats=$DIR/p8_${tag}_${rep}.json
    rm -f "$stats"
    # shellcheck disable=SC2046
    env $var timeout 120 "$PKG"/tca $(args_for "$pol" "$stats" "$warm") >/dev/null 2>"$DIR/p8.err"
    local r=$?
    local ms
    ms=$(grep -o '"prefill_ms":[0-9.]*' "$stats" 2>/dev/null | cut -d: -f2)
    echo "p8 L=$L $tag rep=$rep exit=$r prefill_ms=${ms:-none}" | tee -a "$LOG"
    [ $r -eq 0 ] || tail -n 5 "$DIR/p8.err" | tee -a "$LOG"
    [ -n "$ms" ] && echo "$ms" >>"$DIR/p8_${tag}.ms"
}
rm -f "$DIR"/p8_*.ms
for rep in $(seq 1 "${P8_REPS:-5}"); do
    one dense "$rep" dense "$WARM"
    one tca "$rep" tca "$WARM"
    one tca "$rep" tca-syncup "$WARM" TCA_CUDA_SYNC_UPLOADS=1
    one dense "$rep" dense-cold 0
    one tca "$rep" tca-cold 0
done
for tag in dense tca tca-syncup dense-cold tca-cold; do
    med=$(sort -n "$DIR/p8_$tag.ms" 2>/dev/null | awk '{v[NR] = $1} END {if (NR) print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2)}')
    echo "p8 L=$L $tag median prefill_ms=${med:-none} over $(wc -l <"$DIR/p8_$tag.ms" 2>/dev/null || echo 0) runs" | tee -a "$LOG"
done

if [ "${P8_NCU:-0}" = 1 ] && command -v ncu >/dev/null; then
    stats=$DIR/p8_ncu.json
    # shellcheck disable=SC2046
    timeout 200 ncu --clock-control none --metrics gpu__time_duration.sum --csv \
        "$PKG"/tca $(args_for tca "$stats" 0) >"$OUT/p8_ncu.csv" 2>"$DIR/p8_ncu.err"
    echo "p8 ncu exit $? ($(wc -l <"$OUT/p8_ncu.csv") lines)" | tee -a "$LOG"
    # GPU time per kernel name (ms), largest first.
    python3 - "$OUT/p8_ncu.csv" <<'PY' | tee -a "$LOG"
import csv, sys, collections
rows = [r for r in csv.reader(open(sys.argv[1], errors="replace")) if len(r) > 10]
if not rows:
    sys.exit("p8 ncu: no rows")
h = rows[0]
ki, mi, vi, ui = h.index("Kernel Name"), h.index("Metric Name"), h.index("Metric Value"), h.index("Metric Unit")
tot, cnt = collections.defaultdict(float), collections.Counter()
for r in rows[1:]:
    if r[mi] != "gpu__time_duration.sum":
        continue
    v = float(r[vi].replace(",", ""))
    v *= {"nsecond": 1e-6, "usecond": 1e-3, "msecond": 1.0, "second": 1e3}.get(r[ui], 1.0)
    name = r[ki].split("(")[0].split("<")[0][-60:]
    tot[name] += v
    cnt[name] += 1
print(f"p8 ncu: {sum(cnt.values())} kernels, {sum(tot.values()):.2f} ms of GPU time")
for name, ms in sorted(tot.items(), key=lambda x: -x[1])[:25]:
    print(f"  {ms:9.3f} ms  {cnt[name]:5d} x  {name}")
PY
else
    echo "p8: ncu skipped" | tee -a "$LOG"
fi
