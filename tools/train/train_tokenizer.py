"""Trains the byte-level BPE tokenizer on the natural text (Hugging Face tokenizers, on the GPU
machine where it is installed) and writes tokenizer.json + tokenizer_config.json.

The pre-tokenizer is ByteLevel with the GPT-2 split regex (tca's kGpt2, GGUF pre "gpt-2"), no
normalizer, BOS <|begin_of_text|> prepended by a TemplateProcessing post-processor and EOS
<|end_of_text|>: exactly what `tca run -m DIR` and `tca convert` read.

usage: python3 train_tokenizer.py --data tools/train/data --out DIR [--vocab-size 4096]
"""
from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import data as D  # noqa: E402


def text_iterator(paths, chunk=1 << 16):
    for p in paths:
        with D.open_text(p) as f:
            while True:
                s = f.read(chunk)
                if not s:
                    break
                yield s


def train(text_paths, out_dir, vocab_size=4096, min_frequency=2,
          special_tokens=("<|begin_of_text|>", "<|end_of_text|>", "<|pad|>"), extra_texts=()):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    tok = Tokenizer(models.BPE(unk_token=None, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                  special_tokens=list(special_tokens),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)

    def it():
        yield from text_iterator(text_paths)
        yield from extra_texts

    tok.train_from_iterator(it(), trainer=trainer)
    bos, eos = special_tokens[0], special_tokens[1]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, tok.token_to_id(bos))])
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "tokenizer.json")
    tok.save(path)
    cfg = {"bos_token": bos, "eos_token": eos, "pad_token": special_tokens[2] if len(special_tokens) > 2 else None,
           "add_bos_token": True, "add_eos_token": False, "model_max_length": 16384,
           "tokenizer_class": "PreTrainedTokenizerFast"}
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    return path


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "data"))
    ap.add_argument("--out", required=True)
    ap.add_argument("--vocab-size", type=int, default=4096)
    ap.add_argument("--min-frequency", type=int, default=2)
    a = ap.parse_args()
    texts = D.list_files(os.path.join(a.data, "text"))
    if not texts:
        sys.exit(f"no text in {a.data}/text (run prepare_data.sh first)")
    print("tokenizer:", train(texts, a.out, a.vocab_size, a.min_frequency))


if __name__ == "__main__":
    main()
