#!/usr/bin/env bash
# GPU machine helper: build here, run there in one call.
#
#   scripts/device.sh pack
#       (on the build machine) configures and builds build/release with CUDA, then copies
#       tca_cuda_tests, tca_gpu_bench (stripped), the python scripts and the git revision into
#       .device/ (git-ignored; name it in the device call's carry list).
#   scripts/device.sh pack tca
#       the same with tca alone (no test or benchmark binaries): a smaller bundle for calls that
#       only run tca (tools/train/device_train.sh).
#   scripts/device.sh exec CMD...
#       (GPU machine) unpacks the bundle, sets LD_LIBRARY_PATH (ICU, cuBLAS), the NCCL
#       variables and TCA_BIN (the unpacked tca), then runs CMD.
#   scripts/device.sh run [tests|bench|all] [--memcheck[=FILTER]] [--quick] [-- bench args]
#       (on the GPU machine, repo root, .device/ carried) prints nvidia-smi, sets LD_LIBRARY_PATH
#       for libcublas.so.13, runs the CUDA tests (gtest JSON + full log), optionally
#       compute-sanitizer memcheck on a filtered subset, then tca_gpu_bench, bench/gpu_peer.py
#       and bench/gpu_report.py. Every log goes to $OUT (or ./.device-out when OUT is unset), at
#       most 8 files (the device call's limit): nvidia-smi.txt, cuda_tests.{json,log},
#       memcheck.log, gpu_bench.jsonl, gpu_peer.jsonl, bench.log (both programs' output), gpu.md;
#       logs are tee'd so they survive a timeout. --quick: fewer lengths and reps (a smoke run).
#       Arguments after -- go to tca_gpu_bench (e.g. -- --lengths 8k,32k --keep 0.2).
#   scripts/device.sh run p8
#       (GPU machine) the short-context question (performance.md P8): run_e2e.sh at 16K and 8K
#       without transformers (E2E_LENGTHS, E2E_HF override), then tools/e2e/p8_probe.sh: dense
#       and tca warm and cold, tca with synchronous uploads, medians of P8_REPS (default 3)
#       rounds; writes e2e.{log,jsonl,md} and p8.log (about 6-8 minutes).
#   scripts/device.sh run engine-bench
#       (GPU machine) the end-to-end benchmark, tools/e2e/run_e2e.sh: an 8B-shaped random-weight
#       Llama generated on the device, tca dense vs tca (TTFT, decode, KV bytes) and transformers
#       sdpa on the same weights; writes e2e.log, e2e.jsonl, e2e.md (about 5-9 minutes; not in
#       "all"). E2E_LENGTHS / E2E_KEEP / E2E_BUDGET override its defaults.
set -uo pipefail

cd "$(dirname "$0")/.."
PKG=.device
# The ops the benchmark times (compute-sanitizer memcheck default subset).
MEMCHECK_DEFAULT="*AttentionDenseParity*:*SparsePrefillParity*:*DecodeAttentionParity*:\
*TokenImportanceParity*:*BlockScoreParity*:*BlockBudgetParity*:*TokenSelectParity*:*KvGatherParity*"
# Time limits (s) per step, so that one device call (10 minutes) ends with every log written:
# tests 120 + memcheck 120 + bench 240 + peer 100 = 580 at worst.

pack() {
    set -e
    local only_tca=0
    [ "${1:-}" = "tca" ] && only_tca=1
    cmake --preset release >/dev/null
    local stage
    stage=$(mktemp -d)
    if [ $only_tca = 1 ]; then
        cmake --build build/release --target tca
        cp build/release/tca "$stage"/
        strip "$stage"/tca
    else
        cmake --build build/release --target tca tca_cuda_tests tca_gpu_bench
        cp build/release/tests/tca_cuda_tests build/release/tca_gpu_bench build/release/tca "$stage"/
        strip "$stage"/tca_cuda_tests "$stage"/tca_gpu_bench "$stage"/tca
        cp bench/gpu_peer.py bench/gpu_report.py "$stage"/
    fi
    # The GPU machine has no ICU (no Debian -dev or runtime package): carry this machine's.
    mkdir -p "$stage"/lib
    for lib in $(ldd build/release/tca | awk '/libicu/ {print $3}'); do cp -L "$lib" "$stage"/lib/; done
    # Models for the GPU engine test (tests/cuda/engine_cuda_test.cpp reads TCA_MODELS_DIR).
    local shared=${TCA_SHARED_DIR:-../shared}
    if [ -f "$shared/models/stories260K.gguf" ]; then
        mkdir -p "$stage"/models
        cp "$shared"/models/stories260K.gguf "$shared"/models/stories260K-q8_0.gguf "$stage"/models/
    fi
    git rev-parse --short HEAD >"$stage"/GIT_SHA 2>/dev/null || echo unknown >"$stage"/GIT_SHA
    if ! git diff --quiet HEAD -- 2>/dev/null; then
        sed -i 's/$/-dirty/' "$stage"/GIT_SHA
    fi
    ls -l "$stage"
    # One xz bundle: the binaries' CUDA fat binaries and ICU's data compress about 2x, which
    # keeps the call under its 64 MiB carry limit.
    rm -rf "$PKG"
    mkdir -p "$PKG"
    tar -C "$stage" -cf - . | xz -T2 -6 >"$PKG"/bundle.tar.xz
    rm -rf "$stage"
    local kib
    kib=$(du -sk "$PKG" | cut -f1)
    echo "device.sh: $PKG is $((kib / 1024)) MiB (the whole call carries at most 64 MiB)"
    if [ "$kib" -gt $((48 * 1024)) ]; then
        echo "device.sh: warning: $PKG is over 48 MiB" >&2
    fi
}

