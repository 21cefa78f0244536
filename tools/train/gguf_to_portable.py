"""Rebuilds a portable checkpoint (the Hugging Face folder train.py resumes from) out of a
shipped GGUF, for when the bf16 checkpoint of the last training call is lost: the weights are
dequantized (Q8_0, F16, BF16, F32), the Q/K rows are permuted back from GGUF's adjacent-pair
RoPE layout to the half-split layout of tools/train/model.py (the inverse of `tca convert`),
and the vocabulary becomes a tokenizer.json again (byte-level BPE, GPT-2 split regex, BOS
prepended: what train_tokenizer.py writes).

Torch-free (struct only), so it runs here and on the GPU machine. Weights are written as f32:
`tca convert --type q8_0` of the result gives back the GGUF's tensor bytes exactly (Q8_0 of a
dequantized Q8_0 block is the same block), which is how the round trip is checked
(test_train_pieces.py, and by hand: tools/train/README.md).

train_state.json: --stage N (the next stage to run; its batches and schedule start at step 0)
and, from --loss-csv (the curve of the run, docs/perf/train-loss.csv), the totals of steps,
tokens and time so the curve goes on; loss.csv is copied in.

usage: python3 gguf_to_portable.py MODEL.gguf OUT_DIR --stage N [--loss-csv CSV]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import struct
import sys
from array import array

GGUF_MAGIC = b"GGUF"
# GGUF metadata value types.
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q",
            11: "<q", 12: "<d"}
T_STRING, T_ARRAY = 8, 9
# ggml tensor types this reader dequantizes.
F32, F16, Q8_0, BF16 = 0, 1, 8, 30
SPECIAL_TYPES = (3, 4)  # CONTROL, USER_DEFINED: added tokens in tokenizer.json


class GgufError(Exception):
    pass


class _Reader:
    def __init__(self, buf: bytes, path: str):
        self.buf, self.pos, self.path = buf, 0, path

    def take(self, fmt: str):
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.buf):
            raise GgufError(f"{self.path}: truncated at byte {self.pos}")
        v = struct.unpack_from(fmt, self.buf, self.pos)[0]
        self.pos += size
        return v

    def string(self) -> str:
        n = self.take("<Q")
        if self.pos + n > len(self.buf):
            raise GgufError(f"{self.path}: string of {n} bytes at byte {self.pos} runs past the end")
        s = self.buf[self.pos:self.pos + n].decode("utf-8")
        self.pos += n
        return s

    def value(self, t: int):
        if t in _SCALARS:
            return self.take(_SCALARS[t])
        if t == T_STRING:
            return self.string()
        if t == T_ARRAY:
            et, n = self.take("<I"), self.take("<Q")
            return [self.value(et) for _ in range(n)]
        raise GgufError(f"{self.path}: metadata value type {t} at byte {self.pos}")


def read_gguf(path: str):
    """(metadata dict, {name: (type, dims (ne order: fastest first), bytes)})."""
    with open(path, "rb") as f:
        buf = f.read()
    r = _Reader(buf, path)
    if buf[:4] != GGUF_MAGIC:
        raise GgufError(f"{path}: not a GGUF file (magic {buf[:4]!r})")
    r.pos = 4
    version = r.take("<I")
    if version not in (2, 3):
        raise GgufError(f"{path}: GGUF version {version} (2 or 3 are read)")
    n_tensors, n_kv = r.take("<Q"), r.take("<Q")
    meta = {}
    for _ in range(n_kv):
        key = r.string()
        meta[key] = r.value(r.take("<I"))
    infos = []
    for _ in range(n_tensors):
        name = r.string()
        dims = [r.take("<Q") for _ in range(r.take("<I"))]
        infos.append((name, dims, r.take("<I"), r.take("<Q")))
    align = int(meta.get("general.alignment", 32))
    base = (r.pos + align - 1) // align * align
    tensors = {}
    for name, dims, t, off in infos:
        n = 1
        for d in dims:
            n *= d
        if t == Q8_0:
            nbytes = n // 32 * 34
        elif t in (F16, BF16):
            nbytes = 2 * n
        elif t == F32:
            nbytes = 4 * n
        else:
            raise GgufError(f"{path}: tensor {name} has ggml type {t} (F32, F16, BF16 and Q8_0 are read)")
        if base + off + nbytes > len(buf):
            raise GgufError(f"{path}: tensor {name} runs past the end of the file")
        tensors[name] = (t, dims, buf[base + off:base + off + nbytes])
    return meta, tensors


def dequantize(t: int, data: bytes) -> array:
    """The tensor's values as f32 (exact for every type read)."""
    if t == F32:
        out = array("f")
        out.frombytes(data)
        return out
    if t == BF16:
        w = array("H")
        w.frombytes(data)
        out = array("I", (x << 16 for x in w))
        return array("f", out.tobytes())
    if t == F16:
        return array("f", struct.unpack(f"<{len(data) // 2}e", data))
    out = array("f")
    for b in range(0, len(data), 34):  # Q8_0: f16 scale, 32 int8
        d = struct.unpack_from("<e", data, b)[0]
        out.extend(d * q for q in struct.unpack_from("<32b", data, b + 2))
    return out


