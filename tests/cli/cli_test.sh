#!/usr/bin/env bash
# Command-line behaviour of `tca`: exit codes (0 ok, 1 error, 2 usage), one-line errors that
# name the thing and the value, help text, and a real run on stories260K when the shared
# models are present. usage: cli_test.sh TCA_BINARY SHARED_DIR
set -u
tca=$1
models=$2/models
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0
fail=0

# expect CODE PATTERN -- ARGS...: exit code CODE; for errors, exactly one error line
# ("tca: ...", info logs aside) matching PATTERN.
expect() {
    local code=$1 pattern=$2
    shift 3
    "$tca" "$@" >"$tmp/out" 2>"$tmp/err"
    local got=$?
    local lines
    lines=$(grep -c '^tca: ' "$tmp/err")
    if [ "$got" -eq "$code" ] && { [ -z "$pattern" ] || grep -Eq -- "$pattern" "$tmp/err"; } &&
        { [ "$code" -eq 0 ] || [ "$lines" -eq 1 ]; }; then
        pass=$((pass + 1))
    else
        fail=$((fail + 1))
        echo "FAIL: tca $* -> exit $got (want $code), stderr ($lines error lines):" >&2
        cat "$tmp/err" >&2
        echo "  wanted a line matching: $pattern" >&2
    fi
}

expect 2 "usage: tca <command>" -- 
expect 2 "unknown command 'bogus'" -- bogus
expect 2 "unknown flag '--bogus'" -- run --bogus
# No -m: $TCA_MODEL, else the shipped model (a real run further down when it is present).
TCA_MODEL=$tmp/nope-default.gguf expect 1 "nope-default.gguf" -- run -p hi
expect 2 "exactly one of -p TEXT or -f FILE" -- run -m x.gguf
expect 1 "nope.gguf" -- run -m "$tmp/nope.gguf" -p hi
expect 2 "--n-predict expects an integer, got 'abc'" -- run -m x.gguf -p hi -n abc
expect 2 "--keep must be in \(0, 1\], got 2" -- bench attention --keep 2
expect 2 "--kv-type must be f32, f16 or bf16, got 'q4'" -- run -m x.gguf -p hi --kv-type q4
expect 2 "--device must be cpu or cuda, got 'tpu'" -- run -m x.gguf -p hi --device tpu
expect 2 "--warmup must be >= 0, got -3" -- run -m x.gguf -p hi --warmup -3
expect 2 "--device must be cpu or cuda, got 'tpu'" -- calibrate -m x.gguf -f t.txt -o b.json --device tpu
expect 2 "--device must be cpu or cuda, got 'tpu'" -- eval -m x.gguf --ctx 512 --device tpu
# --device cuda where no GPU is usable (CI): exit 1 with one line, before the model is read —
# "this build has no CUDA backend" without -DTCA_CUDA=ON, cuda::device_check's reason with it.
if ! nvidia-smi -L >/dev/null 2>&1; then
    expect 1 "^tca: (--device cuda: this build has no CUDA backend \(configure with -DTCA_CUDA=ON where nvcc is installed\)|cuda: .*)$" -- run -m "$tmp/nope.gguf" -p hi --device cuda
    expect 1 "^tca: (--device cuda: this build has no CUDA backend|cuda: )" -- calibrate -m "$tmp/nope.gguf" -f "$tmp/nope.txt" -o "$tmp/b.json" --device cuda
    # eval: before the model, the haystack file and the items are read or built.
    expect 1 "^tca: (--device cuda: this build has no CUDA backend \(configure with -DTCA_CUDA=ON where nvcc is installed\)|cuda: .*)$" -- eval -m "$tmp/nope.gguf" --ctx 512 --haystack "$tmp/nope.txt" --device cuda
fi
expect 1 "cannot read prompt file" -- run -m x.gguf -f "$tmp/missing.txt"
head -c 4096 /dev/urandom >"$tmp/garbage.gguf"
expect 1 "garbage.gguf" -- run -m "$tmp/garbage.gguf" -p hi
"$tca" run --help >"$tmp/help" 2>&1
if grep -q -- "--ctx-size N" "$tmp/help" && grep -q "(default: 512)" "$tmp/help"; then
    pass=$((pass + 1))
