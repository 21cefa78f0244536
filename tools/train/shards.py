"""Checkpoint sharding with no torch dependency: which tensors go into which file so that every
file stays under the device tool's 16 MiB per-file limit (tools/train/README.md)."""
from __future__ import annotations

MIB = 1024 * 1024
DEFAULT_LIMIT = 15 * MIB  # safetensors header + alignment stay well inside 16 MiB


def plan_shards(sizes: list, limit: int = DEFAULT_LIMIT) -> list:
    """sizes: [(name, n_bytes)] in order. Returns [[name, ...], ...]: consecutive groups whose
    bytes sum to at most `limit`; a tensor larger than `limit` is an error (split the model)."""
    shards, cur, cur_bytes = [], [], 0
    for name, n in sizes:
        if n > limit:
            raise ValueError(f"tensor {name} has {n} bytes, more than the {limit}-byte shard limit")
        if cur and cur_bytes + n > limit:
            shards.append(cur)
            cur, cur_bytes = [], 0
        cur.append(name)
        cur_bytes += n
    if cur:
        shards.append(cur)
    return shards


def shard_file_names(n: int) -> list:
    """Hugging Face names: model.safetensors for one file, else model-0000i-of-0000n."""
    if n == 1:
        return ["model.safetensors"]
    return [f"model-{i + 1:05d}-of-{n:05d}.safetensors" for i in range(n)]


def index_json(shards: list, names: list, total_bytes: int) -> dict:
    """model.safetensors.index.json: weight_map name -> file."""
    weight_map = {}
    for group, fname in zip(shards, names):
        for t in group:
            weight_map[t] = fname
    return {"metadata": {"total_size": total_bytes}, "weight_map": weight_map}


def gguf_bytes_estimate(n_params: int, n_norm_params: int, weight_type: str) -> int:
    """File size of the converted GGUF: matrices at weight_type, norms f32 (tokenizer extra)."""
    per = {"f32": 4.0, "f16": 2.0, "bf16": 2.0, "q8_0": 34.0 / 32.0}[weight_type]
    return int((n_params - n_norm_params) * per + 4 * n_norm_params)
