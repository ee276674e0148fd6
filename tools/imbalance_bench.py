#!/usr/bin/env python3
"""What device imbalance costs, measured: one model under mpirun at expert parallelism 2 (and 4),
its routing forced into perfect balance (moe.force_balance: the best case), left to the router,
and then skewed onto rank 0 (moe-bench --hot-experts: rank 0's experts get a fixed selection bias,
from a nudge to always), against the slowdown moe-diagnose --ep predicts from each run's
checkpoint alone.

    python3 tools/imbalance_bench.py [--config configs/bench/wide.yaml] [--ep 2 4]
        [--bias 0 0.002 0.005 0.02 10] [--runs 3] [--warmup 2] [--steps 6]
        [--svg tools/imbalance_bench.svg]

Prints a Markdown table (machine and date included) and writes the plot of step time against
device imbalance. Every slowdown is against the forced-balance step of the same EP. Within each repeat the routings alternate, medians are taken over repeats, and
every slowdown is a ratio of runs of one EP, so the machine's drift cancels. optimizer.lr is
1e-9 so the steps do all their work but the router stays where the bias put it.

Columns: device imbalance = the busiest rank's kept slots over the mean, summed over MoE layers,
as measured on the training steps; predicted = the same number from the saved checkpoint on
evaluation batches (moe-diagnose --ep N), i.e. the predicted slowdown of the expert work;
predicted step = 1 + s * (predicted - predicted_balanced), where s is the balanced run's share of
the step spent in expert compute: only the expert part of a step grows with the imbalance.
"""
import argparse
import datetime
import json
import os
import platform
import re
import statistics
import subprocess
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "build", "bin")


