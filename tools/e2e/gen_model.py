#!/usr/bin/env python3
"""LLaMA-3.1-8B-shaped random-weight model for the end-to-end GPU benchmark (tools/e2e).

Builds a LlamaForCausalLM with the shapes of LLaMA-3.1-8B (hidden 4096, 32 layers, 32 query /
8 KV heads, head_dim 128, MLP 14336, rope theta 500000 with llama3 scaling) but a 32000-token
vocabulary (the embedding and the output matrix are < 4% of the 8B weights; a smaller vocabulary
saves initialisation, disk and load time), initialises bf16 weights on the GPU (seeded normal,
std 0.02; norms at 1) and writes:

  OUT/model/config.json, model-*.safetensors, model.safetensors.index.json, tokenizer.json
  OUT/prompt_<L>.txt      L token ids spelled <|tN|> (the tokenizer maps <|tN|> to id N)
  OUT/prompt_<L>.ids      the same ids, one line

The tokenizer is byte-level with the special tokens <|t256|> .. <|t1279|> (ids 256..1279);
prompts draw their ids from that range, so each prompt encodes to exactly L tokens. Ids above
1279 exist in the model but not in the tokenizer (tca accepts a smaller tokenizer).

Then, unless --no-hf, it times Hugging Face transformers (attn_implementation "sdpa") on the
same weights, still on the GPU: TTFT = one forward of the whole prompt (logits_to_keep=1,
torch.cuda.synchronize around it; a warm-up at the smallest length first; median of --reps
runs, one run at lengths >= 64K), then per-token decode with the KV cache (greedy, --decode
tokens, median). JSON lines on stdout (and --jsonl):
  {"bench": "hf_sdpa_ttft", "L": ..., "ms": ..., "runs": [...]}
  {"bench": "hf_sdpa_decode", "L": ..., "ms_per_token": ..., "runs": [...]}

--hf-only skips the generation and times transformers on the model an earlier --no-hf run
saved (tools/e2e/run_e2e.sh does that, so that tca's 128K runs come first).

Usage (GPU machine): python3 tools/e2e/gen_model.py --out /tmp/e2e --lengths 131072,32768,16384,8192
"""
import argparse
import json
import os
import statistics
import sys
import time

import numpy as np
import torch
import transformers

N_BYTES = 256
N_SPECIAL = 1024  # <|t256|> .. <|t1279|>
VOCAB = 32000


def llama8b_config(vocab):
    # Legacy (transformers 4) field names: every transformers version reads them (5 converts
    # rope_theta + rope_scaling into rope_parameters and save_pretrained writes that form).
    d = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "vocab_size": vocab, "hidden_size": 4096, "intermediate_size": 14336,
        "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
        "head_dim": 128, "hidden_act": "silu", "max_position_embeddings": 131072,
        "rms_norm_eps": 1e-5, "tie_word_embeddings": False, "attention_bias": False,
        "mlp_bias": False, "bos_token_id": 1, "eos_token_id": 2,
        "rope_theta": 500000.0,
        "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                         "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
        "use_cache": True,
    }
    cfg = transformers.LlamaConfig.from_dict(d)
    try:
        cfg._attn_implementation = "sdpa"
    except Exception as e:  # noqa: BLE001 (sdpa is transformers' default anyway)
        log(f"cannot set attn_implementation: {e}")
    # Whatever form transformers keeps the rope in, tca reads the config.json it saves.
    log(f"rope: {getattr(cfg, 'rope_parameters', None) or getattr(cfg, 'rope_scaling', None)}")
    return cfg


