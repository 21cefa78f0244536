#!/usr/bin/env python3
"""The GPU peers of tca_gpu_bench, measured in the same run (docs/performance.md).

PyTorch scaled_dot_product_attention (enable_gqa=True, bf16, one LLaMA-3.1-8B-shaped layer:
32 query heads, 8 KV heads, head_dim 128, batch 1) with the cuDNN and the flash backends:
causal prefill per length and decode (1 query over L keys, not causal); plus two ceilings,
a bf16 8192^3 matmul and a device-to-device copy. Timing: CUDA events around each repetition,
warm-up first, median of --reps, random data (never zeros), decode caches rotated so the bytes
read exceed the L2. One JSON line per result, the same format as tca_gpu_bench:
{"bench": "cudnn_prefill" | "flash_prefill" | "cudnn_decode" | "flash_decode" | "matmul" |
 "torch_copy", "git", "device", "L", "median_ms", "min_ms", "max_ms", ...}.
A row that fails (backend unavailable, out of memory) is printed as one line and skipped;
exit code 1 when any row failed.
"""
import argparse
import json
import math
import statistics
import sys


def parse_lengths(text):
    out = []
    for item in text.split(","):
        item = item.strip().lower()
        mult = 1
        if item.endswith("k"):
            mult, item = 1024, item[:-1]
        out.append(int(item) * mult)
    return out


class Recorder:
    def __init__(self, args, device):
        self.args = args
        self.device = device
        self.rows = []
        self.failed = 0
        self.f = open(args.out, "w") if args.out else None

    def add(self, bench, L, times, **extra):
        times = sorted(times)
        row = {"bench": bench, "git": self.args.git_sha, "device": self.device, "L": L,
               "median_ms": statistics.median(times), "min_ms": times[0], "max_ms": times[-1],
               "reps": self.args.reps, "warmup": self.args.warmup,
               "n_q_heads": self.args.heads, "n_kv_heads": self.args.kv_heads,
               "head_dim": self.args.head_dim, "kv_dtype": "bf16"}
        for k, v in extra.items():
            row[k] = None if isinstance(v, float) and not math.isfinite(v) else v
        line = json.dumps(row)
        print(line, flush=True)
        if self.f:
            self.f.write(line + "\n")
            self.f.flush()
        self.rows.append(row)
        return row

    def fail(self, what, err):
        msg = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        print(f"error: {what}: {type(err).__name__}: {msg} (row skipped)", flush=True)
        self.failed += 1

    def table(self):
        print(f"\n{'bench':<14} {'L':>8} {'median ms':>11} {'min ms':>11}  rate")
        for r in self.rows:
            rate = ""
            for k in ("tflops", "gbps"):
                if k in r and r[k] is not None:
                    rate += f"{k} {r[k]:.1f}  "
            print(f"{r['bench']:<14} {r['L']:>8} {r['median_ms']:>11.4f} {r['min_ms']:>11.4f}  {rate}")
        if self.failed:
            print(f"{self.failed} row(s) failed (see the error lines above)")


