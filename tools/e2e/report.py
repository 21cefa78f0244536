#!/usr/bin/env python3
"""Report of the end-to-end GPU benchmark (tools/e2e/run_e2e.sh): reads its JSONL and prints /
writes a markdown table (TTFT, decode per token, KV bytes: tca dense, tca tca, transformers sdpa)
with the P5-P8 verdicts of docs/performance.md.

Definitions:
  TTFT        tca: stats prefill_ms (the whole prompt's forward, last logits on the host);
              transformers: one forward of the prompt, logits_to_keep=1, synchronized.
  decode      ms per token: tca decode_ms / (n_generated - 1) (the last sampled token needs
              no forward pass); transformers: median of the timed single-token forwards.
  KV          tca stats kv_bytes (held) and kv_bytes_dense (a dense cache of the same positions).
  P8          "never slower": tca within 3% of dense (run-to-run noise) at every L <= 16K.

Usage: python3 tools/e2e/report.py --jsonl OUT/e2e.jsonl --out OUT/e2e.md [--keep 0.2]
"""
import argparse
import json
import sys

GIB = 2.0 ** 30
P8_TOL = 1.03


def fmt(x, spec=".1f", none="—"):
    return none if x is None else format(x, spec)


def ratio(a, b):
    return a / b if a is not None and b not in (None, 0) else None


def rx(a, b):
    r = ratio(a, b)
    return "—" if r is None else f"{r:.2f}x"


