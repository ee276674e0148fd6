#!/usr/bin/env python3
"""The PyTorch peer of build/bin/moe-bench: the same model, batch and training step in eager
PyTorch, or with --compile under torch.compile, timed the same way (median step after warm-up,
tokens/s, peak RSS).

    python3 tools/bench_torch.py --config configs/bench/tiny.yaml [--threads 2] [--compile] [--json]

The model is written the way PyTorch users write MoE layers (HF Mixtral): the router picks the
top-k experts, then a loop over experts gathers each one's tokens with index_select and adds
the weighted outputs back with index_add_. Attention uses F.scaled_dot_product_attention where
it exists (torch >= 2.0). The step: cross-entropy + switch_aux + z_loss (per layer, averaged
over layers, as the engine; coefficients that are schedules take each step's value), backward,
global-norm clipping, AdamW (no decay on norms, biases and embeddings). With --precision bf16 (or precision: bf16 in the config) the forward runs under
torch.autocast("cpu", torch.bfloat16), PyTorch's counterpart of the engine's bf16 matmuls.
With --compile the model (its forward, and through AOTAutograd its backward) goes through plain
torch.compile; the optimizer and clipping stay eager. Compilation happens in the warm-up steps
(at least 2: the second recompiles with symbolic sizes), which are not timed; frames compiled
during the timed steps are counted in the output (recompiled_in_timed_steps) with a warning.
Where torch.compile is missing or fails (no C++ compiler for Inductor's CPU code) it prints why
and exits with status 3.
Needs torch and PyYAML; never needed to build or train the engine.
"""
import argparse
import json
import math
import os
import resource
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_reference import DEFAULTS, merge, schedule_at  # noqa: E402  (the config defaults, shared)


