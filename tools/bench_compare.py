#!/usr/bin/env python3
"""Side by side: build/bin/moe-bench against tools/bench_torch.py (eager PyTorch) on the same
configs, same thread count, alternating runs, medians, ratios. Prints a Markdown table for the
README (machine, date, threads, torch version), plus the E-scaling check (step time at E = 64
over E = 8 with k and d_expert fixed).

    python3 tools/bench_compare.py [--runs 3] [--threads 2] [--precision bf16]
                                   [--also-python /usr/bin/python3] [configs/bench/tiny.yaml ...]

--precision bf16 runs the engine with precision: bf16 and PyTorch under CPU autocast (bf16).
--also-python adds another PyTorch installation (e.g. Debian's python3-torch 1.13 under
/usr/bin/python3) as one more column; it runs once per config with fewer steps (2 warm-up,
5 timed), since old builds can be an order of magnitude slower.
"""
import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_json(cmd, threads):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def engine(config, threads, precision, extra=()):
    return run_json([os.path.join(ROOT, "build/bin/moe-bench"), "--config", config, "--json", "--no-profile",
                     "--set", f"precision={precision}", *extra], threads)


def torch_peer(config, threads, precision, python=sys.executable, extra=()):
    return run_json([python, os.path.join(ROOT, "tools/bench_torch.py"), "--config", config, "--json",
                     "--threads", str(threads), "--precision", precision, *extra], threads)


def cpu_name():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("configs", nargs="*", default=[f"configs/bench/{n}.yaml" for n in ("tiny", "small", "wide")])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--precision", choices=["f32", "bf16"], default="f32")
    ap.add_argument("--also-python", action="append", default=[], metavar="PYTHON",
                    help="another interpreter with its own torch, reported as an extra column")
    a = ap.parse_args()
    rows, torch_version, also_versions = [], "?", []
    for config in a.configs:
        ours, theirs = [], []
        for _ in range(a.runs):  # alternate, so drift in the machine's speed hits both alike
            ours.append(engine(config, a.threads, a.precision))
            theirs.append(torch_peer(config, a.threads, a.precision))
        torch_version = theirs[0]["torch"]
        others = [torch_peer(config, a.threads, a.precision, py, ["--warmup", "2", "--steps", "5"])
                  for py in a.also_python]
        also_versions = [o["torch"] for o in others]
        med = lambda runs, key: statistics.median(r[key] for r in runs)
        rows.append((os.path.basename(config).rsplit(".", 1)[0], med(ours, "tokens_per_s"), med(theirs, "tokens_per_s"),
                     med(ours, "model_gflops"), med(ours, "sgemm_peak_gflops"), med(ours, "peak_rss_mb"),
                     med(theirs, "peak_rss_mb"), [o["tokens_per_s"] for o in others]))
        print(f"{config}: engine {rows[-1][1]:.0f} tok/s, torch {rows[-1][2]:.0f} tok/s", file=sys.stderr)
    print(f"Measured {datetime.date.today()} on {cpu_name()}, {a.threads} threads, {a.precision}, PyTorch "
          f"{torch_version} eager, medians of {a.runs} alternating runs (20 timed steps after 5 warm-up steps "
          f"each){''.join(f'; PyTorch {v}: one run of 5 timed steps' for v in also_versions)}:\n")
    extra_head = "".join(f" PyTorch {v} tokens/s | speed-up over {v} |" for v in also_versions)
    print(f"| config | engine tokens/s | PyTorch {torch_version} tokens/s | speed-up | engine model GFLOP/s (% of "
          f"{a.precision} matmul peak) | engine peak RSS MB | PyTorch peak RSS MB |{extra_head}")
    print("|---|---|---|---|---|---|---|" + "---|---|" * len(also_versions))
    for name, ours, theirs, gflops, peak, rss, trss, extra in rows:
        cells = "".join(f" {t:.0f} | {ours / t:.1f}x |" for t in extra)
        print(f"| {name} | {ours:.0f} | {theirs:.0f} | {ours / theirs:.2f}x | {gflops:.1f} ({100 * gflops / peak:.0f}% of "
              f"{peak:.0f}) | {rss:.0f} | {trss:.0f} |{cells}")
    wide = [c for c in a.configs if c.endswith("wide.yaml")]
    if wide:
        e64 = statistics.median(engine(wide[0], a.threads, a.precision)["median_step_s"] for _ in range(a.runs))
        e8 = statistics.median(engine(wide[0], a.threads, a.precision, ["--set", "moe.num_experts=8"])["median_step_s"]
                               for _ in range(a.runs))
        print(f"\nE-scaling (wide, k = 2, d_expert 256): step {1e3 * e64:.1f} ms at E = 64, {1e3 * e8:.1f} ms at "
              f"E = 8: {e64 / e8:.2f}x")


if __name__ == "__main__":
    main()