def unpermute_rope_rows(x: array, n_heads: int, head_dim: int, row_len: int) -> array:
    """Inverse of tca convert's permute_rope_rows: row h*hd + 2i + j (GGUF) -> h*hd + j*hd/2 + i."""
    half = head_dim // 2
    out = array("f", bytes(4 * len(x)))
    for h in range(n_heads):
        for i in range(half):
            for j in range(2):
                src, dst = h * head_dim + 2 * i + j, h * head_dim + j * half + i
                out[dst * row_len:(dst + 1) * row_len] = x[src * row_len:(src + 1) * row_len]
    return out


_LAYER = {"attn_norm.weight": "input_layernorm.weight", "attn_q.weight": "self_attn.q_proj.weight",
          "attn_k.weight": "self_attn.k_proj.weight", "attn_v.weight": "self_attn.v_proj.weight",
          "attn_output.weight": "self_attn.o_proj.weight", "ffn_norm.weight": "post_attention_layernorm.weight",
          "ffn_gate.weight": "mlp.gate_proj.weight", "ffn_up.weight": "mlp.up_proj.weight",
          "ffn_down.weight": "mlp.down_proj.weight"}


def hf_name(gguf: str) -> str:
    if gguf == "token_embd.weight":
        return "model.embed_tokens.weight"
    if gguf == "output_norm.weight":
        return "model.norm.weight"
    if gguf == "output.weight":
        return "lm_head.weight"
    parts = gguf.split(".", 2)
    if len(parts) == 3 and parts[0] == "blk" and parts[1].isdigit() and parts[2] in _LAYER:
        return f"model.layers.{parts[1]}.{_LAYER[parts[2]]}"
    raise GgufError(f"tensor {gguf}: no Hugging Face name for it (a llama model's tensors are read)")


def write_safetensors(path: str, named: list[tuple[str, list[int], array]]):
    """F32 safetensors: header (names sorted, as safetensors writes them) then the data."""
    named = sorted(named, key=lambda t: t[0])
    header, off = {}, 0
    for name, shape, x in named:
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [off, off + 4 * len(x)]}
        off += 4 * len(x)
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for _, _, x in named:
            f.write(x.tobytes())


def tokenizer_json(meta: dict) -> dict:
    """tokenizer.json of the GGUF's byte-level BPE vocabulary (train_tokenizer.py's layout)."""
    if meta.get("tokenizer.ggml.model") != "gpt2" or meta.get("tokenizer.ggml.pre") != "gpt-2":
        raise GgufError(f"tokenizer {meta.get('tokenizer.ggml.model')}/{meta.get('tokenizer.ggml.pre')}: "
                        "only gpt2 vocabularies with the gpt-2 pre-tokenizer convert back")
    tokens, types = meta["tokenizer.ggml.tokens"], meta["tokenizer.ggml.token_type"]
    keep = [i for i, t in enumerate(types) if t != 5]  # UNUSED: "[PAD<i>]" rows past the vocabulary
    if keep != list(range(len(keep))):
        raise GgufError("unused tokens inside the vocabulary (only trailing padding converts back)")
    tokens = tokens[:len(keep)]
    bos = tokens[int(meta["tokenizer.ggml.bos_token_id"])]
    added = [{"id": i, "content": tokens[i], "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True} for i in keep if types[i] in SPECIAL_TYPES]
    bos_id = int(meta["tokenizer.ggml.bos_token_id"])
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 0}}],
            "special_tokens": {bos: {"id": bos, "ids": [bos_id], "tokens": [bos]}},
        },
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": {t: i for i, t in enumerate(tokens)},
                  "merges": [m.split(" ") for m in meta["tokenizer.ggml.merges"]]},
    }