# libcublas.so.13: the toolkit's lib64 and python's nvidia wheels (nvidia/cublas/lib or
# nvidia/cu13/lib, whichever holds it).
cublas_dirs() {
    local dirs="/usr/local/cuda/lib64"
    local py
    py=$(python3 - <<'EOF' 2>/dev/null
import glob, os, sys
seen = []
for p in sys.path:
    for f in glob.glob(os.path.join(p, "nvidia", "**", "libcublas.so.13*"), recursive=True):
        d = os.path.dirname(f)
        if d not in seen:
            seen.append(d)
print(":".join(seen))
EOF
)
    [ -n "$py" ] && dirs="$dirs:$py"
    echo "$dirs"
}

run_tests() {
    local out=$1 memcheck=$2
    echo "== tca_cuda_tests"
    local rc=0
    TCA_MODELS_DIR="$PKG/models" timeout 240 "$PKG"/tca_cuda_tests --gtest_output=json:/tmp/cuda_tests.json >"$out"/cuda_tests.log 2>&1 || rc=$?
    # Summary: the verdict lines and every failure with its first message line.
    grep -E '^\[  (PASSED|FAILED|SKIPPED) |^\[==========\]|tca_cuda_tests:' "$out"/cuda_tests.log | tail -n 40
    if [ $rc -ne 0 ]; then
        echo "-- failure messages (first 60 lines; full log in cuda_tests.log):"
        grep -E -B1 -A3 'Failure$|error:' "$out"/cuda_tests.log | head -n 60
    fi
    echo "tca_cuda_tests exit code $rc"
    if [ -n "$memcheck" ]; then
        echo "== compute-sanitizer memcheck, --gtest_filter=$memcheck"
        local mrc=0
        if command -v compute-sanitizer >/dev/null; then
            timeout 120 compute-sanitizer --tool memcheck --error-exitcode 3 \
                "$PKG"/tca_cuda_tests --gtest_filter="$memcheck" >"$out"/memcheck.log 2>&1 || mrc=$?
            grep -E 'ERROR SUMMARY|Invalid|out of bounds|^\[  (PASSED|FAILED) ' "$out"/memcheck.log | head -n 30
        else
            echo "compute-sanitizer not found"
            mrc=127
        fi
        echo "memcheck exit code $mrc"
        [ $mrc -ne 0 ] && rc=$((rc == 0 ? mrc : rc))
    fi
    return $rc
}

run_bench() {
    local out=$1 quick=$2
    shift 2
    local sha
    sha=$(cat "$PKG"/GIT_SHA 2>/dev/null || echo unknown)
    local common=()
    [ "$quick" = 1 ] && common=(--lengths 8k,32k --decode-lengths 32k --reps 5 --warmup 2)
    local rc=0
    echo "== tca_gpu_bench"
    timeout 240 "$PKG"/tca_gpu_bench --git-sha "$sha" --out "$out"/gpu_bench.jsonl "${common[@]}" "$@" \
        2>&1 | tee "$out"/bench.log || rc=$?
    echo "tca_gpu_bench exit code $rc"
    echo "== gpu_peer.py"
    local prc=0
    local peer_args=()
    [ "$quick" = 1 ] && peer_args=(--lengths 8k,32k --decode-lengths 32k --reps 5 --warmup 2)
    PYTHONUNBUFFERED=1 timeout 100 python3 "$PKG"/gpu_peer.py --git-sha "$sha" --out "$out"/gpu_peer.jsonl \
        "${peer_args[@]}" 2>&1 | tee -a "$out"/bench.log || prc=$?
    echo "gpu_peer.py exit code $prc"
    echo "== gpu_report.py"
    python3 "$PKG"/gpu_report.py --ours "$out"/gpu_bench.jsonl --peer "$out"/gpu_peer.jsonl \
        --out "$out"/gpu.md >/dev/null || true
    # The report last, so it is what the call's output tail shows.
    [ $rc -eq 0 ] && rc=$prc
    return $rc
}

