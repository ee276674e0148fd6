#!/usr/bin/env python3
"""The comparison of balancing methods: one model and data, the same number of steps, under each
router, balance loss, routing option and remedy the engine offers, from a collapse-prone
initialization and from the normal one, several seeds each.

    python3 tools/balance_sweep.py [--config configs/collapse.yaml] [--steps 400] [--seeds 3]
        [--only NAME ...] [--svg tools/balance_sweep.svg] [--out balance_sweep.md]

Each run is `moe-train` with the method's `--set` overrides (and, for the upcycled method, a dense
run of the same model first, `moe-train --init-from`), then `moe-diagnose --ep 4 --json` on its
final checkpoint. Prints (and writes to --out) a Markdown table, medians over seeds:

- held-out loss: the run's final evaluation (cross-entropy on validation batches);
- load CV, max/mean, dead, effective experts: moe-diagnose on held-out batches, routed as in
  evaluation, averaged over the MoE layers (dead: summed); max/mean = 1 + MaxVio; effective
  experts = exp(H(load shares)) (E when balanced, k when every token goes to the same k);
- EP 4 predicted: moe-diagnose --ep 4, the busiest of 4 expert-parallel ranks over the mean;
- tokens/s: the training steps' median (one process, this machine, so only ratios mean anything);
- train CV: the load CV of the training steps at the end (metrics.csv), which differs from the
  held-out one where training routes differently (sinkhorn, forced balance, noise, jitter).

The SVG shows the training load CV over the steps (mean over layers, median over seeds) per method,
one panel per initialization. Runs alternate methods within each seed, so the machine's drift
spreads over all of them.
"""
import argparse
import csv
import datetime
import glob
import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "build", "bin")  # --bin replaces it

# The initializations: the collapse demo's large token embeddings, and the usual GPT-2 scale.
INITS = {"collapse-prone": ["model.embedding_init_std=0.3"], "normal": ["model.embedding_init_std=0.02"]}

# name -> (overrides, what it is). Coefficients are the papers' usual ones.
METHODS = {
    "none": ([], "cross-entropy only (topk_softmax, k = 2)"),
    "switch_aux": (["moe.losses.switch_aux=0.01"], "Switch/GShard auxiliary loss, 0.01"),
    "switch_aux warm-up": (["moe.losses.switch_aux={schedule: warmup, value: 0.01, steps: 100}"],
                           "the same, warmed up over 100 steps"),
    "importance": (["moe.losses.importance=0.1"], "Shazeer's importance loss, 0.1"),
    "noisy_topk + load": (["moe.router=noisy_topk", "moe.losses.load=0.1"], "Shazeer's noisy top-k with the load loss, 0.1"),
    "noisy_topk + importance + load": (["moe.router=noisy_topk", "moe.losses.importance=0.1", "moe.losses.load=0.1"],
                                       "Shazeer et al. 2017 as published"),
    "z_loss": (["moe.losses.z_loss=0.001"], "ST-MoE router z-loss, 0.001"),
    "sequence_aux": (["moe.losses.sequence_aux=0.0001"], "DeepSeek-V3 sequence-wise loss, 0.0001"),
    "device_aux": (["moe.losses.device_aux=0.05", "moe.device_groups=4"], "DeepSeek-V2 device-level loss, 0.05, 4 devices"),
    "loss-free bias": (["moe.bias_update_rate=0.001"], "auxiliary-loss-free bias, u = 0.001"),
    "switch": (["moe.router=switch", "moe.top_k=1"], "Switch router (k = 1), no loss"),
    "noisy_topk": (["moe.router=noisy_topk"], "noisy top-k, no loss"),
    "sigmoid_topk": (["moe.router=sigmoid_topk"], "sigmoid scores, no loss"),
    "sigmoid_topk + bias + sequence_aux": (["moe.router=sigmoid_topk", "moe.bias_update_rate=0.001",
                                            "moe.losses.sequence_aux=0.0001"], "DeepSeek-V3's combination"),
    "expert_choice": (["moe.router=expert_choice", "moe.capacity_factor=1.0"], "expert choice, capacity 1.0"),
    "sinkhorn": (["moe.router=sinkhorn"], "Sinkhorn-balanced selection in training"),
    "hash": (["moe.router=hash", "moe.top_k=1"], "fixed hash routing (k = 1)"),
    "input_jitter": (["moe.input_jitter=0.01"], "router input jitter 0.01"),
    "softmax after top-k": (["moe.softmax_order=after_topk"], "top-k of the logits, softmax over the k"),
    "expert groups": (["moe.expert_groups=4", "moe.topk_groups=2"], "group-limited: 2 of 4 groups"),
    "routed scaling": (["moe.routed_scaling=2.5"], "gates times 2.5"),
    "capacity 1.0": (["moe.capacity_factor=1.0"], "token dropping at capacity 1.0"),
    "forced balance": (["moe.force_balance=true"], "round-robin assignment (the benchmark's best case)"),
    "revival (fresh)": (["moe.revival.check_every=50"], "dead experts re-initialized every 50 steps"),
    "revival (copy busiest)": (["moe.revival.check_every=25", "moe.revival.mode=copy_busiest"],
                               "dead experts become noisy copies of the busiest every 25 steps"),
    "upcycled": (None, "a dense run of the same steps, upcycled into the MoE"),
}


