#!/usr/bin/env python3
"""Turns the JSON lines of tca_gpu_bench (ours) and bench/gpu_peer.py (peers) from one run into
the markdown table of the GPU targets of docs/performance.md, each marked met or missed:

  P1  TCA prefill total vs cuDNN dense prefill at the same L, per keep rate
      (targets at 128K: >= 6x at 10% keep, >= 3.5x at 20%, >= 2.2x at 40%)
  P2  selection (importance, block score, budget, select, gather) <= 10% of TCA time
  P3  our dense prefill vs cuDNN >= 0.9x; sparse kernel's useful TFLOP/s >= 0.85x cuDNN's
  P4  our decode attention >= 80% of the copy bandwidth measured in the same run
  P8  at L <= 16K, TCA (or its dense fallback) never slower than our dense prefill

Usage: gpu_report.py --ours ours.jsonl --peer peer.jsonl [--out gpu.md]
Prints the markdown and writes it to --out. Missing rows are reported as "no data".
"""
import argparse
import json
import sys

P1_TARGETS = {0.1: 6.0, 0.2: 3.5, 0.4: 2.2}  # at 128K
P1_LENGTH = 131072
P2_MAX_SHARE = 0.10
P3_DENSE_MIN = 0.9
P3_SPARSE_MIN = 0.85
P4_MIN = 0.8
P8_MAX_L = 16384


def load(path):
    rows = []
    if not path:
        return rows
    try:
        with open(path) as f:
            for n, line in enumerate(f, 1):
                line = line.strip()
                if not line.startswith("{"):
                    continue
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    print(f"gpu_report: {path}:{n}: bad JSON line ({e})", file=sys.stderr)
    except OSError as e:
        print(f"gpu_report: cannot read {path}: {e}", file=sys.stderr)
    return rows


def index(rows):
    """(bench, L, keep rounded) -> row; the last line wins."""
    out = {}
    for r in rows:
        keep = r.get("keep")
        out[(r.get("bench"), r.get("L"), None if keep is None else round(keep, 3))] = r
    return out


def verdict(ok):
    return "met" if ok else "**missed**"


def fmt(x, spec=".3g"):
    return "—" if x is None else format(x, spec)