def run(cmd):
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if out.returncode not in (0, 3):  # moe-diagnose exits 3 for an imbalanced checkpoint
        raise SystemExit(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    return out.stdout


FORCED = "forced"  # the routing key of the forced-balance runs, beside the biases


def bench(args, ep, bias, checkpoint=None):
    experts = args.experts
    cmd = ["mpirun", "--oversubscribe", "-np", str(ep), os.path.join(BIN, "moe-bench"), "--config", args.config,
           "--set", f"parallel.expert={ep}", "--set", "optimizer.lr=1e-9", "--warmup", str(args.warmup),
           "--steps", str(args.steps), "--no-profile", "--json"]
    if bias == FORCED:
        cmd += ["--set", "moe.force_balance=true"]
    else:
        cmd += ["--hot-experts", str(experts // ep), "--hot-bias", str(bias)]
    if checkpoint:
        cmd += ["--checkpoint", checkpoint]
    return json.loads(run(cmd).strip().splitlines()[-1])


def predicted(checkpoint, ep):
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        run([os.path.join(BIN, "moe-diagnose"), checkpoint, "--ep", str(ep), "--batches", "4", "--json", out.name])
        view = json.load(open(out.name))["devices"]["predicted"]
    return next(p for p in view if p["ranks"] == ep)["overall"]


def num_experts(config):
    text = open(os.path.join(ROOT, config)).read()
    return int(re.search(r"num_experts:\s*(\d+)", text).group(1))


def svg_plot(rows, eps, path):
    """Step time over the balanced step against device imbalance: measured points, the
    checkpoint's prediction of the expert work (y = x) and the step-level prediction."""
    w, h, left, top, right, bottom = 760, 420, 60, 30, 250, 50
    xmax = max(eps) + 0.2
    ymax = max([max(r["slowdown"], r["step_pred"]) for r in rows] + [2.2]) * 1.05
    X = lambda v: left + (v - 1) / (xmax - 1) * (w - left - right)
    Y = lambda v: h - bottom - (v - 0.9) / (ymax - 0.9) * (h - top - bottom)
    colors = {2: "#1565c0", 4: "#c62828", 8: "#2e7d32"}
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" '
           'font-family="sans-serif" font-size="12">',
           f'<rect width="{w}" height="{h}" fill="white"/>',
           f'<text x="{left}" y="18" font-weight="600">Step time against device imbalance '
           f'(expert parallelism, routing held skewed)</text>']
    for t in range(1, int(xmax) + 1):
        out.append(f'<line x1="{X(t)}" x2="{X(t)}" y1="{top}" y2="{h - bottom}" stroke="#eee"/>'
                   f'<text x="{X(t)}" y="{h - bottom + 16}" text-anchor="middle">{t}</text>')
    y = 1.0
    while y <= ymax:
        out.append(f'<line x1="{left}" x2="{w - right}" y1="{Y(y)}" y2="{Y(y)}" stroke="#eee"/>'
                   f'<text x="{left - 6}" y="{Y(y) + 4}" text-anchor="end">{y:.1f}x</text>')
        y += 0.5
    out.append(f'<text x="{(left + w - right) / 2}" y="{h - 12}" text-anchor="middle">device imbalance '
               '(busiest rank\'s slots / mean)</text>')
    out.append(f'<text x="16" y="{(top + h - bottom) / 2}" text-anchor="middle" '
               f'transform="rotate(-90 16 {(top + h - bottom) / 2})">step time / balanced step</text>')
    top_y = min(xmax, ymax)
    out.append(f'<line x1="{X(1)}" y1="{Y(1)}" x2="{X(top_y)}" y2="{Y(top_y)}" stroke="#555" stroke-dasharray="5 4"/>')
    legend = [("#555", "5 4", "expert work, predicted (y = x)")]
    for ep in eps:
        mine = sorted((r for r in rows if r["ep"] == ep), key=lambda r: r["imbalance"])
        c = colors.get(ep, "#555")
        pts = " ".join(f"{X(r['imbalance'])},{Y(r['slowdown'])}" for r in mine)
        out.append(f'<polyline points="{pts}" fill="none" stroke="{c}" stroke-width="2"/>')
        for r in mine:
            out.append(f'<circle cx="{X(r["imbalance"])}" cy="{Y(r["slowdown"])}" r="4" fill="{c}">'
                       f'<title>EP {ep}, {routing_name(r["bias"])}: imbalance {r["imbalance"]:.2f}, '
                       f'{r["slowdown"]:.2f}x</title></circle>')
        pred = " ".join(f"{X(r['predicted'])},{Y(r['step_pred'])}" for r in sorted(mine, key=lambda r: r["predicted"]))
        out.append(f'<polyline points="{pred}" fill="none" stroke="{c}" stroke-width="1.5" stroke-dasharray="2 3"/>')
        legend.append((c, None, f"EP {ep}: measured"))
        legend.append((c, "2 3", f"EP {ep}: predicted step"))
    for i, (c, dash, label) in enumerate(legend):
        ly = top + 10 + 18 * i
        style = f' stroke-dasharray="{dash}"' if dash else ' stroke-width="2"'
        out.append(f'<line x1="{w - right + 10}" x2="{w - right + 34}" y1="{ly}" y2="{ly}" stroke="{c}"{style}/>'
                   f'<text x="{w - right + 38}" y="{ly + 4}" font-size="11">{label}</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def routing_name(bias):
    return "forced balance" if bias == FORCED else f"bias {bias:g}"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="configs/bench/wide.yaml")
    p.add_argument("--ep", type=int, nargs="+", default=[2, 4])
    p.add_argument("--bias", type=float, nargs="+", default=[0, 0.002, 0.005, 0.02, 10])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--svg", default="tools/imbalance_bench.svg")
    args = p.parse_args()
    args.experts = num_experts(args.config)
    args.bias = [FORCED] + [float(b) for b in args.bias]  # forced: what every slowdown is measured against
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for ep in args.ep:
            samples = {b: [] for b in args.bias}
            for r in range(args.runs):
                for b in args.bias:  # alternating: every routing once per repeat
                    ckpt = os.path.join(tmp, f"ep{ep}_bias{b}.h5") if r == 0 else None
                    samples[b].append(bench(args, ep, b, ckpt))
            base = samples[FORCED]
            base_step = statistics.median(s["median_step_s"] for s in base)
            share = statistics.median(s["expert_share"] for s in base)
            pred_base = predicted(os.path.join(tmp, f"ep{ep}_bias{FORCED}.h5"), ep)
            for b in args.bias:
                step = statistics.median(s["median_step_s"] for s in samples[b])
                pred = predicted(os.path.join(tmp, f"ep{ep}_bias{b}.h5"), ep)
                rows.append({"ep": ep, "bias": b, "step_ms": 1e3 * step, "slowdown": step / base_step,
                             "imbalance": statistics.median(s["device_imbalance"] for s in samples[b]),
                             "predicted": pred, "step_pred": 1 + share * (pred - pred_base),
                             "wait": statistics.median(s["wait_share"] for s in samples[b]),
                             "expert": statistics.median(s["expert_share"] for s in samples[b]),
                             "tokens_per_s": statistics.median(s["tokens_per_s"] for s in samples[b])})
    cpu = platform.processor() or platform.machine()
    print(f"{args.config}, E = {args.experts}, {os.cpu_count()} cores ({cpu}), {datetime.date.today()}, "
          f"{args.runs} alternating runs of {args.steps} timed steps, medians; rank 0's experts biased\n")
    print("| EP | routing | device imbalance | predicted (moe-diagnose --ep) | step | slowdown | predicted step "
          "| expert compute | all-to-all waiting | tokens/s |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['ep']} | {routing_name(r['bias'])} | {r['imbalance']:.2f} | {r['predicted']:.2f}x | {r['step_ms']:.0f} ms "
              f"| {r['slowdown']:.2f}x | {r['step_pred']:.2f}x | {100 * r['expert']:.0f}% | {100 * r['wait']:.0f}% "
              f"| {r['tokens_per_s']:.0f} |")
    svg_plot(rows, args.ep, os.path.join(ROOT, args.svg))
    print(f"\nwrote {args.svg}")


if __name__ == "__main__":
    main()