def state_from_csv(path: str, stage: int) -> dict:
    state = {"stage": stage, "step": 0, "tokens": 0, "elapsed_s": 0.0, "stage_s": 0.0, "step_total": 0}
    if path:
        with open(path) as f:
            rows = [r.strip().split(",") for r in f if r.strip()][1:]
        if rows:
            last = rows[-1]
            state.update(step_total=int(last[0]), tokens=int(last[3]), elapsed_s=float(last[9]))
    return state


def convert(gguf: str, out: str, stage: int, loss_csv: str = "") -> dict:
    meta, tensors = read_gguf(gguf)
    arch = meta.get("general.architecture")
    if arch != "llama":
        raise GgufError(f"{gguf}: architecture {arch} (llama is read)")
    a = arch + "."
    n_head, n_kv = int(meta[a + "attention.head_count"]), int(meta[a + "attention.head_count_kv"])
    dim = int(meta[a + "embedding_length"])
    head_dim = int(meta.get(a + "attention.key_length", dim // n_head))
    named = []
    for name, (t, dims, data) in tensors.items():
        x = dequantize(t, data)
        heads = n_head if name.endswith("attn_q.weight") else n_kv if name.endswith("attn_k.weight") else 0
        if heads:
            x = unpermute_rope_rows(x, heads, head_dim, dims[0])
        named.append((hf_name(name), list(reversed(dims)), x))
    tied = "output.weight" not in tensors
    tok = tokenizer_json(meta)
    n_vocab = int(meta.get(a + "vocab_size", len(meta["tokenizer.ggml.tokens"])))
    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": n_vocab,
        "hidden_size": dim, "num_hidden_layers": int(meta[a + "block_count"]),
        "num_attention_heads": n_head, "num_key_value_heads": n_kv, "head_dim": head_dim,
        "intermediate_size": int(meta[a + "feed_forward_length"]),
        "rope_theta": float(meta[a + "rope.freq_base"]),
        "rope_parameters": {"rope_type": "default", "rope_theta": float(meta[a + "rope.freq_base"])},
        "rms_norm_eps": float(meta[a + "attention.layer_norm_rms_epsilon"]),
        "max_position_embeddings": int(meta[a + "context_length"]), "tie_word_embeddings": tied,
        "attention_bias": False, "hidden_act": "silu",
        "bos_token_id": int(meta["tokenizer.ggml.bos_token_id"]),
        "eos_token_id": int(meta["tokenizer.ggml.eos_token_id"]), "torch_dtype": "float32",
    }
    os.makedirs(out, exist_ok=True)
    write_safetensors(os.path.join(out, "model.safetensors"), named)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    with open(os.path.join(out, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tok, f, indent=2, ensure_ascii=False)
    bos = tok["added_tokens"][0]["content"] if tok["added_tokens"] else None
    eos = meta["tokenizer.ggml.tokens"][int(meta["tokenizer.ggml.eos_token_id"])]
    pad_id = meta.get("tokenizer.ggml.padding_token_id")
    pad = meta["tokenizer.ggml.tokens"][int(pad_id)] if pad_id is not None else None
    with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
        json.dump({"bos_token": bos, "eos_token": eos, "pad_token": pad, "add_bos_token": True,
                   "add_eos_token": False, "model_max_length": config["max_position_embeddings"],
                   "tokenizer_class": "PreTrainedTokenizerFast"}, f, indent=2)
    state = state_from_csv(loss_csv, stage)
    state["restored_from"] = os.path.basename(gguf)
    with open(os.path.join(out, "train_state.json"), "w") as f:
        json.dump(state, f)
    if loss_csv:
        shutil.copy(loss_csv, os.path.join(out, "loss.csv"))
    return state


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("gguf")
    ap.add_argument("out")
    ap.add_argument("--stage", type=int, required=True, help="index of the next recipe stage to train")
    ap.add_argument("--loss-csv", default="", help="the run's loss curve (its totals go into train_state.json)")
    a = ap.parse_args()
    try:
        state = convert(a.gguf, a.out, a.stage, a.loss_csv)
    except (GgufError, KeyError, OSError) as e:
        sys.exit(f"gguf_to_portable: {e}")
    print(f"gguf_to_portable: {a.gguf} -> {a.out}, state {state}")


if __name__ == "__main__":
    main()