def run(cmd, ok=(0,)):
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                         env=dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2")))
    if out.returncode not in ok:
        raise SystemExit(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    return out.stdout


def last_checkpoint(folder):
    files = sorted(glob.glob(os.path.join(folder, "checkpoints", "step_*.h5")))
    if not files:
        raise SystemExit(f"no checkpoint in {folder}")
    return files[-1]


def train(args, folder, overrides, extra=()):
    cmd = [os.path.join(BIN, "moe-train"), "--config", args.config, "--set", f"training.steps={args.steps}",
           "--set", f"logging.out_dir={folder}", "--set", "logging.every=10", "--set", "checkpointing.every=0"]
    for o in overrides:
        cmd += ["--set", o]
    run(cmd + list(extra))
    return folder


def training_cv(folder):
    """(steps, mean over layers of the training load CV at each logged step), from metrics.csv."""
    with open(os.path.join(folder, "metrics.csv")) as fh:
        rows = list(csv.DictReader(fh))
    count_column = re.compile(r"^(moe\d+)_expert\d+$")  # not the _grad_norm / _update_ratio columns
    layers = sorted({m.group(1) for k in rows[0] for m in [count_column.match(k)] if m})
    steps, cvs = [], []
    for r in rows:
        per_layer = []
        for layer in layers:
            c = [float(r[k]) for k in r if count_column.match(k) and k.startswith(layer + "_")]
            mean = sum(c) / len(c)
            per_layer.append(math.sqrt(sum((x - mean) ** 2 for x in c) / len(c)) / mean if mean > 0 else float("nan"))
        steps.append(int(r["step"]))
        cvs.append(sum(per_layer) / len(per_layer))
    speeds = [float(r["tokens_per_s"]) for r in rows[1:] if r["tokens_per_s"]]
    return steps, cvs, statistics.median(speeds) if speeds else float("nan")


def eval_loss(folder):
    loss = float("nan")
    with open(os.path.join(folder, "metrics.jsonl")) as fh:
        for line in fh:
            record = json.loads(line)
            if "eval_loss" in record:
                loss = record["eval_loss"]
    return loss


def diagnose(checkpoint):
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        run([os.path.join(BIN, "moe-diagnose"), checkpoint, "--ep", "4", "--batches", "4", "--json", out.name], ok=(0, 3))
        d = json.load(open(out.name))
    layers = d["layers"]
    effective = []
    for layer in layers:
        shares = [s for s in layer["share"] if s > 0]
        effective.append(math.exp(-sum(s * math.log(s) for s in shares)))
    ep4 = next(p for p in d["devices"]["predicted"] if p["ranks"] == 4)["overall"]
    return {"cv": statistics.mean(l["cv"] for l in layers), "max_mean": 1 + statistics.mean(l["max_vio"] for l in layers),
            "dead": sum(l["dead"] for l in layers), "effective": statistics.mean(effective), "ep4": ep4,
            "verdict": d["overall"]}


def one_run(args, tmp, method, init, seed):
    overrides, _ = METHODS[method]
    folder = os.path.join(tmp, f"{method.replace(' ', '_').replace('+', 'p')}_{init}_{seed}")
    base = INITS[init] + [f"training.seed={seed}"]
    if overrides is None:  # upcycled: a dense run of the same model and steps, then the MoE from it
        dense = train(args, folder + "_dense", base + ["moe.enabled=false", f"model.d_ff={args.d_expert}"])
        train(args, folder, base, ["--init-from", last_checkpoint(dense)])
    else:
        train(args, folder, base + overrides)
    steps, cvs, speed = training_cv(folder)
    result = diagnose(last_checkpoint(folder))
    result.update({"loss": eval_loss(folder), "tokens_per_s": speed, "train_cv": cvs[-1], "curve": (steps, cvs)})
    return result


def median_of(results, key):
    values = [r[key] for r in results if not math.isnan(r[key])]
    return statistics.median(values) if values else float("nan")


def svg_plot(curves, path, steps):
    """Training load CV over the steps, one line per method, a panel per initialization."""
    names = list(METHODS)
    panel_w, left, top, bottom, legend_w = 380, 50, 40, 40, 260
    h = max(360, int(top + 12.5 * len(names) + 20))  # the legend's rows fit
    w = left + 2 * (panel_w + 20) + legend_w
    # 26 lines: hue and dash pattern both vary, so neighbours in the legend differ in two ways.
    colors = [f"hsl({int(360 * i / len(names))},70%,{38 + 14 * (i % 2)}%)" for i in range(len(names))]
    dashes = ["", "6 3", "2 2"]
    ymax = max([max(c) for per in curves.values() for _, c in per.values() if c] + [1.0]) * 1.05
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" '
           'font-family="sans-serif" font-size="11">', f'<rect width="{w}" height="{h}" fill="white"/>',
           f'<text x="{left}" y="18" font-size="13" font-weight="600">Training load CV over the steps '
           '(mean over MoE layers, median over seeds)</text>']
    for p, init in enumerate(INITS):
        x0 = left + p * (panel_w + 20)
        X = lambda s: x0 + s / steps * panel_w
        Y = lambda v: h - bottom - v / ymax * (h - top - bottom)
        out.append(f'<text x="{x0 + panel_w / 2}" y="{top - 6}" text-anchor="middle" font-weight="600">{init} '
                   'initialization</text>')
        out.append(f'<rect x="{x0}" y="{top}" width="{panel_w}" height="{h - top - bottom}" fill="none" stroke="#999"/>')
        y = 0.0
        while y <= ymax:
            out.append(f'<line x1="{x0}" x2="{x0 + panel_w}" y1="{Y(y)}" y2="{Y(y)}" stroke="#eee"/>'
                       f'<text x="{x0 - 4}" y="{Y(y) + 4}" text-anchor="end">{y:.1f}</text>')
            y += 0.5
        out.append(f'<text x="{x0 + panel_w / 2}" y="{h - 10}" text-anchor="middle">step (of {steps})</text>')
        for i, name in enumerate(names):
            if name not in curves[init]:
                continue
            xs, ys = curves[init][name]
            pts = " ".join(f"{X(s):.1f},{Y(v):.1f}" for s, v in zip(xs, ys) if not math.isnan(v))
            out.append(f'<polyline points="{pts}" fill="none" stroke="{colors[i]}" stroke-width="1.5" '
                       f'stroke-dasharray="{dashes[i % 3]}"><title>{name}</title></polyline>')
    lx = left + 2 * (panel_w + 20) + 10
    for i, name in enumerate(names):
        ly = top + 6 + 12.5 * i
        out.append(f'<line x1="{lx}" x2="{lx + 18}" y1="{ly}" y2="{ly}" stroke="{colors[i]}" stroke-width="2" '
                   f'stroke-dasharray="{dashes[i % 3]}"/>'
                   f'<text x="{lx + 22}" y="{ly + 4}">{name}</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="configs/collapse.yaml")
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--only", nargs="+", metavar="NAME", help="only these methods (names of the table)")
    p.add_argument("--svg", default="tools/balance_sweep.svg")
    p.add_argument("--out", help="also write the table to this Markdown file")
    p.add_argument("--bin", help="the folder of moe-train and moe-diagnose (default: build/bin)")
    args = p.parse_args()
    if args.bin:
        global BIN
        BIN = os.path.abspath(args.bin)
    methods = args.only or list(METHODS)
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        p.error(f"unknown method {', '.join(unknown)}; the sweep has: {', '.join(METHODS)}")
    with open(os.path.join(ROOT, args.config)) as fh:
        text = fh.read()
    args.d_expert = int(next(l.split(":")[1] for l in text.splitlines() if l.strip().startswith("d_expert:")))
    results = {(m, i): [] for m in methods for i in INITS}
    start = datetime.datetime.now()
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            for init in INITS:
                for m in methods:  # alternating: every method once per seed and init
                    results[(m, init)].append(one_run(args, tmp, m, init, seed))
                    print(f"  seed {seed} {init} {m}: done", file=sys.stderr)
    minutes = (datetime.datetime.now() - start).total_seconds() / 60
    lines = [f"{args.config}, {args.steps} steps, {args.seeds} seeds (medians), {os.cpu_count()} cores "
             f"({platform.processor() or platform.machine()}), {datetime.date.today()}, {minutes:.0f} minutes", ""]
    for init in INITS:
        lines += [f"**{init} initialization** ({' '.join(INITS[init])})", "",
                  "| method | held-out loss | load CV | max/mean | dead | effective experts | EP 4 predicted "
                  "| train CV | tokens/s |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for m in methods:
            rs = results[(m, init)]
            lines.append(f"| {m} | {median_of(rs, 'loss'):.3f} | {median_of(rs, 'cv'):.2f} | "
                         f"{median_of(rs, 'max_mean'):.2f} | {median_of(rs, 'dead'):g} | {median_of(rs, 'effective'):.1f} "
                         f"| {median_of(rs, 'ep4'):.2f}x | {median_of(rs, 'train_cv'):.2f} | "
                         f"{median_of(rs, 'tokens_per_s'):.0f} |")
        lines.append("")
    table = "\n".join(lines)
    print(table)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(table + "\n")
    curves = {}
    for init in INITS:
        curves[init] = {}
        for m in methods:
            rs = results[(m, init)]
            xs = rs[0]["curve"][0]
            ys = [statistics.median(r["curve"][1][j] for r in rs if j < len(r["curve"][1])) for j in range(len(xs))]
            curves[init][m] = (xs, ys)
    svg_plot(curves, os.path.join(ROOT, args.svg), args.steps)
    print(f"wrote {args.svg}", file=sys.stderr)


if __name__ == "__main__":
    main()
