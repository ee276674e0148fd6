#!/usr/bin/env python3
"""bf16 against f32: trains one config twice with build/bin/moe-train (precision: f32, then
precision: bf16; same seed, data and initial weights), and prints the loss curves side by side
as a Markdown table for the README, then the mean training loss over each quarter of the run,
the held-out losses, their relative gaps and the median tokens/s of each run.

    python3 tools/precision_compare.py [--config configs/tiny.yaml] [--steps 400] [--out DIR]

Exits 1 when a quarter's mean training loss or the final held-out loss differs by more than
--tolerance (default 0.01). Single logged steps are not held to it: the two runs see the same
batches, but rounding moves some tokens to other experts and single-batch losses wander by
1-2% around each other while the curves stay together.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def train(config, precision, steps, out):
    folder = os.path.join(out, precision)
    cmd = [os.path.join(ROOT, "build/bin/moe-train"), "--config", config, "--out", folder, "--set",
           f"precision={precision}", "--set", f"training.steps={steps}", "--set", "checkpointing.keep_last=1"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr}")
    steps_rows, evals = {}, {}
    with open(os.path.join(folder, "metrics.jsonl")) as f:
        for line in f:
            row = json.loads(line)
            if "eval_loss" in row:
                evals[row["step"]] = row["eval_loss"]
            else:
                steps_rows[row["step"]] = row
    return steps_rows, evals


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="configs/tiny.yaml")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--tolerance", type=float, default=0.01)
    ap.add_argument("--out", help="run folders go here (default: a temporary folder)")
    a = ap.parse_args()
    out = a.out or tempfile.mkdtemp(prefix="precision_compare_")
    f32, f32_eval = train(a.config, "f32", a.steps, out)
    bf16, bf16_eval = train(a.config, "bf16", a.steps, out)
    print(f"{a.config}, {a.steps} steps, the same seed and data; loss at each log step (training batch) and "
          f"held-out loss at each evaluation:\n")
    print("| step | f32 loss | bf16 loss | relative gap |")
    print("|---|---|---|---|")
    for step in sorted(set(f32) & set(bf16)):
        x, y = f32[step]["loss"], bf16[step]["loss"]
        print(f"| {step} | {x:.4f} | {y:.4f} | {100 * (y - x) / x:+.2f}% |")
    for step in sorted(set(f32_eval) & set(bf16_eval)):
        x, y = f32_eval[step], bf16_eval[step]
        print(f"| {step} (held-out) | {x:.4f} | {y:.4f} | {100 * (y - x) / x:+.2f}% |")
    speed = lambda rows: statistics.median(r["tokens_per_s"] for s, r in rows.items() if s > 1)
    print(f"\nMedian training tokens/s over the run: f32 {speed(f32):.0f}, bf16 {speed(bf16):.0f} "
          f"({speed(bf16) / speed(f32):.2f}x)")
    common = sorted(set(f32) & set(bf16))
    print("\n| steps | f32 mean loss | bf16 mean loss | relative gap |")
    print("|---|---|---|---|")
    worst = 0.0
    for q in range(4):
        lo, hi = q * a.steps // 4, (q + 1) * a.steps // 4
        window = [s for s in common if lo < s <= hi]
        if not window:
            continue
        x = statistics.mean(f32[s]["loss"] for s in window)
        y = statistics.mean(bf16[s]["loss"] for s in window)
        worst = max(worst, abs(y - x) / x)
        print(f"| {lo + 1}-{hi} | {x:.4f} | {y:.4f} | {100 * (y - x) / x:+.2f}% |")
    last = max(set(f32_eval) & set(bf16_eval))
    gap = abs(bf16_eval[last] - f32_eval[last]) / f32_eval[last]
    pointwise = max(abs(bf16[s]["loss"] - f32[s]["loss"]) / f32[s]["loss"] for s in common)
    print(f"\nLargest quarter-mean gap: {100 * worst:.2f}%; final held-out loss gap: {100 * gap:.2f}% "
          f"(tolerance {100 * a.tolerance:.0f}% for both); largest single logged step: {100 * pointwise:.2f}%")
    return 0 if gap <= a.tolerance and worst <= a.tolerance else 1


if __name__ == "__main__":
    sys.exit(main())