else
    fail=$((fail + 1))
    echo "FAIL: tca run --help does not list --ctx-size with defaults" >&2
fi

# tca calibrate: usage errors (2) before any file is read, unreadable files (1).
expect 2 "a model is required" -- calibrate -f x.txt -o b.json
expect 2 "calibration text is required" -- calibrate -m x.gguf -o b.json
expect 2 "output budget file is required" -- calibrate -m x.gguf -f x.txt
expect 2 "--tau must be in \(0, 1\], got 2" -- calibrate -m x.gguf -f x.txt -o b.json --tau 2
expect 2 "--block-size must be a power of two" -- calibrate -m x.gguf -f x.txt -o b.json --block-size 100
expect 2 "--mass-norm must be 'max' or 'none', got 'sum'" -- calibrate -m x.gguf -f x.txt -o b.json --mass-norm sum
expect 2 "--row-stride must be >= 1, got 0" -- calibrate -m x.gguf -f x.txt -o b.json --row-stride 0
expect 2 "--statistic must be 'total' or 'far', got 'mean'" -- calibrate -m x.gguf -f x.txt -o b.json --statistic mean
expect 2 "--pool must be in \[0, 256\], got 300" -- calibrate -m x.gguf -f x.txt -o b.json --pool 300
expect 2 "--select must be block or global, got 'topk'" -- calibrate -m x.gguf -f x.txt -o b.json --select topk
expect 2 "--min-keep must be in \[0, 1\], got 2" -- calibrate -m x.gguf -f x.txt -o b.json --min-keep 2
expect 2 "--ctx 100 is shorter than local window \+ block size = 4096 \+ 128" -- calibrate -m x.gguf -f x.txt -o b.json --ctx 100
expect 1 "cannot read calibration text" -- calibrate -m x.gguf -f "$tmp/missing.txt" -o "$tmp/b.json"
"$tca" calibrate --help >"$tmp/help" 2>&1
if grep -q -- "--row-stride" "$tmp/help" && grep -q -- "--heatmap" "$tmp/help" && grep -q "(default: 4096)" "$tmp/help"; then
    pass=$((pass + 1))
else
    fail=$((fail + 1))
    echo "FAIL: tca calibrate --help does not list its flags with defaults" >&2
fi

# tca eval: usage errors (2) before any model is read.
TCA_MODEL=$tmp/nope-default.gguf expect 1 "nope-default.gguf" -- eval --ctx 512 --task niah_single_number --n-samples 1
expect 2 "--task: unknown task 'bogus'" -- eval -m x.gguf --task bogus
expect 2 "--task lists niah_multikey twice" -- eval -m x.gguf --task niah_multikey,niah_multikey
expect 2 "--ctx must be in \[1, 2\^30\], got 0" -- eval -m x.gguf --ctx 0
expect 2 "--ctx expects" -- eval -m x.gguf --ctx abc
expect 2 "--n-samples must be in \[1, 1000000\], got 0" -- eval -m x.gguf --n-samples 0
expect 2 "--attention must be dense, tca, streaming, snapkv or oracle, got 'sparse'" -- eval -m x.gguf --attention dense,sparse
expect 2 "--attention lists tca twice" -- eval -m x.gguf --attention tca,tca
expect 2 "--budget-file applies to tca" -- eval -m x.gguf --attention dense --budget-file b.json
expect 2 "--max-answer-tokens must be >= 0" -- eval -m x.gguf --max-answer-tokens -1
expect 2 "--keep" -- eval -m x.gguf --keep 2
expect 2 "--pool must be in \[0, 256\], got -1" -- eval -m x.gguf --pool -1
expect 2 "--select must be block or global, got 'all'" -- eval -m x.gguf --select all
expect 2 "--kv-type must be f32, f16 or bf16, got 'q4'" -- eval -m x.gguf --kv-type q4
expect 2 "--tag may hold letters, digits and \. _ - = /, got 'a b'" -- eval -m x.gguf --tag "a b"
expect 2 "--tag must be at most 24 characters, got 25" -- eval -m x.gguf --tag aaaaaaaaaaaaaaaaaaaaaaaaa
expect 1 "nope.gguf" -- eval -m "$tmp/nope.gguf" --ctx 512
# Training seeds (>= 1000000) belong to --export-train; evaluation refuses them and vice versa.
expect 2 "--seed 1000000 is a training seed" -- eval -m x.gguf --seed 1000000
expect 2 "--export-train needs --seed >= 1000000" -- eval --export-train "$tmp/t.jsonl" --seed 5
expect 2 "--task: unknown task 'bogus'" -- eval --export-train "$tmp/t.jsonl" --seed 1000000 --task bogus
expect 2 "--chars-per-token must be in" -- eval --export-train "$tmp/t.jsonl" --seed 1000000 --chars-per-token 0
expect 0 "" -- eval --export-train "$tmp/t.jsonl" --seed 1000000 --task all,assoc_recall --ctx 512,1k --n-samples 2
if [ "$(wc -l <"$tmp/t.jsonl")" -eq 36 ] && grep -q '"task":"assoc_recall"' "$tmp/t.jsonl" &&
    grep -q '"answer":" ' "$tmp/t.jsonl"; then
    pass=$((pass + 1))
