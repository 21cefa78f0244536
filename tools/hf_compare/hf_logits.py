#!/usr/bin/env python3
"""Reference logits from Hugging Face transformers for random-weight Llama and Qwen2 models.

For each architecture this builds a small LlamaForCausalLM / Qwen2ForCausalLM with random
weights (fixed seed), saves it as a Hugging Face folder tca loads (config.json,
model.safetensors in float32, and a tokenizer.json whose special tokens <|tN|> map to the ids
N, so a prompt text of such tokens encodes to exactly the chosen ids), runs a fixed token-id
prompt through transformers in float32 (TF32 off) and writes:

  OUT/<name>/config.json, model.safetensors, tokenizer.json   the model for `tca run -m`
  OUT/<name>/prompt.txt                                       the prompt as <|tN|> tokens
  OUT/<name>/prompt_ids.txt                                   the ids, one line
  OUT/<name>/hf_logits.f32                                    raw float32 [n_prompt, vocab]

Then tools/hf_compare/compare.py runs `tca run --logits-out` on the CPU and on CUDA and prints
max abs / relative errors against these logits.

Usage on the GPU machine (python3 with torch + transformers; tca built with -DTCA_CUDA=ON):
  python3 tools/hf_compare/hf_logits.py --out /tmp/hfcmp
  python3 tools/hf_compare/compare.py --tca build/tca --dir /tmp/hfcmp
  (compare.py --devices cpu skips the GPU; --devices cuda the CPU)
"""
import argparse
import json
import os

import numpy as np
import torch
import transformers

VOCAB = 1000
N_BYTES = 256  # byte-level BPE base tokens (ids 0..255); ids above are <|tN|> special tokens


def configs():
    common = dict(vocab_size=VOCAB, hidden_size=256, intermediate_size=512, num_hidden_layers=4,
                  num_attention_heads=8, num_key_value_heads=2, max_position_embeddings=1024,
                  rms_norm_eps=1e-6, tie_word_embeddings=False, bos_token_id=1, eos_token_id=2)
    llama = transformers.LlamaConfig(head_dim=32, rope_theta=10000.0, attention_bias=False, **common)
    qwen2 = transformers.Qwen2Config(rope_theta=1000000.0, use_sliding_window=False, **common)  # head_dim 32
    llama64 = transformers.LlamaConfig(**{**common, "num_attention_heads": 4, "num_key_value_heads": 2},
                                       head_dim=64, rope_theta=500000.0, attention_bias=False)
    return [("llama_hd32", transformers.LlamaForCausalLM, llama),
            ("qwen2_hd32", transformers.Qwen2ForCausalLM, qwen2),
            ("llama_hd64", transformers.LlamaForCausalLM, llama64)]


def bytes_to_unicode():
    """GPT-2's byte -> printable character map (the byte-level BPE alphabet)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def tokenizer_json():
    b2u = bytes_to_unicode()
    vocab = {b2u[b]: b for b in range(256)}
    added = [{"id": i, "content": f"<|t{i}|>", "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True} for i in range(N_BYTES, VOCAB)]
    return {"version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
            "normalizer": None,
            "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                              "use_regex": True},
            "post_processor": None, "decoder": {"type": "ByteLevel"},
            "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                      "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                      "vocab": vocab, "merges": []}}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--n-prompt", type=int, default=64, help="prompt tokens")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    rng = np.random.default_rng(args.seed)
    ids = [int(x) for x in rng.integers(N_BYTES, VOCAB, size=args.n_prompt)]
    for name, cls, cfg in configs():
        torch.manual_seed(args.seed)
        cfg.torch_dtype = "float32"
        model = cls(cfg).float().eval()
        # Random init gives tiny std 0.02 weights; norms at 1 would leave the logits near 0.
        with torch.no_grad():
            for n, p in model.named_parameters():
                if n.endswith("norm.weight"):
                    p.uniform_(0.8, 1.2)
        folder = os.path.join(args.out, name)
        os.makedirs(folder, exist_ok=True)
        model.save_pretrained(folder, safe_serialization=True)
        with open(os.path.join(folder, "tokenizer.json"), "w") as f:
            json.dump(tokenizer_json(), f)
        with open(os.path.join(folder, "prompt.txt"), "w") as f:
            f.write("".join(f"<|t{i}|>" for i in ids))
        with open(os.path.join(folder, "prompt_ids.txt"), "w") as f:
            f.write(" ".join(str(i) for i in ids) + "\n")
        model = model.to(dev)
        with torch.no_grad():
            logits = model(torch.tensor([ids], device=dev)).logits[0].float().cpu().numpy()
        logits.astype(np.float32).tofile(os.path.join(folder, "hf_logits.f32"))
        print(f"{name}: {folder} ({cls.__name__}, logits {logits.shape}, max |logit| "
              f"{np.abs(logits).max():.3f}, transformers {transformers.__version__}, {dev})")


if __name__ == "__main__":
    main()