def time_ms(torch, fn, warmup, reps):
    """Median-ready list of per-repetition milliseconds, CUDA events on the current stream."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    out = []
    start = torch.cuda.Event(enable_timing=True)
    stop = torch.cuda.Event(enable_timing=True)
    for _ in range(reps):
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        out.append(start.elapsed_time(stop))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lengths", default="8k,32k,64k,128k", help="prefill lengths (k = 1024)")
    ap.add_argument("--decode-lengths", default="32k,128k", help="decode cache lengths")
    ap.add_argument("--heads", type=int, default=32, help="query heads")
    ap.add_argument("--kv-heads", type=int, default=8, help="KV heads (GQA)")
    ap.add_argument("--head-dim", type=int, default=128, help="head dimension")
    ap.add_argument("--reps", type=int, default=10, help="timed repetitions (median reported)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed warm-up runs")
    ap.add_argument("--backends", default="cudnn,flash", help="SDPA backends: cudnn,flash")
    ap.add_argument("--matmul-n", type=int, default=8192, help="n of the bf16 n^3 matmul ceiling")
    ap.add_argument("--copy-mib", type=int, default=1024, help="MiB of the device copy ceiling")
    ap.add_argument("--out", default="", help="also write the JSON lines to this file")
    ap.add_argument("--git-sha", default="unknown", help="source revision recorded in every line")
    args = ap.parse_args()

    try:
        import torch
        from torch.nn.attention import SDPBackend, sdpa_kernel
        import torch.nn.functional as F
    except Exception as e:  # noqa: BLE001
        print(f"error: gpu_peer: cannot import torch: {e}")
        return 1
    if not torch.cuda.is_available():
        print("error: gpu_peer: torch sees no CUDA device")
        return 1
    dev = torch.device("cuda")
    props = torch.cuda.get_device_properties(dev)
    print(f"gpu_peer: {props.name}, torch {torch.__version__}, cuDNN "
          f"{torch.backends.cudnn.version()}, L2 {getattr(props, 'L2_cache_size', 0) >> 20} MiB",
          file=sys.stderr, flush=True)
    rec = Recorder(args, props.name)
    l2 = getattr(props, "L2_cache_size", 60 << 20) or (60 << 20)
    backends = {"cudnn": SDPBackend.CUDNN_ATTENTION, "flash": SDPBackend.FLASH_ATTENTION}
    chosen = [b.strip() for b in args.backends.split(",") if b.strip()]
    hq, hkv, d = args.heads, args.kv_heads, args.head_dim
    gen = torch.Generator(device=dev)
    gen.manual_seed(1234)

    def randn(*shape):
        return torch.randn(*shape, device=dev, dtype=torch.bfloat16, generator=gen)

    # Causal prefill: causal FLOPs = 4 * Hq * d * L * (L + 1) / 2.
    for L in parse_lengths(args.lengths):
        try:
            q, k, v = randn(1, hq, L, d), randn(1, hkv, L, d), randn(1, hkv, L, d)
        except Exception as e:  # noqa: BLE001
            rec.fail(f"prefill inputs L={L}", e)
            torch.cuda.empty_cache()
            continue
        flops = 4.0 * hq * d * L * (L + 1) / 2.0
        for name in chosen:
            try:
                with sdpa_kernel(backends[name]):
                    fn = lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True,  # noqa: E731
                                                                enable_gqa=True)
                    out = fn()
                    torch.cuda.synchronize()
                    if not torch.isfinite(out).all():
                        raise RuntimeError("non-finite output")
                    del out
                    t = time_ms(torch, fn, args.warmup, args.reps)
                med = statistics.median(t)
                rec.add(f"{name}_prefill", L, t, flops=flops, tflops=flops / (med * 1e-3) / 1e12)
            except Exception as e:  # noqa: BLE001
                rec.fail(f"{name}_prefill L={L}", e)
            torch.cuda.empty_cache()
        del q, k, v
        torch.cuda.empty_cache()

    # Decode: 1 query over L keys, not causal; bytes = K + V read once. Rotated cache sets so
    # the bytes read per step exceed 3x L2.
    for L in parse_lengths(args.decode_lengths):
        kv_bytes = 2 * hkv * L * d * 2
        n_sets = max(1, min(8, math.ceil(3 * l2 / kv_bytes)))
        try:
            q = randn(1, hq, 1, d)
            sets = [(randn(1, hkv, L, d), randn(1, hkv, L, d)) for _ in range(n_sets)]
        except Exception as e:  # noqa: BLE001
            rec.fail(f"decode inputs L={L}", e)
            torch.cuda.empty_cache()
            continue
        for name in chosen:
            try:
                idx = [0]

                def step():
                    k, v = sets[idx[0]]
                    idx[0] = (idx[0] + 1) % n_sets
                    return F.scaled_dot_product_attention(q, k, v, is_causal=False,
                                                          enable_gqa=True)

                with sdpa_kernel(backends[name]):
                    out = step()
                    torch.cuda.synchronize()
                    if not torch.isfinite(out).all():
                        raise RuntimeError("non-finite output")
                    t = time_ms(torch, step, args.warmup, args.reps)
                med = statistics.median(t)
                rec.add(f"{name}_decode", L, t, kv_bytes=kv_bytes,
                        gbps=kv_bytes / (med * 1e-3) / 1e9, cache_sets=n_sets)
            except Exception as e:  # noqa: BLE001
                rec.fail(f"{name}_decode L={L}", e)
        del q, sets
        torch.cuda.empty_cache()

    # Ceilings: bf16 n^3 matmul (2 n^3 FLOPs) and a device-to-device copy (bytes read + written).
    try:
        n = args.matmul_n
        a, b = randn(n, n), randn(n, n)
        t = time_ms(torch, lambda: torch.matmul(a, b), args.warmup, args.reps)
        med = statistics.median(t)
        rec.add("matmul", n, t, flops=2.0 * n ** 3, tflops=2.0 * n ** 3 / (med * 1e-3) / 1e12)
        del a, b
    except Exception as e:  # noqa: BLE001
        rec.fail("matmul", e)
    try:
        nbytes = args.copy_mib << 20
        src = randn(nbytes // 2)
        dst = torch.empty_like(src)
        t = time_ms(torch, lambda: dst.copy_(src), args.warmup, args.reps)
        med = statistics.median(t)
        rec.add("torch_copy", 0, t, bytes=2 * nbytes, gbps=2 * nbytes / (med * 1e-3) / 1e9)
        del src, dst
    except Exception as e:  # noqa: BLE001
        rec.fail("torch_copy", e)

    rec.table()
    return 1 if rec.failed else 0


if __name__ == "__main__":
    sys.exit(main())