else
    fail=$((fail + 1))
    echo "FAIL: tca eval --export-train wrote $(wc -l <"$tmp/t.jsonl") lines (want 36 = 2 ctx x 9 tasks x 2)" >&2
fi
# tca convert: usage errors (2), a missing folder (1), help listing every flag.
expect 2 "a Hugging Face folder is required" -- convert -o "$tmp/x.gguf"
expect 2 "an output file is required" -- convert -m "$tmp"
expect 2 "--type must be f32, f16, bf16 or q8_0, got 'q4_k'" -- convert -m "$tmp" -o "$tmp/x.gguf" --type q4_k
expect 1 "nope: not a directory" -- convert -m "$tmp/nope" -o "$tmp/x.gguf"
expect 1 "config.json" -- convert -m "$tmp" -o "$tmp/x.gguf"
"$tca" convert --help >"$tmp/help" 2>&1
if grep -q -- "--model DIR" "$tmp/help" && grep -q -- "--out FILE" "$tmp/help" &&
    grep -q -- "--type T" "$tmp/help" && grep -q -- "--name TEXT" "$tmp/help" && grep -q '(default: "f16")' "$tmp/help"; then
    pass=$((pass + 1))
else
    fail=$((fail + 1))
    echo "FAIL: tca convert --help does not list its flags with defaults" >&2
    cat "$tmp/help" >&2
fi
"$tca" eval --help >"$tmp/help" 2>&1
if grep -q -- "--n-samples N" "$tmp/help" && grep -q -- "--haystack FILE" "$tmp/help" &&
    grep -q -- "--kv-budget N" "$tmp/help" && grep -q '(default: "dense,tca")' "$tmp/help" &&
    grep -q -- '--device D .*cpu or cuda.*(default: "cpu")' <(tr -s ' \n' ' ' <"$tmp/help") &&
    grep -q -- "--kv-type T .*unset: f32 on cpu, bf16 on cuda" <(tr -s ' \n' ' ' <"$tmp/help") &&
    grep -q -- "--tag TEXT" "$tmp/help"; then
    pass=$((pass + 1))
else
    fail=$((fail + 1))
    echo "FAIL: tca eval --help does not list its flags with defaults" >&2
fi

