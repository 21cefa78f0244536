"""Evaluates the trained model with the CUDA engine on the GPU machine, in one device call:
calibration (three text domains, three tau values), then `tca eval` runs in parallel processes
(the model is small, so one process leaves the GPU mostly idle), in priority order, until a
deadline. Results are merged from every run's items.jsonl (streamed, so a run cut off at the
deadline still counts the items it answered) into eval_summary.{json,md}; docs/perf/accuracy.md
is written from them (tools/train/README.md, issue 6).

usage (GPU machine, repo root; tca and its libraries unpacked by scripts/device.sh):
  python3 tools/train/eval_model.py --tca /tmp/tca-device/tca --model model.gguf \
      --data tools/train/data --out "$OUT" --minutes 6 --jobs 8
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import data as D  # noqa: E402

T0 = time.time()
# tca eval --task all, in its order (docs/eval.md).
ALL_TASKS = ["niah_single_number", "niah_single_word", "niah_single_uuid", "niah_multikey", "niah_multivalue",
             "niah_multiquery", "variable_tracking", "common_words"]
LOCK = threading.Lock()


def log(msg):
    with LOCK:
        print(f"[{time.time() - T0:6.1f}s] {msg}", flush=True)


def run(cmd, log_path, timeout):
    """Runs cmd with stdout+stderr to log_path; returns the exit code (124 on timeout)."""
    with open(log_path, "w") as f:
        f.write("$ " + " ".join(cmd) + "\n")
        f.flush()
        try:
            return subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, timeout=max(1.0, timeout)).returncode
        except subprocess.TimeoutExpired:
            f.write(f"\n(stopped at the deadline after {timeout:.0f} s)\n")
            return 124


def plain_text(src, dst, max_chars=None):
    with D.open_text(src) as f:
        s = f.read()
    if max_chars:
        s = s[:max_chars]
    with open(dst, "w", encoding="utf-8") as f:
        f.write(s)
    return dst


def task_text(tasks_dir, dst, max_chars):
    """The third calibration domain: the synthetic task prompts themselves (generated filler
    with needles and questions), concatenated."""
    out, n = [], 0
    for p in D.list_files(tasks_dir):
        if "niah" not in os.path.basename(p):
            continue
        for r in D.read_jsonl(p):
            out.append(r["prompt"] + r["answer"])
            n += len(out[-1])
            if n >= max_chars:
                break
    with open(dst, "w", encoding="utf-8") as f:
        f.write("\n\n".join(out))
    return dst


def records(folder):
    path = os.path.join(folder, "items.jsonl")
    if not os.path.exists(path):
        return []
    out = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                pass  # a line cut off at the deadline
    return out


def summarize(jobs, work):
    """rows: (task, ctx, label) -> accuracy, kv_fraction, n; plus per-(ctx, label) averages
    over the tasks with niah_single's three value types counted as one task (RULER's 13-task
    average counts them separately; we report both)."""
    rows, avg = {}, {}
    stats = ("attn_recall", "attn_prefill_error", "attn_decode_error")
    for job in jobs:
        multi = "," in job.get("attention", "")  # one process, several policies: label by the record's own
        for r in records(os.path.join(work, job["name"])):
            label = f"{r['policy']}{job['label']}" if multi else job["label"]
            key = (r["task"], int(r["ctx"]), label)
            acc = rows.setdefault(key, {"score": 0.0, "kv": 0.0, "n": 0, "prefill_ms": 0.0})
            acc["score"] += float(r["score"])
            acc["kv"] += float(r["kv_fraction"])
            acc["prefill_ms"] += float(r.get("prefill_ms", 0.0))
            acc["n"] += 1
            for k in stats:  # tca eval --attn-stats: per-layer lists, summed per layer
                if k in r:
                    acc[k] = [x + y for x, y in zip(acc[k], r[k])] if k in acc else list(r[k])
    out = []
    for (task, ctx, label), a in sorted(rows.items(), key=lambda kv: (kv[0][1], kv[0][2], kv[0][0])):
        out.append({"task": task, "ctx": ctx, "policy": label, "accuracy": round(a["score"] / a["n"], 4),
                    "kv_fraction": round(a["kv"] / a["n"], 4), "n_samples": a["n"],
                    "prefill_ms": round(a["prefill_ms"] / a["n"], 2)})
        for k in stats:
            if k in a:
                out[-1][k + "_by_layer"] = [round(x / a["n"], 5) for x in a[k]]
        g = avg.setdefault((ctx, label), {})
        g[task] = out[-1]
    averages = []
    for (ctx, label), g in sorted(avg.items()):
        accs = [r["accuracy"] for r in g.values()]
        kvs = [r["kv_fraction"] for r in g.values()]
        averages.append({"ctx": ctx, "policy": label, "n_tasks": len(g), "mean_accuracy": round(sum(accs) / len(accs), 4),
                         "mean_kv_fraction": round(sum(kvs) / len(kvs), 4),
                         "n_items": sum(r["n_samples"] for r in g.values())})
    return out, averages


def markdown(rows, averages, meta):
    lines = [f"Model `{meta['model']}`, haystack {meta['haystack']}, seed {meta['seed']}, b {meta['block_size']}, "
             f"w {meta['local_window']}; string_match_all accuracy (0-1) and KV fraction (held / dense).", "",
             "| ctx | policy | tasks | items | mean accuracy | mean KV fraction |", "|---:|---|---:|---:|---:|---:|"]
    for a in averages:
        lines.append(f"| {a['ctx']} | {a['policy']} | {a['n_tasks']} | {a['n_items']} | {a['mean_accuracy']:.3f} | "
                     f"{a['mean_kv_fraction']:.3f} |")
    lines += ["", "| task | ctx | policy | accuracy | KV fraction | n | prefill ms |", "|---|---:|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['task']} | {r['ctx']} | {r['policy']} | {r['accuracy']:.3f} | {r['kv_fraction']:.3f} | "
                     f"{r['n_samples']} | {r['prefill_ms']:.1f} |")
    lines += fidelity_markdown(rows)
    return "\n".join(lines) + "\n"


def fidelity_markdown(rows):
    """Per (ctx, policy) with --attn-stats rows: recall and errors per layer, averaged over tasks."""
    groups = {}
    for r in rows:
        if "attn_recall_by_layer" in r:
            groups.setdefault((r["ctx"], r["policy"]), []).append(r)
    if not groups:
        return []
    lines = ["", "Attention fidelity against dense on the same inputs (tca eval --attn-stats; per layer, "
             "averaged over tasks): recall = dense attention mass of the last prompt query on the kept KV; "
             "errors = relative L2 error of the prefill output (last 64 queries) and of the last query over "
             "the kept cache.", "",
             "| ctx | policy | recall | prefill error | decode error | recall by layer | decode error by layer |",
             "|---:|---|---:|---:|---:|---|---|"]
    for (ctx, policy), rs in sorted(groups.items()):
        per = {}
        for k in ("attn_recall", "attn_prefill_error", "attn_decode_error"):
            layers = list(zip(*[r[k + "_by_layer"] for r in rs]))
            per[k] = [sum(x) / len(x) for x in layers]
        mean = {k: sum(v) / len(v) for k, v in per.items()}
        lines.append(f"| {ctx} | {policy} | {mean['attn_recall']:.4f} | {mean['attn_prefill_error']:.4f} | "
                     f"{mean['attn_decode_error']:.4f} | {' '.join(f'{x:.3f}' for x in per['attn_recall'])} | "
                     f"{' '.join(f'{x:.3f}' for x in per['attn_decode_error'])} |")
    return lines


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tca", required=True, help="the tca binary")
    ap.add_argument("--model", required=True, help="GGUF file or HF folder")
    ap.add_argument("--data", default=os.path.join(HERE, "data"), help="prepare_data.sh output (texts, tasks)")
    ap.add_argument("--out", required=True, help="where the merged results go ($OUT: at most 8 files)")
    ap.add_argument("--work", default="/tmp/tca-eval", help="scratch folder (per-run outputs, budgets)")
    ap.add_argument("--minutes", type=float, default=6.0, help="deadline for the whole evaluation")
    ap.add_argument("--jobs", type=int, default=8, help="tca eval processes at a time")
    ap.add_argument("--n-samples", type=int, default=50)
    ap.add_argument("--task", default="all", help="tca eval --task")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ctx", default="16k", help="the main context (calibration and the policy comparison)")
    ap.add_argument("--dense-ctx", default="4k,8k", help="further contexts for dense (and tca) accuracy")
    ap.add_argument("--block-size", type=int, default=64)
    ap.add_argument("--local-window", type=int, default=1024)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads per tca process")
    ap.add_argument("--cal-args", default="", help="extra tca calibrate arguments for every budget file "
                    "(e.g. \"--statistic far --pool 16\")")
    ap.add_argument("--keep", type=float, default=0.0, help="also tca with this uniform kept fraction "
                    "(--keep, no calibration) at every context; the baselines then match its KV fraction")
    ap.add_argument("--keep-args", default="", help="extra tca eval arguments of the --keep runs (e.g. \"--pool 16\")")
    ap.add_argument("--stats-samples", type=int, default=0, help="also a fidelity run (tca eval --attn-stats) at "
                    "the main context with this many samples per task: tca and the baselines at its KV fraction, "
                    "per-layer attention recall and output error against dense")
    ap.add_argument("--baselines", default="snapkv,streaming,oracle", help="baseline policies at tca's KV fraction")
    ap.add_argument("--domains", default="kjv,brown,tasks", help="calibration text domains at the first tau "
                    "(kjv first: the main tca run uses it)")
    ap.add_argument("--baseline-split", type=int, default=1, help="run each baseline (snapkv, streaming, "
                    "oracle) as this many processes over disjoint task groups (they prefill in chunks and "
                    "are slower than dense: splitting finishes them before the deadline; needs --task all)")
    ap.add_argument("--taus", default="0.9,0.7,0.5", help="tau values calibrated on the KJV (the first is "
                    "also calibrated on Brown and the task prompts)")
    ap.add_argument("--budget-file", default="", help="an existing budget file (e.g. the shipped one) for "
                    "the main tca runs instead of calibrating: no calibration runs, so no tau sweep, "
                    "calibration domains or paper calibration")
    a = ap.parse_args()
    if a.jobs < 4:
        ap.error("--jobs must be >= 4 (the baselines wait for the tca run)")

    work = a.work
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    os.makedirs(a.out, exist_ok=True)
    deadline = T0 + 60.0 * a.minutes
    ctx_main = a.ctx
    ctx_tokens = int(ctx_main[:-1]) * 1024 if ctx_main.endswith("k") else int(ctx_main)
    bw = ["--block-size", str(a.block_size), "--local-window", str(a.local_window)]
    common = ["--device", a.device, "--threads", str(a.threads), "--seed", str(a.seed),
              "--n-samples", str(a.n_samples)]
    if a.baseline_split > 1 and a.task != "all":
        ap.error("--baseline-split needs --task all")

    # Texts: the eval haystack (KJV) and three calibration domains.
    texts = os.path.join(a.data, "text")
    kjv = plain_text(os.path.join(texts, "kjv.txt.gz"), os.path.join(work, "kjv.txt"))
    domains = {"kjv": plain_text(os.path.join(texts, "kjv.txt.gz"), os.path.join(work, "cal-kjv.txt"), 400000),
               "brown": plain_text(os.path.join(texts, "brown.txt.gz"), os.path.join(work, "cal-brown.txt"), 400000),
               "tasks": task_text(os.path.join(a.data, "tasks"), os.path.join(work, "cal-tasks.txt"), 400000)}
    haystack = ["--haystack", kjv]

    # Calibration (tca-method M8): kjv at every tau, brown and tasks at the first.
    taus = [float(t) for t in a.taus.split(",") if t]
    tau0 = taus[0]
    # (key, text domain, tau, extra calibrate arguments); budgets[(key, tau)] = budget file.
    cal_args = a.cal_args.split()
    doms = [d for d in a.domains.split(",") if d]
    if not doms or doms[0] != "kjv" or any(d not in domains for d in doms):
        ap.error(f"--domains must start with kjv and name only {', '.join(domains)}, got '{a.domains}'")
    cals = [(dom, dom, tau0, cal_args) for dom in doms] + \
        [("kjv", "kjv", t, cal_args) for t in taus[1:]]
    if cal_args:  # the paper's calibration (no --cal-args) beside them, on the KJV
        cals.append(("kjv-paper", "kjv", 0.9, []))
    if a.budget_file:  # given: it stands for the main calibration, and none runs
        if not os.path.isfile(a.budget_file):
            ap.error(f"--budget-file: no such file '{a.budget_file}'")
        cals = []
    # The calibrations run beside the evaluation jobs (dense needs no budgets): a job that reads
    # a budget file waits for its calibration (job "needs") and is skipped if it failed.
    given = {("kjv", tau0): a.budget_file} if a.budget_file else {}  # ready without calibrating
    budgets = dict(given)  # (key, tau) -> budget file, once calibrated
    cal_done = {k: 0 for k in given}  # (key, tau) -> exit code
    cond = threading.Condition()

    def budget_path(key, tau):
        return given.get((key, tau)) or os.path.join(work, f"budgets-{key}-tau{tau}.json")

    def calibrate(key, dom, tau, extra):
        name = f"{key}-tau{tau}"
        path = budget_path(key, tau)
        rc = run([a.tca, "calibrate", "-m", a.model, "-f", domains[dom], "--ctx", str(ctx_tokens), "--tau", str(tau),
                  "--device", a.device, "--threads", str(a.threads), *bw, *extra, "-o", path,
                  "--heatmap", os.path.join(work, f"heatmap-{name}.png")],
                 os.path.join(work, f"calibrate-{name}.log"), deadline - time.time())
        log(f"calibrate {name}: exit {rc}")
        with cond:
            if rc == 0:
                budgets[(key, tau)] = path
            cal_done[(key, tau)] = rc
            cond.notify_all()

    planned = {(c[0], c[2]) for c in cals} | set(budgets)
    cal_pool = ThreadPoolExecutor(max(1, len(cals)))
    cal_futures = [cal_pool.submit(calibrate, *c) for c in cals]

    # Evaluation jobs, most important first (issue 6 acceptance): dense and tca at the main
    # context, dense at the shorter ones, the baselines at tca's KV fraction, the tau sweep,
    # the calibration domains.
    jobs = []

    def job(name, label, ctx, attention, extra, after=None, task=None, needs=None):
        jobs.append({"name": name, "label": label, "ctx": ctx, "attention": attention, "extra": extra,
                     "after": after, "task": task or a.task, "needs": needs})

    def tca_job(name, label, ctx, key, tau):
        """A tca run on the budgets of calibration (key, tau), once they exist."""
        if (key, tau) in planned:
            job(name, label, ctx, "tca", ["--budget-file", budget_path(key, tau), *bw], needs=(key, tau))

    job("dense-main", "dense", ctx_main, "dense", [])
    main_tca = f"tca-kjv-{tau0}"
    main_label = f"tca ({os.path.basename(a.budget_file)})" if a.budget_file else f"tca tau{tau0} (kjv)"
    tca_job(main_tca, main_label, ctx_main, "kjv", tau0)
    for c in a.dense_ctx.split(","):
        if c:
            job(f"dense-{c}", "dense", c, "dense", [])
    tca_job("tca-kjv-paper", "tca tau0.9 (kjv, paper calibration)", ctx_main, "kjv-paper", 0.9)
    matched = main_tca
    if a.keep > 0:
        keep_extra = ["--keep", str(a.keep), *a.keep_args.split(), *bw]
        keep_label = f"tca keep{a.keep:g} {a.keep_args}".strip()
        matched = f"tca-keep{a.keep:g}"
        job(matched, keep_label, ctx_main, "tca", keep_extra)
    # The same items in every split (tca eval seeds each task's items independently of the others).
    groups = [",".join(ALL_TASKS[i::a.baseline_split]) for i in range(a.baseline_split)] if a.baseline_split > 1 else [None]
    for pol in [p for p in a.baselines.split(",") if p]:
        for i, g in enumerate(groups):
            job(f"{pol}-main" + (f"-{i}" if g else ""), pol, ctx_main, pol, [], after=matched, task=g)
    if a.stats_samples > 0 and ("kjv", tau0) in planned:
        # One process, every policy on the same items; its labels carry the tag "stats" so
        # its rows stay apart from the main runs' (other sample counts).
        job("fidelity", "", ctx_main, "tca,snapkv,streaming,oracle",
            ["--budget-file", budget_path("kjv", tau0), *bw, "--attn-stats", "--tag", "stats",
             "--n-samples", str(a.stats_samples)], after=matched, needs=("kjv", tau0))
    for tau in taus[1:]:
        tca_job(f"tca-kjv-{tau}", f"tca tau{tau} (kjv)", ctx_main, "kjv", tau)
    for dom in ("brown", "tasks"):
        tca_job(f"tca-{dom}-{tau0}", f"tca tau{tau0} ({dom})", ctx_main, dom, tau0)
    for c in a.dense_ctx.split(","):
        if c:
            tca_job(f"{main_tca}-{c}", main_label, c, "kjv", tau0)
    if a.keep > 0:
        for c in a.dense_ctx.split(","):
            if c:
                job(f"{matched}-{c}", keep_label, c, "tca", keep_extra)

    done = {}

    def kv_budget_of(name):
        """Tokens per KV head that give the baselines tca's mean KV fraction at the main context."""
        rs = records(os.path.join(work, name))
        if not rs:
            return None
        kv = sum(float(r["kv_fraction"]) for r in rs) / len(rs)
        n = sum(int(r["n_prompt_tokens"]) for r in rs) / len(rs)
        return max(a.block_size, int(round(kv * n)))

    def run_job(j):
        if j["needs"]:  # its budget file: wait for the calibration
            with cond:
                cond.wait_for(lambda: j["needs"] in cal_done or time.time() > deadline,
                              timeout=max(0.0, deadline - time.time()))
            if j["needs"] not in budgets:
                log(f"{j['name']}: skipped (calibration {j['needs'][0]}-tau{j['needs'][1]} "
                    f"{'failed' if j['needs'] in cal_done else 'unfinished'})")
                with cond:
                    done[j["name"]] = None
                    cond.notify_all()
                return
        if j["after"] and j["after"] not in {x["name"] for x in jobs}:
            log(f"{j['name']}: skipped (no {j['after']} run)")
            return
        if j["after"]:  # the pool runs the jobs in order and has >= 4 workers: the one waited for runs
            with cond:
                cond.wait_for(lambda: j["after"] in done or time.time() > deadline, timeout=max(0.0, deadline - time.time()))
            kvb = kv_budget_of(j["after"]) if j["after"] in done else None
            if kvb is None:
                log(f"{j['name']}: skipped (no {j['after']} result to match)")
                return
            j["extra"] = [*j["extra"], "--kv-budget", str(kvb), "--n-sink", "4", "--obs-window", "32"]
            j["label"] = f"{j['label']} (kv {kvb})"
        left = deadline - time.time()
        if left < 20:
            log(f"{j['name']}: skipped (deadline)")
            return
        folder = os.path.join(work, j["name"])
        t = time.time()
        rc = run([a.tca, "eval", "-m", a.model, "--ctx", j["ctx"], "--attention", j["attention"], "--task", j["task"],
                  *common, *haystack,
                  *j["extra"], "--out", folder], os.path.join(work, f"eval-{j['name']}.log"), left)
        log(f"{j['name']} ({j['label']}, ctx {j['ctx']}): exit {rc}, {len(records(folder))} items in {time.time() - t:.0f} s")
        with cond:
            done[j["name"]] = rc
            cond.notify_all()

    with ThreadPoolExecutor(a.jobs) as ex:
        list(ex.map(run_job, jobs))
    for f in cal_futures:
        f.result()
    cal_pool.shutdown()

    rows, averages = summarize(jobs, work)
    meta = {"model": os.path.basename(a.model), "haystack": "KJV (tools/train/data/text/kjv.txt.gz)", "seed": a.seed,
            "block_size": a.block_size, "local_window": a.local_window, "n_samples": a.n_samples,
            "device": a.device, "cal_args": a.cal_args,
            "jobs": [{k: v for k, v in j.items() if k not in ("after", "needs")} for j in jobs],
            "budgets": {f"{d}-tau{t}": os.path.basename(p) for (d, t), p in budgets.items()}}
    with open(os.path.join(a.out, "eval_summary.json"), "w") as f:
        json.dump({"meta": meta, "averages": averages, "results": rows}, f, indent=1)
    md = markdown(rows, averages, meta)
    with open(os.path.join(a.out, "eval_summary.md"), "w") as f:
        f.write(md)
    # Everything else in one archive: budget files, heatmaps, items, logs.
    with tarfile.open(os.path.join(a.out, "eval_files.tar.gz"), "w:gz") as tar:
        for f in sorted(os.listdir(work)):
            p = os.path.join(work, f)
            if f.endswith((".json", ".png", ".log")) or os.path.isdir(p):
                tar.add(p, arcname=f)
    print(md)
    log("evaluation done")


if __name__ == "__main__":
    main()