# The GPU engine end to end: tca run --device cuda on stories260K, then random-weight Llama /
# Qwen2 models from transformers (tools/hf_compare) compared on the CPU and the GPU.
run_engine() {
    local out=$1
    echo "== engine"
    {
        for m in stories260K.gguf stories260K-q8_0.gguf; do
            for att in dense tca; do
                echo "-- tca run $m --device cuda --attention $att"
                timeout 60 "$PKG"/tca run -m "$PKG/models/$m" -p "Once upon a time" -n 32 --temp 0 \
                    --device cuda --attention $att --block-size 8 --local-window 16 2>&1 | tail -n 3
                echo "-- same on the cpu"
                timeout 60 "$PKG"/tca run -m "$PKG/models/$m" -p "Once upon a time" -n 32 --temp 0 \
                    --device cpu --attention $att --block-size 8 --local-window 16 2>&1 | tail -n 3
            done
        done
        echo "-- transformers comparison"
        PYTHONUNBUFFERED=1 timeout 120 python3 tools/hf_compare/hf_logits.py --out /tmp/hfcmp &&
            PYTHONUNBUFFERED=1 timeout 120 python3 tools/hf_compare/compare.py --tca "$PKG"/tca --dir /tmp/hfcmp
        echo "hf compare exit code $?"
    } 2>&1 | tee "$out"/engine.log | tail -n 40
}

# Unpacks the bundle into /tmp/tca-device (once per call) and sets the environment the binaries
# need; sets PKG to that folder.
unpack() {
    if [ -f "$PKG"/bundle.tar.xz ]; then
        local dir=/tmp/tca-device
        rm -rf "$dir" && mkdir -p "$dir" && xz -dc "$PKG"/bundle.tar.xz | tar -C "$dir" -xf - || return 1
        PKG=$dir
    elif [ -x /tmp/tca-device/tca ]; then
        # No bundle carried: a warm machine keeps the one an earlier call unpacked.
        PKG=/tmp/tca-device
        echo "device.sh: no bundle carried; using the one unpacked earlier (git $(cat $PKG/GIT_SHA 2>/dev/null))" >&2
    fi
    export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
    export LD_LIBRARY_PATH="$PKG/lib:$(cublas_dirs)${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
}

run_mode() {
    local what=all memcheck="" quick=0 bench_args=()
    while [ $# -gt 0 ]; do
        case "$1" in
            tests|bench|engine|engine-bench|p8|all) what=$1 ;;
            --memcheck) memcheck="$MEMCHECK_DEFAULT" ;;
            --memcheck=*) memcheck="${1#--memcheck=}" ;;
            --quick) quick=1 ;;
            --) shift; bench_args=("$@"); break ;;
            *) echo "device.sh run: unknown argument '$1'" >&2; return 2 ;;
        esac
        shift
    done
    local out=${OUT:-$PWD/.device-out}
    mkdir -p "$out"
    unpack || return 1
    if [ ! -x "$PKG"/tca_cuda_tests ] || [ ! -x "$PKG"/tca_gpu_bench ]; then
        echo "device.sh: $PKG/ is missing its binaries: run 'scripts/device.sh pack' here and carry .device" >&2
        return 2
    fi
    {
        echo "git $(cat "$PKG"/GIT_SHA 2>/dev/null)"
        nvidia-smi
        echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
    } 2>&1 | tee "$out"/nvidia-smi.txt
    local rc=0 r
    if [ "$what" = all ] || [ "$what" = tests ]; then
        run_tests "$out" "$memcheck"
        r=$?
        [ $rc -eq 0 ] && rc=$r
    fi
    if [ "$what" = all ] || [ "$what" = engine ]; then
        run_engine "$out"
    fi
    if [ "$what" = engine-bench ]; then
        bash tools/e2e/run_e2e.sh "$PKG" "$out"
        r=$?
        [ $rc -eq 0 ] && rc=$r
    fi
    if [ "$what" = p8 ]; then
        E2E_HF=${E2E_HF:-0} E2E_LENGTHS=${E2E_LENGTHS:-16384,8192} E2E_BUDGET=${E2E_BUDGET:-300} \
            bash tools/e2e/run_e2e.sh "$PKG" "$out"
        P8_REPS=${P8_REPS:-3} bash tools/e2e/p8_probe.sh "$PKG" "$out"
        r=$?
        [ $rc -eq 0 ] && rc=$r
    fi
    if [ "$what" = all ] || [ "$what" = bench ]; then
        run_bench "$out" "$quick" "${bench_args[@]}"
        r=$?
        [ $rc -eq 0 ] && rc=$r
        echo
        cat "$out"/gpu.md 2>/dev/null
    fi
    echo "device.sh run: exit code $rc; files in $out: $(ls "$out" | tr '\n' ' ')"
    return $rc
}

case "${1:-}" in
    pack) shift; pack "$@" ;;
    run) shift; run_mode "$@" ;;
    exec)
        shift
        unpack || exit 1
        [ -x "$PKG"/tca ] || { echo "device.sh: no tca in the bundle: run 'scripts/device.sh pack' here" >&2; exit 2; }
        export TCA_BIN=$PKG/tca
        exec "$@"
        ;;
    *)
        echo "usage: scripts/device.sh pack [tca] | run [tests|bench|engine|engine-bench|p8|all] [--memcheck[=FILTER]] [--quick] [-- bench args] | exec CMD..." >&2
        exit 2
        ;;
esac