if [ -f "$models/stories260K.gguf" ]; then
    m=$models/stories260K.gguf
    head -c 100000 "$m" >"$tmp/truncated.gguf"
    expect 1 "truncated.gguf" -- run -m "$tmp/truncated.gguf" -p hi
    expect 2 "--temp must be >= 0, got -1|temperature must be >= 0" -- run -m "$m" -p hi --temp -1
    expect 1 "exceeds the context size 64" -- run -m "$m" -p "Once upon a time" -n 100 --ctx-size 64
    expect 0 "" -- tokenize -m "$m" -p "Once upon a time"
    if [ "$(cat "$tmp/out")" = "1 403 407 261 378" ]; then pass=$((pass + 1)); else
        fail=$((fail + 1)); echo "FAIL: tokenize printed '$(cat "$tmp/out")'" >&2; fi
    expect 0 "prompt 5 tokens" -- run -m "$m" -p "Once upon a time" -n 32 --threads 1
    want=", there was a little girl named Lily. She loved to play outside in the park. One day, she saw"
    if [ "$(cat "$tmp/out")" = "$want" ]; then pass=$((pass + 1)); else
        fail=$((fail + 1)); echo "FAIL: run printed '$(cat "$tmp/out")'" >&2; fi
    # --warmup runs synthetic tokens first and forgets them: the same text and prompt count.
    expect 0 "prompt 5 tokens" -- run -m "$m" -p "Once upon a time" -n 32 --threads 1 --warmup 40
    if [ "$(cat "$tmp/out")" = "$want" ]; then pass=$((pass + 1)); else
        fail=$((fail + 1)); echo "FAIL: run --warmup 40 printed '$(cat "$tmp/out")'" >&2; fi
    # Tensor parallelism on the CPU: 2 ranks print the same greedy text; 3 does not divide
    # the model's 4 KV heads (usage error).
    expect 0 "prompt 5 tokens" -- run -m "$m" -p "Once upon a time" -n 32 --threads 2 --tensor-parallel 2
    if [ "$(cat "$tmp/out")" = "$want" ]; then pass=$((pass + 1)); else
        fail=$((fail + 1)); echo "FAIL: run --tensor-parallel 2 printed '$(cat "$tmp/out")'" >&2; fi
    expect 2 "--tensor-parallel 3: .* must all be divisible by 3" -- run -m "$m" -p hi --tensor-parallel 3
    expect 0 "" -- run -m "$models/stories260K-q4_k_m.gguf" -p "Once upon a time" -n 8 --tensor-parallel 2
    echo "Once upon a time, there was a little girl named Lily." >"$tmp/short.txt"
    expect 1 "has [0-9]+ tokens, shorter than local window \+ block size = 64 \+ 16 = 80" -- calibrate -m "$m" -f "$tmp/short.txt" -o "$tmp/b.json" --block-size 16 --local-window 64
    expect 1 "garbage.gguf" -- calibrate -m "$tmp/garbage.gguf" -f "$tmp/short.txt" -o "$tmp/b.json" --block-size 16 --local-window 64
    expect 0 "" -- inspect -m "$models/stories260K-q4_k_m.gguf"
    grep -q "Q5_0" "$tmp/out" && pass=$((pass + 1)) || { fail=$((fail + 1)); echo "FAIL: inspect output" >&2; }

    # --export-train counting tokens with the model's tokenizer: every prompt fits its ctx.
    expect 0 "" -- eval -m "$m" --export-train "$tmp/tm.jsonl" --seed 1000003 --task niah_single_number,assoc_recall --ctx 512 --n-samples 3
    if python3 -c 'import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