def bytes_to_unicode():
    """The byte-level BPE alphabet: each byte as a printable character (GPT-2's mapping)."""
    printable = list(range(0x21, 0x7F)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    table = {}
    extra = 0
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def tokenizer_json():
    b2u = bytes_to_unicode()
    vocab = {b2u[b]: b for b in range(N_BYTES)}
    added = [{"id": i, "content": f"<|t{i}|>", "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True} for i in range(N_BYTES, N_BYTES + N_SPECIAL)]
    return {"version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
            "normalizer": None,
            "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                              "use_regex": True},
            "post_processor": None, "decoder": {"type": "ByteLevel"},
            "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                      "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                      "vocab": vocab, "merges": []}}


def emit(rec, jsonl):
    line = json.dumps(rec)
    print(line, flush=True)
    if jsonl:
        with open(jsonl, "a") as f:
            f.write(line + "\n")


def log(msg):
    print(f"[gen_model {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def build_model(args):
    cfg = llama8b_config(args.vocab)
    torch.manual_seed(args.seed)
    t0 = time.time()
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device("cuda"):
            model = transformers.LlamaForCausalLM(cfg)
    finally:
        torch.set_default_dtype(old)
    gen = torch.Generator(device="cuda")
    gen.manual_seed(args.seed)
    n_params = 0
    with torch.no_grad():
        for name, p in model.named_parameters():
            n_params += p.numel()
            if name.endswith("norm.weight"):
                p.fill_(1.0)
            else:
                p.normal_(0.0, args.std, generator=gen)
    model.eval()
    torch.cuda.synchronize()
    log(f"model: {n_params / 1e9:.3f} B parameters, bf16 on {torch.cuda.get_device_name()}, "
        f"attention {model.config._attn_implementation}, {time.time() - t0:.1f} s")
    return model


def save(model, folder):
    t0 = time.time()
    os.makedirs(folder, exist_ok=True)
    try:
        model.save_pretrained(folder, safe_serialization=True, max_shard_size="5GB")
    except TypeError:  # a transformers without safe_serialization (always safetensors)
        model.save_pretrained(folder, max_shard_size="5GB")
    with open(os.path.join(folder, "tokenizer.json"), "w") as f:
        json.dump(tokenizer_json(), f)
    files = sorted(os.listdir(folder))
    size = sum(os.path.getsize(os.path.join(folder, x)) for x in files)
    log(f"saved {folder}: {files} ({size / 2**30:.2f} GiB) in {time.time() - t0:.1f} s")


def load_model(folder):
    """The saved model back on the GPU (--hf-only), bf16, sdpa attention."""
    t0 = time.time()
    cls = transformers.LlamaForCausalLM
    model = None
    for kw in ({"dtype": torch.bfloat16, "device_map": "cuda"}, {"torch_dtype": torch.bfloat16}):
        try:
            model = cls.from_pretrained(folder, attn_implementation="sdpa", **kw)
            break
        except Exception as e:  # noqa: BLE001 (an older or newer transformers: try the next form)
            log(f"from_pretrained({kw}) failed: {e}; retrying")
    if model is None:
        model = cls.from_pretrained(folder, attn_implementation="sdpa")
    model = model.to(device="cuda", dtype=torch.bfloat16).eval()
    torch.cuda.synchronize()
    log(f"loaded {folder} in {time.time() - t0:.1f} s, attention {model.config._attn_implementation}")
    return model


def read_prompts(out, lengths):
    return {L: np.array([int(t) for t in open(os.path.join(out, f"prompt_{L}.ids")).read().split()],
                        dtype=np.int64) for L in lengths}


def write_prompts(out, lengths, seed):
    rng = np.random.default_rng(seed)
    prompts = {}
    for L in lengths:
        ids = rng.integers(N_BYTES, N_BYTES + N_SPECIAL, size=L)
        prompts[L] = ids
        with open(os.path.join(out, f"prompt_{L}.txt"), "w") as f:
            f.write("".join(f"<|t{i}|>" for i in ids.tolist()))
        with open(os.path.join(out, f"prompt_{L}.ids"), "w") as f:
            f.write(" ".join(str(i) for i in ids.tolist()) + "\n")
    log(f"prompts: {sorted(lengths)}")
    return prompts


def sync_ms(fn):
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    r = fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) * 1000.0, r


def hf_bench(model, prompts, args):
    lengths = list(prompts)
    with torch.inference_mode():
        # Warm-up at the smallest length (kernel selection, allocator).
        small = min(lengths)
        x = torch.tensor(prompts[small][None, :], device="cuda")
        for _ in range(args.warmup):
            sync_ms(lambda: model(input_ids=x, use_cache=False, logits_to_keep=1))
        for L in lengths:
            x = torch.tensor(prompts[L][None, :], device="cuda")
            reps = args.reps if L < 65536 else args.reps_long
            runs, out = [], None
            for r in range(reps):
                last = r == reps - 1
                out = None
                torch.cuda.empty_cache()
                ms, out = sync_ms(lambda: model(input_ids=x, use_cache=last, logits_to_keep=1))
                runs.append(round(ms, 3))
            emit({"bench": "hf_sdpa_ttft", "L": L, "ms": statistics.median(runs), "runs": runs,
                  "transformers": transformers.__version__, "torch": torch.__version__,
                  "attn": model.config._attn_implementation, "vocab": args.vocab}, args.jsonl)
            cache = out.past_key_values
            tok = out.logits[:, -1:].argmax(-1)
            dec, o = [], None
            for _ in range(args.decode):
                ms, o = sync_ms(lambda: model(input_ids=tok, past_key_values=cache, use_cache=True))
                dec.append(round(ms, 3))
                cache = o.past_key_values
                tok = o.logits[:, -1:].argmax(-1)
            emit({"bench": "hf_sdpa_decode", "L": L, "ms_per_token": statistics.median(dec) if dec else None,
                  "runs": dec, "cache": type(cache).__name__}, args.jsonl)
            out = cache = o = x = tok = None
            torch.cuda.empty_cache()
            log(f"hf L={L}: ttft {runs} ms, decode {dec} ms; peak {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="/tmp/e2e")
    ap.add_argument("--lengths", default="131072,32768,16384,8192",
                    help="prompt lengths; transformers is timed in this order")
    ap.add_argument("--vocab", type=int, default=VOCAB)
    ap.add_argument("--std", type=float, default=0.02)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--reps", type=int, default=3, help="timed TTFT runs below 64K")
    ap.add_argument("--reps-long", type=int, default=1, help="timed TTFT runs at >= 64K")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--decode", type=int, default=8, help="decoded tokens timed per length")
    ap.add_argument("--no-hf", action="store_true", help="only write the model and the prompts")
    ap.add_argument("--hf-only", action="store_true",
                    help="load OUT/model and OUT/prompt_<L>.ids (an earlier run wrote them) and time transformers")
    ap.add_argument("--hf-lengths", default="", help="lengths to time with transformers (default: --lengths)")
    ap.add_argument("--jsonl", default="", help="also append the JSON lines to this file")
    args = ap.parse_args()
    lengths = [int(x) for x in args.lengths.split(",") if x]
    if not torch.cuda.is_available():
        sys.exit("gen_model.py: needs a GPU")
    os.makedirs(args.out, exist_ok=True)
    if args.hf_only:
        model = load_model(os.path.join(args.out, "model"))
        prompts = read_prompts(args.out, lengths)
    else:
        model = build_model(args)
        save(model, os.path.join(args.out, "model"))
        prompts = write_prompts(args.out, lengths, args.seed)
    if not args.no_hf:
        hl = [int(x) for x in args.hf_lengths.split(",") if x] or lengths
        hf_bench(model, {L: prompts[L] for L in hl}, args)
    del model
    torch.cuda.empty_cache()
    log("done; GPU memory freed")


if __name__ == "__main__":
    main()