def human_len(L):
    return f"{L // 1024}K" if L and L % 1024 == 0 else str(L)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ours", required=True, help="tca_gpu_bench JSON lines")
    ap.add_argument("--peer", required=True, help="gpu_peer.py JSON lines")
    ap.add_argument("--out", default="", help="write the markdown here too")
    args = ap.parse_args()

    ours, peer = load(args.ours), load(args.peer)
    o, p = index(ours), index(peer)
    lines = []
    tally = {"met": 0, "missed": 0}

    def mark(ok):
        tally["met" if ok else "missed"] += 1
        return verdict(ok)

    def emit(s=""):
        lines.append(s)

    first = (ours or peer or [{}])[0]
    emit("# GPU benchmark: TCA-Attention vs dense (one LLaMA-3.1-8B-shaped layer)")
    emit()
    emit(f"Device: {first.get('device', '?')}; git {first.get('git', '?')}; "
         f"{first.get('n_q_heads', '?')} query heads, {first.get('n_kv_heads', '?')} KV heads, "
         f"head_dim {first.get('head_dim', '?')}, bf16 K/V; b = {first.get('block_size', '?')}, "
         f"w = {first.get('local_window', '?')}; median of {first.get('reps', '?')} "
         f"after {first.get('warmup', '?')} warm-up runs, CUDA events. Ratios are within this run.")
    emit()

    lengths = sorted({r["L"] for r in ours if r.get("bench") in ("dense_prefill", "tca_prefill")} |
                     {r["L"] for r in peer if r.get("bench") == "cudnn_prefill"})
    keeps = sorted({round(r["keep"], 3) for r in ours if r.get("bench") == "tca_prefill"})

    def get(idx, bench, L, keep=None):
        return idx.get((bench, L, keep))

    def ms(r):
        return None if r is None else r.get("median_ms")

    # Raw prefill numbers.
    emit("## Prefill (ms, median)")
    emit()
    head = "| L | ours dense | cuDNN | flash | " + " | ".join(f"TCA {k:g}" for k in keeps) + " |"
    emit(head)
    emit("|" + "---|" * (4 + len(keeps)))
    for L in lengths:
        cells = [human_len(L), fmt(ms(get(o, "dense_prefill", L))),
                 fmt(ms(get(p, "cudnn_prefill", L))), fmt(ms(get(p, "flash_prefill", L)))]
        cells += [fmt(ms(get(o, "tca_prefill", L, k))) for k in keeps]
        emit("| " + " | ".join(cells) + " |")
    emit()

    # P1
    emit("## P1: TCA prefill vs cuDNN dense (speedup = cuDNN ms / TCA total ms)")
    emit()
    emit("| L | keep | kept | TCA ms | cuDNN ms | speedup | FLOP ceiling | target | status |")
    emit("|---|---|---|---|---|---|---|---|---|")
    for L in lengths:
        for k in keeps:
            t, c = get(o, "tca_prefill", L, k), get(p, "cudnn_prefill", L)
            target = P1_TARGETS.get(k) if L == P1_LENGTH else None
            if t is None or c is None:
                status = "no data" if target else "—"
                emit(f"| {human_len(L)} | {k:g} | — | {fmt(ms(t))} | {fmt(ms(c))} | — | — | "
                     f"{fmt(target)} | {status} |")
                continue
            speed = ms(c) / ms(t)
            status = mark(speed >= target) if target else "—"
            emit(f"| {human_len(L)} | {k:g} | {fmt(t.get('kept_fraction'))} | {ms(t):.3f} | "
                 f"{ms(c):.3f} | {speed:.2f}x | {fmt(t.get('flop_ratio_vs_dense'), '.2f')}x | "
                 f"{'≥ ' + format(target, 'g') + 'x' if target else '—'} | {status} |")
    emit()

    # P2
    emit(f"## P2: selection share of TCA time (target ≤ {P2_MAX_SHARE:.0%})")
    emit()
    emit("| L | keep | importance | block score | budget | select | gather | attend | "
         "selection share | status |")
    emit("|---|---|---|---|---|---|---|---|---|---|")
    for L in lengths:
        for k in keeps:
            t = get(o, "tca_prefill", L, k)
            if t is None or t.get("selection_share") is None:
                continue
            if t.get("note", "").startswith("dense fallback"):
                emit(f"| {human_len(L)} | {k:g} | dense fallback | | | | | | 0% | — |")
                continue
            share = t["selection_share"]
            emit(f"| {human_len(L)} | {k:g} | {fmt(t.get('importance_ms'))} | "
                 f"{fmt(t.get('block_score_ms'))} | {fmt(t.get('budget_ms'))} | "
                 f"{fmt(t.get('select_ms'))} | {fmt(t.get('gather_ms'))} | "
                 f"{fmt(t.get('attend_ms'))} | {share:.1%} | {mark(share <= P2_MAX_SHARE)} |")
    emit()
    emit("Stage times are medians of each stage run alone (ms); the share is selection stages over "
         "the sum of stages. The TCA total in P1 is the chain run back to back.")
    emit()

    # P3
    emit(f"## P3: our kernels vs cuDNN (dense ≥ {P3_DENSE_MIN}x, sparse useful TFLOP/s ≥ "
         f"{P3_SPARSE_MIN}x cuDNN's)")
    emit()
    emit("| L | kernel | ours TFLOP/s | cuDNN TFLOP/s | ratio | target | status |")
    emit("|---|---|---|---|---|---|---|")
    for L in lengths:
        c = get(p, "cudnn_prefill", L)
        ctf = None if c is None else c.get("tflops")
        d = get(o, "dense_prefill", L)
        if d is None or ctf is None:
            emit(f"| {human_len(L)} | dense | {fmt(None if d is None else d.get('tflops'))} | "
                 f"{fmt(ctf)} | — | ≥ {P3_DENSE_MIN}x | no data |")
        else:
            ratio = ms(c) / ms(d)
            emit(f"| {human_len(L)} | dense | {d['tflops']:.0f} | {ctf:.0f} | {ratio:.2f}x | "
                 f"≥ {P3_DENSE_MIN}x | {mark(ratio >= P3_DENSE_MIN)} |")
        for k in keeps:
            t = get(o, "tca_prefill", L, k)
            if t is None or t.get("useful_tflops") is None or ctf is None:
                continue
            if t.get("note", "").startswith("dense fallback"):
                continue
            ratio = t["useful_tflops"] / ctf
            emit(f"| {human_len(L)} | sparse, keep {k:g} | {t['useful_tflops']:.0f} | {ctf:.0f} | "
                 f"{ratio:.2f}x | ≥ {P3_SPARSE_MIN}x | {mark(ratio >= P3_SPARSE_MIN)} |")
    emit()

    # The wgmma kernels' main-loop schedules (tca_gpu_bench --overlap): no target of its own;
    # the P1/P3 ratios the other schedule would give. Since session 13 dense_prefill runs the
    # default (dense overlapped) and dense_prefill_serial the serial one; older files have
    # dense_prefill (serial) and dense_prefill_overlap.
    if any(r.get("bench") in ("dense_prefill_overlap", "dense_prefill_serial", "tca_prefill_overlap")
           for r in ours):
        emit("## Main-loop schedule of the wgmma kernels: serial vs overlapped "
             "(default: dense overlapped, sparse serial)")
        emit()
        emit("Both schedules give bitwise the same output (checked before timing). "
             "vs cuDNN = cuDNN ms / ours ms (for TCA, the whole chain: P1's speedup).")
        emit()
        emit("| L | kernel | serial ms | overlapped ms | overlapped / serial speed | "
             "serial vs cuDNN | overlapped vs cuDNN |")
        emit("|---|---|---|---|---|---|---|")
        for L in lengths:
            c = ms(get(p, "cudnn_prefill", L))
            if get(o, "dense_prefill_serial", L) is not None:
                pairs = [("dense", get(o, "dense_prefill_serial", L), get(o, "dense_prefill", L))]
            else:
                pairs = [("dense", get(o, "dense_prefill", L), get(o, "dense_prefill_overlap", L))]
            pairs += [(f"TCA, keep {k:g}", get(o, "tca_prefill", L, k),
                       get(o, "tca_prefill_overlap", L, k)) for k in keeps]
            for name, a, b in pairs:
                if a is None or b is None:
                    continue
                emit(f"| {human_len(L)} | {name} | {ms(a):.3f} | {ms(b):.3f} | "
                     f"{ms(a) / ms(b):.3f}x | {fmt(None if c is None else c / ms(a), '.2f')}x | "
                     f"{fmt(None if c is None else c / ms(b), '.2f')}x |")
        emit()

    # P4
    copy = get(o, "copy", 0) or get(p, "torch_copy", 0)
    copy_bw = None if copy is None else copy.get("gbps")
    emit(f"## P4: decode attention vs copy bandwidth (target ≥ {P4_MIN:.0%})")
    emit()
    emit(f"Copy ceiling: {fmt(copy_bw, '.0f')} GB/s ({copy.get('bench') if copy else 'no data'}"
         f"{', torch copy ' + fmt(get(p, 'torch_copy', 0).get('gbps'), '.0f') + ' GB/s' if get(p, 'torch_copy', 0) else ''}).")
    emit()
    emit("| L | ours µs | ours GB/s | cuDNN µs | cuDNN GB/s | flash µs | share of copy | status |")
    emit("|---|---|---|---|---|---|---|---|")
    dec_lengths = sorted({r["L"] for r in ours if r.get("bench") == "decode"} |
                         {r["L"] for r in peer if r.get("bench") == "cudnn_decode"})
    for L in dec_lengths:
        d, c, f = get(o, "decode", L), get(p, "cudnn_decode", L), get(p, "flash_decode", L)

        def us(r):
            return None if r is None else 1000.0 * r["median_ms"]

        if d is None or copy_bw is None:
            status, share = "no data", None
        else:
            share = d["gbps"] / copy_bw
            status = mark(share >= P4_MIN)
        emit(f"| {human_len(L)} | {fmt(us(d), '.1f')} | {fmt(None if d is None else d.get('gbps'), '.0f')} | "
             f"{fmt(us(c), '.1f')} | {fmt(None if c is None else c.get('gbps'), '.0f')} | "
             f"{fmt(us(f), '.1f')} | {fmt(None if share is None else 100 * share, '.0f')}% | {status} |")
    emit()

    # P8
    emit(f"## P8: short contexts (L ≤ {P8_MAX_L // 1024}K): TCA never slower than dense")
    emit()
    emit("| L | keep | TCA ms | ours dense ms | cuDNN ms | TCA / ours dense | status |")
    emit("|---|---|---|---|---|---|---|")
    for L in [x for x in lengths if x <= P8_MAX_L]:
        d, c = get(o, "dense_prefill", L), get(p, "cudnn_prefill", L)
        for k in keeps:
            t = get(o, "tca_prefill", L, k)
            if t is None or d is None:
                emit(f"| {human_len(L)} | {k:g} | {fmt(ms(t))} | {fmt(ms(d))} | {fmt(ms(c))} | — | "
                     "no data |")
                continue
            ratio = ms(t) / ms(d)
            emit(f"| {human_len(L)} | {k:g} | {ms(t):.3f} | {ms(d):.3f} | {fmt(ms(c), '.3f')} | "
                 f"{ratio:.2f} | {mark(ratio <= 1.0)} |")
    emit()
    emit("A miss at P8 means the engine must pick the dense path at that length.")
    emit()

    # Ceilings
    mm = get(p, "matmul", 8192) or next((r for r in peer if r.get("bench") == "matmul"), None)
    emit(f"Ceilings in this run: bf16 matmul {fmt(None if mm is None else mm.get('tflops'), '.0f')} "
         f"TFLOP/s (torch), device copy {fmt(copy_bw, '.0f')} GB/s.")
    emit()
    emit(f"**Targets: {tally['met']} met, {tally['missed']} missed.**")

    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
