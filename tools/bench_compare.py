#!/usr/bin/env python3
"""Side by side: build/bin/moe-bench against tools/bench_torch.py, PyTorch eager and PyTorch
under torch.compile, on the same configs, same thread count, alternating runs (engine, eager,
compiled, engine, ...), medians, ratios. Prints one Markdown table per precision for the README
(machine, date, threads, torch version): tokens/s and peak RSS of all three, and the engine's
speed-up over the faster of the two PyTorch modes; then the E-scaling check (step time at
E = 64 over E = 8 with k and d_expert fixed).

    python3 tools/bench_compare.py [--runs 3] [--threads 2] [--precision f32 bf16] [--no-compile]
                                   [--warmup 5] [--steps 20] [--also-python /usr/bin/python3]
                                   [configs/bench/tiny.yaml ...]

--precision bf16 runs the engine with precision: bf16 and PyTorch under CPU autocast (bf16);
the default is both, f32 then bf16. The compiled peer compiles in its warm-up steps (at least 3
here), never timed; where torch.compile is unavailable or fails, its column says "failed", the
reason is printed under the table, and the speed-up is over eager alone. --no-compile leaves it
out (each compiled run spends tens of seconds compiling on 2 cores).
--also-python adds another PyTorch installation (e.g. Debian's python3-torch 1.13 under
/usr/bin/python3) as one more eager column; it runs once per config with fewer steps (2 warm-up,
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
COMPILE_FAILED = 3  # bench_torch.py's exit status when torch.compile is unavailable or fails


class CompileFailed(Exception):
    pass


def run_json(cmd, threads):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if out.returncode == COMPILE_FAILED and "--compile" in cmd:
        raise CompileFailed(out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "no message")
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def engine(config, threads, precision, steps, extra=()):
    return run_json([os.path.join(ROOT, "build/bin/moe-bench"), "--config", config, "--json", "--no-profile",
                     "--set", f"precision={precision}", *steps, *extra], threads)


def torch_peer(config, threads, precision, steps, python=sys.executable, extra=()):
    return run_json([python, os.path.join(ROOT, "tools/bench_torch.py"), "--config", config, "--json",
                     "--threads", str(threads), "--precision", precision, *steps, *extra], threads)


def cpu_name():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def med(runs, key):
    return statistics.median(r[key] for r in runs)


def measure(config, precision, a):
    """One row: the three alternating, then the extra interpreters once."""
    steps = ["--warmup", str(a.warmup), "--steps", str(a.steps)]
    compile_steps = ["--warmup", str(max(a.warmup, 3)), "--steps", str(a.steps), "--compile"]
    ours, eager, compiled, failed = [], [], [], None
    for _ in range(a.runs):  # alternate, so drift in the machine's speed hits all alike
        ours.append(engine(config, a.threads, precision, steps))
        eager.append(torch_peer(config, a.threads, precision, steps))
        if a.compile and failed is None:
            try:
                compiled.append(torch_peer(config, a.threads, precision, compile_steps))
            except CompileFailed as e:
                failed = str(e)
    others = [torch_peer(config, a.threads, precision, ["--warmup", "2", "--steps", "5"], py)
              for py in a.also_python]
    row = {"name": os.path.basename(config).rsplit(".", 1)[0], "torch": eager[0]["torch"],
           "engine": med(ours, "tokens_per_s"), "eager": med(eager, "tokens_per_s"),
           "gflops": med(ours, "model_gflops"), "peak": med(ours, "sgemm_peak_gflops"),
           "rss": med(ours, "peak_rss_mb"), "eager_rss": med(eager, "peak_rss_mb"),
           "compiled": med(compiled, "tokens_per_s") if compiled else None,
           "compiled_rss": med(compiled, "peak_rss_mb") if compiled else None,
           "recompiled": max((r["recompiled_in_timed_steps"] for r in compiled), default=0),
           "failed": failed, "others": [(o["torch"], o["tokens_per_s"]) for o in others]}
    print(f"{config} ({precision}): engine {row['engine']:.0f} tok/s, eager {row['eager']:.0f}, compiled "
          f"{'failed' if failed else 'off' if not a.compile else format(row['compiled'], '.0f')}", file=sys.stderr)
    return row


def print_table(rows, precision, a):
    torch_version = rows[0]["torch"]
    also = [v for v, _ in rows[0]["others"]]
    print(f"Measured {datetime.date.today()} on {cpu_name()}, {a.threads} threads, {precision}, PyTorch "
          f"{torch_version} eager{' and torch.compile' if a.compile else ''}, medians of {a.runs} alternating runs "
          f"({a.steps} timed steps after {a.warmup} warm-up steps each"
          f"{f'; compiled: {max(a.warmup, 3)} warm-up steps, which take the compilation' if a.compile else ''})"
          f"{''.join(f'; PyTorch {v}: one run of 5 timed steps' for v in also)}:\n")
    compiled_head = " PyTorch compiled tokens/s |" if a.compile else ""
    compiled_rss_head = " PyTorch compiled peak RSS MB |" if a.compile else ""
    over = "the faster PyTorch" if a.compile else "PyTorch"
    extra_head = "".join(f" PyTorch {v} tokens/s | speed-up over {v} |" for v in also)
    head = (f"| config | engine tokens/s | PyTorch {torch_version} eager tokens/s |{compiled_head} speed-up over "
            f"{over} | engine model GFLOP/s (% of {precision} matmul peak) | engine peak RSS MB | PyTorch eager "
            f"peak RSS MB |{compiled_rss_head}{extra_head}")
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    notes = []
    for r in rows:
        faster = r["eager"] if r["compiled"] is None else max(r["eager"], r["compiled"])
        which = "" if not a.compile else " (eager)" if faster == r["eager"] else " (compiled)"
        compiled = "" if not a.compile else " failed |" if r["failed"] else f" {r['compiled']:.0f} |"
        compiled_rss = "" if not a.compile else " - |" if r["failed"] else f" {r['compiled_rss']:.0f} |"
        cells = "".join(f" {t:.0f} | {r['engine'] / t:.1f}x |" for _, t in r["others"])
        print(f"| {r['name']} | {r['engine']:.0f} | {r['eager']:.0f} |{compiled} {r['engine'] / faster:.2f}x{which} | "
              f"{r['gflops']:.1f} ({100 * r['gflops'] / r['peak']:.0f}% of {r['peak']:.0f}) | {r['rss']:.0f} | "
              f"{r['eager_rss']:.0f} |{compiled_rss}{cells}")
        if r["failed"]:
            notes.append(f"{r['name']}: {r['failed']}")
        if r["recompiled"]:
            notes.append(f"{r['name']}: torch.compile recompiled {r['recompiled']} frame(s) in timed steps "
                         f"(raise --warmup)")
    for n in notes:
        print(f"\n- {n}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("configs", nargs="*", default=[f"configs/bench/{n}.yaml" for n in ("tiny", "small", "wide")])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--precision", nargs="+", choices=["f32", "bf16"], default=["f32", "bf16"])
    ap.add_argument("--warmup", type=int, default=5, help="untimed steps of every run (compiled: at least 3)")
    ap.add_argument("--steps", type=int, default=20, help="timed steps of every run")
    ap.add_argument("--no-compile", dest="compile", action="store_false", help="leave out the torch.compile column")
    ap.add_argument("--no-scaling", dest="scaling", action="store_false", help="leave out the E-scaling check")
    ap.add_argument("--also-python", action="append", default=[], metavar="PYTHON",
                    help="another interpreter with its own torch, reported as an extra column")
    a = ap.parse_args()
    if a.runs < 1 or a.steps < 1 or a.warmup < 0:
        raise SystemExit("bench_compare.py: --runs and --steps must be >= 1, --warmup >= 0")
    for i, precision in enumerate(a.precision):
        rows = [measure(config, precision, a) for config in a.configs]
        print("\n" if i else "", end="")
        print_table(rows, precision, a)
        wide = [c for c in a.configs if c.endswith("wide.yaml")]
        if wide and a.scaling:
            steps = ["--warmup", str(a.warmup), "--steps", str(a.steps)]
            e64 = statistics.median(engine(wide[0], a.threads, precision, steps)["median_step_s"] for _ in range(a.runs))
            e8 = statistics.median(engine(wide[0], a.threads, precision, steps, ["--set", "moe.num_experts=8"])
                                   ["median_step_s"] for _ in range(a.runs))
            print(f"\nE-scaling (wide, k = 2, d_expert 256, {precision}): step {1e3 * e64:.1f} ms at E = 64, "
                  f"{1e3 * e8:.1f} ms at E = 8: {e64 / e8:.2f}x")


if __name__ == "__main__":
    main()