class Expert(nn.Module):
    def __init__(self, d, hidden):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(d, hidden), nn.Linear(hidden, d)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class MoE(nn.Module):
    def __init__(self, d, experts, k, hidden):
        super().__init__()
        self.k, self.E = k, experts
        self.router = nn.Linear(d, experts, bias=False)
        self.experts = nn.ModuleList(Expert(d, hidden) for _ in range(experts))

    def forward(self, x):
        B, T, d = x.shape
        x = x.reshape(-1, d)
        logits = self.router(x)
        probs = logits.softmax(-1)
        gates, chosen = probs.topk(self.k, dim=-1)
        y = torch.zeros_like(x)
        for e in range(self.E):  # HF Mixtral's loop
            token, slot = torch.where(chosen == e)
            if token.numel() == 0:
                continue
            out = self.experts[e](x.index_select(0, token)) * gates[token, slot, None]
            y.index_add_(0, token, out.to(y.dtype))  # autocast leaves bf16 expert outputs
        counts = torch.bincount(chosen.reshape(-1), minlength=self.E).to(x.dtype)
        switch_aux = self.E * (counts / chosen.numel() * probs.mean(0)).sum()
        z_loss = torch.logsumexp(logits, -1).square().mean()
        return y.reshape(B, T, d), switch_aux, z_loss


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        d, m = c["model"]["d_model"], c["moe"]
        self.heads = c["model"]["n_heads"]
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.moe = MoE(d, m["num_experts"], m["top_k"], m["d_expert"])

    def attention(self, x):
        B, T, C = x.shape
        q, k, v = (t.reshape(B, T, self.heads, C // self.heads).transpose(1, 2) for t in self.qkv(x).split(C, -1))
        if hasattr(F, "scaled_dot_product_attention"):
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            s = q @ k.transpose(-1, -2) / math.sqrt(C // self.heads)
            s = s.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
            a = s.softmax(-1) @ v
        return self.proj(a.transpose(1, 2).reshape(B, T, C))

    def forward(self, x):
        x = x + self.attention(self.norm1(x))
        y, aux, z = self.moe(self.norm2(x))
        return x + y, aux, z


class Model(nn.Module):
    def __init__(self, c):
        super().__init__()
        m = c["model"]
        self.tok = nn.Embedding(m["vocab_size"], m["d_model"])
        self.pos = nn.Embedding(m["max_seq_len"], m["d_model"])
        self.blocks = nn.ModuleList(Block(c) for _ in range(m["n_layers"]))
        self.norm_f = nn.LayerNorm(m["d_model"])
        for p in self.parameters():
            if p.dim() == 2:
                nn.init.normal_(p, std=0.02)

    def forward(self, inputs, targets, coef):
        # coef: the step's loss coefficients as 0-d tensors (moe.losses.* may be schedules); tensors,
        # not floats, so that torch.compile does not specialize on (and recompile for) each value.
        x = self.tok(inputs) + self.pos.weight[: inputs.shape[1]]
        aux = z = 0.0
        for b in self.blocks:
            x, a, zz = b(x)
            aux, z = aux + a, z + zz
        logits = self.norm_f(x) @ self.tok.weight.t()
        ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
        L = len(self.blocks)
        return ce + coef["switch_aux"] * aux / L + coef["z_loss"] * z / L


COMPILE_FAILED = 3  # the exit status when torch.compile is unavailable or fails (tools/bench_compare.py reads it)


def compile_failed(why):
    print(f"bench_torch.py: --compile: {why}", file=sys.stderr)
    sys.exit(COMPILE_FAILED)


def compile_model(model, a):
    """torch.compile of the model (forward, and through AOTAutograd its backward); exits with
    COMPILE_FAILED and the reason when this PyTorch has no torch.compile. A missing C++ compiler
    shows only when the first step compiles (the step loop reports it the same way)."""
    if not hasattr(torch, "compile"):
        compile_failed(f"torch {torch.__version__} has no torch.compile (needs >= 2.0)")
    # Plain torch.compile, as users call it: the expert loop's torch.where has a data-dependent
    # size, so Dynamo breaks the graph there and compiles the pieces between, with symbolic sizes
    # after the first step (the experts' token counts change every step). Capturing the loop
    # whole (capture_dynamic_output_shape_ops) measured slower here (251 against 225 ms on tiny).
    return torch.compile(model, mode=a.compile_mode)


def frames_compiled():
    try:
        from torch._dynamo.utils import counters
        return counters["frames"]["total"]  # frames Dynamo converted (compiled); cache hits do not count
    except Exception:  # noqa: BLE001  (eager: nothing compiles)
        return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True)
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", os.cpu_count())))
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--precision", choices=["f32", "bf16"], help="default: the config's precision key (f32)")
    ap.add_argument("--compile", action="store_true",
                    help="torch.compile the model (compilation happens in the warm-up steps, which must be >= 2)")
    ap.add_argument("--compile-mode", default="default",
                    help="torch.compile's mode: default, reduce-overhead, max-autotune (with --compile)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    if a.compile and a.warmup < 2:
        # The first step compiles; the second may recompile with symbolic sizes (the experts' token
        # counts change every step). Neither may be timed.
        raise SystemExit("bench_torch.py: --compile needs --warmup >= 2 (compilation must not be timed)")
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    with open(a.config) as f:
        c = merge(DEFAULTS, yaml.safe_load(f) or {})
    m, t, o = c["model"], c["training"], c["optimizer"]
    precision = a.precision or c.get("precision", "f32")
    if c["moe"]["router"] != "topk_softmax" or m["activation"] != "gelu" or not m["tie_embeddings"]:
        raise SystemExit("bench_torch.py covers the benchmark configs: topk_softmax, gelu, tied embeddings")
    model = Model(c)
    decay = [p for n, p in model.named_parameters() if p.dim() == 2 and "tok" not in n and "pos" not in n]
    rest = [p for n, p in model.named_parameters() if not (p.dim() == 2 and "tok" not in n and "pos" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": o["weight_decay"]}, {"params": rest, "weight_decay": 0}],
                            lr=o["lr"], betas=(o["beta1"], o["beta2"]), eps=o["eps"])
    forward = compile_model(model, a) if a.compile else model
    B, T, V = t["batch_size"], t["seq_len"], m["vocab_size"]
    batches = [torch.randint(0, V, (B, T + 1)) for _ in range(8)]
    times, warmup_s, compiled_before_timing = [], 0.0, 0
    for s in range(a.warmup + a.steps):
        if s == a.warmup:
            compiled_before_timing = frames_compiled()
        tokens = batches[s % len(batches)]
        start = time.perf_counter()
        # moe-bench's steps are training steps 1, 2, ...: each weighs the losses with its own values.
        coef = {k: torch.tensor(schedule_at(v, s + 1)) for k, v in c["moe"]["losses"].items()}
        opt.zero_grad(set_to_none=True)
        try:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                loss = forward(tokens[:, :-1], tokens[:, 1:], coef)
            loss.backward()
        except Exception as e:  # noqa: BLE001  (compilation errors come in many classes)
            if not a.compile:
                raise
            why = str(e).strip().splitlines()[0] if str(e).strip() else ""
            compile_failed(f"torch.compile failed in step {s + 1} (torch {torch.__version__}): "
                           f"{type(e).__name__}: {why}")
        torch.nn.utils.clip_grad_norm_(model.parameters(), o["grad_clip"])
        opt.step()
        elapsed = time.perf_counter() - start
        if s >= a.warmup:
            times.append(elapsed)
        else:
            warmup_s += elapsed
    # Frames compiled during the timed steps (a recompilation for new sizes) would be timed.
    recompiled = frames_compiled() - compiled_before_timing
    if recompiled:
        print(f"bench_torch.py: warning: {recompiled} frame(s) compiled during the timed steps; "
              f"raise --warmup", file=sys.stderr)
    times.sort()
    median = times[len(times) // 2]
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    mode = "compiled" if a.compile else "eager"
    result = {"config": a.config, "torch": torch.__version__, "mode": mode, "precision": precision,
              "threads": a.threads, "median_step_s": median, "tokens_per_s": B * T / median, "peak_rss_mb": rss,
              "warmup_s": warmup_s, "recompiled_in_timed_steps": recompiled}
    if a.json:
        print(json.dumps(result))
    else:
        print(f"{a.config}: torch {torch.__version__} {mode} ({precision}), {a.threads} threads: median step "
              f"{1e3 * median:.2f} ms, {B * T / median:.0f} tokens/s, peak RSS {rss:.0f} MB "
              f"(warm-up {warmup_s:.1f} s{', compilation included' if a.compile else ''})")


if __name__ == "__main__":
    main()