assert len(rows) == 6 and all(r["n_prompt_tokens"] <= 512 for r in rows), rows' "$tmp/tm.jsonl"; then
        pass=$((pass + 1))
    else
        fail=$((fail + 1)); echo "FAIL: --export-train -m: items exceed their ctx" >&2
    fi

    # tca eval at 512 tokens (stories260K's training length; its accuracy is ~0, the files are
    # what is checked): fields and ranges, determinism across runs, identical items across
    # policies, TCA sparse at 512 with b 16 / w 64.
    ev=(eval -m "$m" --ctx 512 --n-samples 2 --seed 3 --attention dense,tca,streaming
        --block-size 16 --local-window 64 --keep 0.25 --kv-budget 128 --threads 1)
    t0=$(date +%s%N)
    expect 0 "" -- "${ev[@]}" --out "$tmp/eval1"
    t1=$(date +%s%N)
    expect 0 "" -- "${ev[@]}" --out "$tmp/eval2"
    echo "cli_test: tca eval (8 tasks x 2 samples x 3 policies at 512 tokens) took $(((t1 - t0) / 1000000)) ms" >&2
    check() {  # check DESCRIPTION COMMAND...: the command must succeed
        local what=$1
        shift
        if "$@"; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: eval: $what" >&2; fi
    }
    e=$tmp/eval1
    check "output files" test -s "$e/items.jsonl" -a -s "$e/summary.json" -a -s "$e/summary.md" -a -s "$e/accuracy_vs_kv.png"
    check "png signature" test "$(head -c 4 "$e/accuracy_vs_kv.png" | tail -c 3)" = "PNG"
    check "48 item lines" test "$(wc -l <"$e/items.jsonl")" -eq 48
    for k in task ctx policy sample depth references prediction score n_prompt_tokens kv_fraction prefill_ms prompt_hash; do
        check "every line has $k" test "$(grep -c "\"$k\":" "$e/items.jsonl")" -eq 48
    done
    inrange() {  # inrange FIELD FILE: every numeric value of FIELD is in [0, 1]
        grep -o "\"$1\": *[-0-9.e]*" "$2" | sed 's/.*: *//' | awk '$1 < 0 || $1 > 1 { bad = 1 } END { exit bad || NR == 0 }'
    }
    check "item scores in [0, 1]" inrange score "$e/items.jsonl"
    check "item kv fractions in [0, 1]" inrange kv_fraction "$e/items.jsonl"
    check "summary accuracies in [0, 1]" inrange accuracy "$e/summary.json"
    check "summary kv fractions in [0, 1]" inrange kv_fraction "$e/summary.json"
    check "24 summary rows" test "$(grep -c '"n_samples": 2' "$e/summary.json")" -eq 24
    check "dense keeps the whole cache" test "$(grep '"policy":"dense"' "$e/items.jsonl" | grep -c '"kv_fraction":1[,.]')" -eq 16
    check "tca is sparse at 512" test "$(grep '"policy":"tca"' "$e/items.jsonl" | grep -c '"kv_fraction":0\.')" -eq 16
    check "streaming keeps 128 of each KV head" test "$(grep '"policy":"streaming"' "$e/items.jsonl" | grep -c '"kv_fraction":0\.')" -eq 16
    check "markdown table rows" test "$(grep -c '^| [a-z_]* | 512 | ' "$e/summary.md")" -eq 24
    check "table printed" grep -q '^| niah_multiquery | 512 | tca | ' "$tmp/out"
    # Identical items across policies: (task, sample) -> prompt hash, length, references agree.
    items_key() { sed -E 's/"policy":"[a-z]*",//; s/"prediction":.*"score"/"score"/; s/"score":[^,]*,//; s/"kv_fraction":[^,]*,//; s/"kv_bytes":[^,]*,//; s/"prefill_ms":[^,]*,//' "$1" | sort -u; }
    check "identical items across policies" test "$(items_key "$e/items.jsonl" | wc -l)" -eq 16
    strip_timing() { sed -E 's/"prefill_ms":[^,]*,//' "$1"; }
    check "items deterministic across runs" cmp -s <(strip_timing "$e/items.jsonl") <(strip_timing "$tmp/eval2/items.jsonl")
    check "summary deterministic across runs" cmp -s "$e/summary.json" "$tmp/eval2/summary.json"
    check "16 distinct prompts" test "$(grep -o '"prompt_hash":"[0-9a-f]*"' "$e/items.jsonl" | sort -u | wc -l)" -eq 16
    printf 'The first sentence of the file. A second one follows here! Is this the third?\n' >"$tmp/hay.txt"
    expect 0 "" -- eval -m "$m" --ctx 384 --n-samples 1 --task niah_single_word --attention dense --haystack "$tmp/hay.txt" --out "$tmp/eval3"
    check "haystack file named in summary" grep -q "hay.txt" "$tmp/eval3/summary.json"
    # --tag: every label becomes policy:TAG in the files and the table; tca pairs with dense:TAG.
    # An explicit --kv-type still applies.
    expect 0 "" -- eval -m "$m" --ctx 512 --n-samples 2 --task niah_single_number --attention dense,tca \
        --block-size 16 --local-window 64 --keep 0.25 --threads 1 --kv-type f16 --tag tau0.9 --out "$tmp/eval4"
    e=$tmp/eval4
    check "tagged labels in items.jsonl" test "$(grep -c '"policy":"dense:tau0.9"' "$e/items.jsonl")" -eq 2 -a \
        "$(grep -c '"policy":"tca:tau0.9"' "$e/items.jsonl")" -eq 2
    check "tagged labels in summary.json" grep -q '"policy": "tca:tau0.9"' "$e/summary.json"
    check "tagged tca pairs with dense:tau0.9" grep -q '"delta_vs_dense"' "$e/summary.json"
    check "tagged row in summary.md" grep -q '^| niah_single_number | 512 | tca:tau0.9 | ' "$e/summary.md"
    check "tagged row printed" grep -q '^| niah_single_number | 512 | dense:tau0.9 | ' "$tmp/out"
    check "tagged run png" test "$(head -c 4 "$e/accuracy_vs_kv.png" | tail -c 3)" = "PNG"
    # --attn-stats: per-layer recall and errors against dense in every item, and a fidelity table.
    expect 0 "" -- eval -m "$m" --ctx 512 --n-samples 1 --task niah_single_number,niah_multikey \
        --attention dense,tca,snapkv --block-size 16 --local-window 64 --keep 0.25 --kv-budget 128 --threads 1 \
        --attn-stats --out "$tmp/eval5"
    e=$tmp/eval5
    check "attn stats in every item" test "$(grep -c '"attn_recall":\[[0-9]' "$e/items.jsonl")" -eq 6 -a \
        "$(grep -c '"attn_decode_error":\[' "$e/items.jsonl")" -eq 6
    check "dense recall is 1" test "$(grep '"policy":"dense"' "$e/items.jsonl" | grep -c '"attn_recall":\[1\.0,1\.0,1\.0,1\.0,1\.0')" -eq 2
    check "tca recall below 1" grep -q '"policy":"tca".*"attn_recall":\[0\.' "$e/items.jsonl"
    check "fidelity table" grep -q '^| 512 | snapkv | 0\.[0-9]* | 0\.0000 | ' "$e/summary.md"
    check "fidelity in summary.json" grep -q '"attn_recall_by_layer"' "$e/summary.json"
    expect 1 "--ctx 128 is too small for task niah_multiquery" -- eval -m "$m" --ctx 128 --task niah_multiquery --attention dense
    expect 1 "cannot read haystack file" -- eval -m "$m" --ctx 512 --haystack "$tmp/missing.txt"
else
    echo "cli_test: $models/stories260K.gguf absent: model runs skipped" >&2
fi
# The shipped model (tools/train, models/) is the default of run and eval.
shipped=$(cd "$(dirname "$0")/../.." && pwd)/models/tca-long-14m.q8_0.gguf
if [ -f "$shipped" ] && [ -z "${TCA_MODEL:-}" ]; then
    expect 0 "" -- run -p "The LORD is my shepherd" -n 4 --threads 1
    check "run without -m uses the shipped model" grep -q "tca-long-14m" "$tmp/err"
    # The shipped model retrieves: 2 needles at 2K, dense and tca with the shipped budgets.
    expect 0 "" -- eval --task niah_single_number --ctx 2k --n-samples 2 --seed 11 --attention dense,tca \
        --budget-file "$(dirname "$shipped")/tca-long-14m.budgets.json" --threads 2
    check "shipped model finds the needles (dense)" grep -q '^| niah_single_number | 2048 | dense | 1.000 ' "$tmp/out"
fi
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
