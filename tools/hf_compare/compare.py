#!/usr/bin/env python3
"""Compares tca's prompt logits with transformers' (tools/hf_compare/hf_logits.py wrote them).

For every model folder under --dir: runs
  tca run -m DIR -f DIR/prompt.txt --no-bos -n 0 --device D --kv-type f32 --logits-out FILE
for each device and prints the max abs error, the max error relative to the row's max |logit|,
and how many rows agree on the argmax. Exit code 1 when a run fails or a relative error
exceeds --tol (default 1e-3 on the CPU, f32 throughout; 3e-2 on CUDA, whose attention runs on
bf16 tensor cores).

Usage: python3 tools/hf_compare/compare.py --tca build/tca --dir /tmp/hfcmp [--devices cpu,cuda]
"""
import argparse
import os
import subprocess
import sys

import numpy as np


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tca", required=True)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--devices", default="cpu,cuda")
    ap.add_argument("--tol-cpu", type=float, default=1e-3)
    ap.add_argument("--tol-cuda", type=float, default=3e-2)
    args = ap.parse_args()
    bad = 0
    for name in sorted(os.listdir(args.dir)):
        folder = os.path.join(args.dir, name)
        ref_path = os.path.join(folder, "hf_logits.f32")
        if not os.path.isfile(ref_path):
            continue
        n = len(open(os.path.join(folder, "prompt_ids.txt")).read().split())
        ref = np.fromfile(ref_path, dtype=np.float32).reshape(n, -1)
        for device in args.devices.split(","):
            out = os.path.join(folder, f"tca_logits_{device}.f32")
            cmd = [args.tca, "run", "-m", folder, "-f", os.path.join(folder, "prompt.txt"), "--no-bos",
                   "-n", "0", "--device", device, "--kv-type", "f32", "--matmul-activations", "f32",
                   "--logits-out", out]
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                print(f"{name} {device}: tca failed ({r.returncode}): {r.stderr.strip().splitlines()[-1:]}")
                bad += 1
                continue
            got = np.fromfile(out, dtype=np.float32)
            if got.size != ref.size:
                print(f"{name} {device}: {got.size} logits, expected {ref.size} (prompt encoded differently?)")
                bad += 1
                continue
            got = got.reshape(ref.shape)
            diff = np.abs(got.astype(np.float64) - ref)
            scale = np.maximum(np.abs(ref).max(axis=1, keepdims=True), 1e-6)
            rel = (diff / scale).max()
            agree = int((got.argmax(axis=1) == ref.argmax(axis=1)).sum())
            tol = args.tol_cpu if device == "cpu" else args.tol_cuda
            ok = rel <= tol
            bad += 0 if ok else 1
            print(f"{name:12s} {device:4s}: max abs {diff.max():.3e}  max rel {rel:.3e} (tol {tol:g})  "
                  f"argmax {agree}/{n}  {'ok' if ok else 'FAIL'}")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