def label(L):
    return f"{L // 1024}K" if L % 1024 == 0 else str(L)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jsonl", required=True)
    ap.add_argument("--out", default="")
    ap.add_argument("--keep", default="0.2")
    args = ap.parse_args()
    tca, hf_ttft, hf_dec, errors = {}, {}, {}, []
    for line in open(args.jsonl):
        line = line.strip()
        if not line:
            continue
        try:
            r = json.loads(line)
        except json.JSONDecodeError:
            errors.append(f"unparsable line: {line[:120]}")
            continue
        b = r.get("bench")
        if b == "tca":
            if "error" in r:
                errors.append(f"tca L={r['L']} {r['policy']}: {r['error']}")
            else:
                tca[(r["L"], r["policy"])] = r
        elif b == "hf_sdpa_ttft":
            hf_ttft[r["L"]] = r
        elif b == "hf_sdpa_decode":
            hf_dec[r["L"]] = r
    lengths = sorted({L for L, _ in tca} | set(hf_ttft))

    def ttft(L, pol):
        r = tca.get((L, pol))
        return r["stats"]["prefill_ms"] if r else None

    def dec(L, pol):
        r = tca.get((L, pol))
        if not r:
            return None
        s = r["stats"]
        n = s["n_generated"] - 1
        return s["decode_ms"] / n if n > 0 else None

    def hft(L):
        return hf_ttft[L]["ms"] if L in hf_ttft else None

    def hfd(L):
        return hf_dec[L].get("ms_per_token") if L in hf_dec else None

    out = []
    w = out.append
    w(f"# End to end on the GPU: 8B-shaped random-weight Llama, dense vs TCA (keep {args.keep})\n")
    meta = next(iter(tca.values()), None)
    hfm = next(iter(hf_ttft.values()), None)
    if meta:
        w(f"tca: `tca run --device cuda`, block 128, local window 4096, {meta['stats'].get('n_generated')} "
          f"generated tokens, bf16 KV cache, whole prompt in one batch.")
    if hfm:
        w(f"transformers {hfm.get('transformers')} (torch {hfm.get('torch')}), attn "
          f"`{hfm.get('attn')}`, bf16, same weights (vocabulary {hfm.get('vocab')}), "
          f"{hf_dec[next(iter(hf_dec))].get('cache') if hf_dec else '?'} for decode.")
    w("")
    w("| L | TTFT ms: HF sdpa | tca dense | tca tca | tca vs dense | tca vs HF | dense vs HF "
      "| decode ms/tok: HF | dense | tca | tca vs dense | KV GiB dense | KV GiB tca | KV fraction "
      "| peak GPU GiB dense / tca |")
    w("|" + "---|" * 15)
    for L in lengths:
        d, t, h = ttft(L, "dense"), ttft(L, "tca"), hft(L)
        dd, td, hd = dec(L, "dense"), dec(L, "tca"), hfd(L)
        rt = tca.get((L, "tca"))
        rd = tca.get((L, "dense"))
        kvd = rd["stats"]["kv_bytes"] / GIB if rd else (rt["stats"]["kv_bytes_dense"] / GIB if rt else None)
        kvt = rt["stats"]["kv_bytes"] / GIB if rt else None
        frac = rt["stats"]["kv_bytes"] / rt["stats"]["kv_bytes_dense"] if rt and rt["stats"]["kv_bytes_dense"] else None

        def peak(r):
            p = r.get("peak_gpu_mib") if r else None
            return fmt(p / 1024 if p else None)

        w(f"| {label(L)} | {fmt(h)} | {fmt(d)} | {fmt(t)} | {rx(d, t)} | "
          f"{rx(h, t)} | {rx(h, d)} | {fmt(hd, '.2f')} | {fmt(dd, '.2f')} | "
          f"{fmt(td, '.2f')} | {rx(dd, td)} | {fmt(kvd, '.2f')} | {fmt(kvt, '.2f')} | "
          f"{fmt(frac, '.3f')} | {peak(rd)} / {peak(rt)} |")
        for pol, r in (("dense", rd), ("tca", rt)):
            if r and r["stats"]["n_prompt_tokens"] != L:
                errors.append(f"L={L} {pol}: the prompt encoded to {r['stats']['n_prompt_tokens']} tokens")
    w("")
    w("ratios: \"tca vs dense\" = dense time / tca time (above 1: tca is faster); "
      "decode ms/tok for tca = decode_ms / (generated - 1).\n")

    # Verdicts.
    head = max((L for L in lengths if L >= 131072), default=None)
    verdicts = []

    def verdict(name, ok, text):
        state = "not measured" if ok is None else ("met" if ok else "MISSED")
        verdicts.append((name, state, text))

    if head is None:
        for p in ("P5", "P6", "P7"):
            verdict(p, None, "no 128K run")
    else:
        s5 = ratio(ttft(head, "dense"), ttft(head, "tca"))
        s5hf = ratio(hft(head), ttft(head, "tca"))
        verdict("P5", None if s5 is None else s5 >= 2.0,
                f"TTFT at {label(head)}: tca {fmt(s5, '.2f')}x vs tca dense (target >= 2.0x); "
                f"{fmt(s5hf, '.2f')}x vs transformers sdpa")
        s6 = ratio(dec(head, "dense"), dec(head, "tca"))
        verdict("P6", None if s6 is None else s6 >= 1.7,
                f"decode per token at {label(head)}: {fmt(s6, '.2f')}x (target >= 1.7x)")
        rt = tca.get((head, "tca"))
        f7 = rt["stats"]["kv_bytes"] / rt["stats"]["kv_bytes_dense"] if rt else None
        verdict("P7", None if f7 is None else f7 <= 0.25,
                f"KV at {label(head)}: {fmt(None if f7 is None else 100 * f7, '.1f')}% of dense (target <= 25%)")
    short = [L for L in lengths if L <= 16384]
    p8_ok, p8_txt = None, []
    for L in short:
        for what, d, t in (("TTFT", ttft(L, "dense"), ttft(L, "tca")), ("decode", dec(L, "dense"), dec(L, "tca"))):
            if d is None or t is None:
                continue
            ok = t <= d * P8_TOL
            p8_ok = ok if p8_ok is None else (p8_ok and ok)
            p8_txt.append(f"{label(L)} {what} tca/dense {t / d:.3f}")
    verdict("P8", p8_ok, "; ".join(p8_txt) + f" (met: every ratio <= {P8_TOL})" if p8_txt else "no run at <= 16K")
    w("| target | verdict | measured |")
    w("|---|---|---|")
    for name, state, text in verdicts:
        w(f"| {name} | {state} | {text} |")
    if errors:
        w("\nProblems:\n")
        for e in errors:
            w(f"- {e}")
    text = "\n".join(out) + "\n"
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
