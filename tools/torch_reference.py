#!/usr/bin/env python3
"""PyTorch reference for the engine's MoE transformer (as llm.c checks itself against PyTorch).

Builds the model of a moe-train YAML config in plain PyTorch, written independently of the
engine from the router and balance-loss formulas in models/README.md, runs one forward and backward
on a random batch and S AdamW training steps, and writes everything to an HDF5 reference file
that `build/bin/moe-refcheck FILE` compares the engine against. Layout: tests/data/reference/README.md.

    python3 tools/torch_reference.py --config configs/tiny.yaml --out ref.h5 [--set key=value ...]
    python3 tools/torch_reference.py --suite tests/data/reference     # regenerate the committed set
    python3 tools/torch_reference.py --suite tests/data/reference --only 'expert_choice_*'  # chosen entries

Needs torch, h5py, numpy and PyYAML (pip); never needed to build or train the engine.

The routers, routing options and balance losses are those of models/routers/routers.def,
models/routers/options.def and models/balance/losses.def (keys, order, rules: read from those files);
each router and loss has its PyTorch function: the routers (and the options) in torch_routers.py, in
ROUTERS, the losses in torch_losses.py, in LOSSES. Beside it: moe_tables.py reads those tables;
reference_suite.py holds the committed suite's configs.

Choices that make the comparison decisive:
- The reference is computed in float64 from float32 parameters, so what refcheck measures is the
  engine's float32 error against the exact result.
- Norm gains and biases are perturbed away from 1 and 0 (--no-perturb keeps the init), so a
  bias or gain applied in the wrong place shows in the forward pass, not only in gradients.
- noisy_topk: the reference CARRIES the noise. The standard-normal draws eps [N, E] of each MoE
  layer and step are stored under /noise and the engine replays them instead of drawing its own;
  likewise the input jitter's multipliers u [N, d] under /jitter.
- An evaluation forward (no noise, no jitter, the evaluation capacity, plain top-k for sinkhorn) is
  stored under /expected/eval.
- Dropout must be 0 (its masks are not carried).
"""
import argparse
import copy
import fnmatch
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
import yaml

# The routers and balance losses, as declared once for the engine (models/README.md has the math).
from moe_tables import (LOSS_NAMES, LOSS_TABLE, LOSSES_DEF, MODELS_DIR, OPTION_TABLE, ROUTER_TABLE,  # noqa: F401
                        ROUTERS_DEF, LossRule, RouterRule, read_loss_table, read_router_table, router_provides,
                        router_takes)
from torch_losses import LOSSES
from torch_routers import ROUTERS, route


# Every key the engine reads, with its default (configs/README.md is the reference).
DEFAULTS = {
    "model": {"vocab_size": 256, "d_model": 128, "n_layers": 4, "n_heads": 4, "max_seq_len": 128,
              "norm": "layernorm", "norm_eps": 1e-5, "position": "learned", "tie_embeddings": True,
              "dropout": 0.0, "d_ff": 512, "activation": "gelu", "init_std": 0.02, "embedding_init_std": 0.02},
    "moe": {"enabled": True, "layers": "all", "every_n": 2, "first_dense": 0, "num_experts": 8, "top_k": 2,
            "d_expert": 256, "num_shared_experts": 0, "d_shared": 0, "router": "topk_softmax",
            "normalize_topk": False, "capacity_factor": 0.0, "drop_policy": "position",
            **{key: rule.default for key, rule in OPTION_TABLE.items()},
            "losses": {key: 0.0 for key in LOSS_NAMES},
            "bias_update_rate": 0.0, "device_groups": 0},
    "optimizer": {"lr": 3e-3, "beta1": 0.9, "beta2": 0.95, "eps": 1e-8, "weight_decay": 0.1,
                  "decay_embeddings": False, "decay_norms_and_biases": False, "grad_clip": 1.0},
    "schedule": {"warmup_steps": 20, "decay": "cosine", "min_lr_ratio": 0.1, "total_steps": 0},
    "training": {"steps": 200, "batch_size": 16, "seq_len": 64, "grad_accum": 1, "seed": 0},
}


def merge(base, override, path=""):
    out = copy.deepcopy(base)
    for key, value in (override or {}).items():
        if isinstance(out.get(key), dict) and isinstance(value, dict):
            out[key] = merge(out[key], value, path + key + ".")
        else:
            out[key] = value
    return out


def apply_override(cfg, item):
    key, _, value = item.partition("=")
    node = cfg
    parts = key.split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = yaml.safe_load(value)


def is_moe_layer(cfg, layer):
    m = cfg["moe"]
    if not m["enabled"] or m["layers"] == "none" or layer < m["first_dense"]:
        return False
    return m["layers"] == "all" or (layer - m["first_dense"]) % m["every_n"] == 0


# ---------------------------------------------------------------------------------------------
# Parameters: the engine's names (PyTorch state_dict style) and shapes.

def parameter_specs(cfg):
    """(name, shape, kind) in the engine's order; kind: matrix, residual, embedding, gain, bias."""
    mc, moe = cfg["model"], cfg["moe"]
    d, V, E = mc["d_model"], mc["vocab_size"], moe["num_experts"]
    ln = mc["norm"] == "layernorm"
    specs = [("tok_embedding.weight", (V, d), "embedding")]
    if mc["position"] == "learned":
        specs.append(("pos_embedding.weight", (mc["max_seq_len"], d), "embedding"))

    def norm(prefix):
        specs.append((prefix + ".weight", (d,), "gain"))
        if ln:
            specs.append((prefix + ".bias", (d,), "bias"))

    def mlp(prefix, hidden):
        if mc["activation"] == "gelu":
            specs.extend([(prefix + ".fc1.weight", (hidden, d), "matrix"), (prefix + ".fc1.bias", (hidden,), "bias"),
                          (prefix + ".fc2.weight", (d, hidden), "residual"), (prefix + ".fc2.bias", (d,), "bias")])
        else:
            specs.extend([(prefix + ".gate_proj.weight", (hidden, d), "matrix"),
                          (prefix + ".up_proj.weight", (hidden, d), "matrix"),
                          (prefix + ".down_proj.weight", (d, hidden), "residual")])

    for l in range(mc["n_layers"]):
        p = f"layers.{l}"
        norm(p + ".norm1")
        specs.extend([(p + ".attn.qkv.weight", (3 * d, d), "matrix"), (p + ".attn.qkv.bias", (3 * d,), "bias"),
                      (p + ".attn.proj.weight", (d, d), "residual"), (p + ".attn.proj.bias", (d,), "bias")])
        norm(p + ".norm2")
        if is_moe_layer(cfg, l):
            weights = ROUTER_TABLE[moe["router"]].weights
            if weights != "none":
                specs.append((p + ".moe.router.weight", (E, d), "matrix"))
            if weights == "gate_noise":
                specs.append((p + ".moe.router.noise.weight", (E, d), "matrix"))
            for e in range(E):
                mlp(f"{p}.moe.experts.{e}", moe["d_expert"])
            for s in range(moe["num_shared_experts"]):
                mlp(f"{p}.moe.shared_experts.{s}", moe["d_shared"] or moe["d_expert"])
        else:
            mlp(p + ".mlp", mc["d_ff"])
    norm("norm_f")
    if not mc["tie_embeddings"]:
        specs.append(("lm_head.weight", (V, d), "matrix"))
    return specs


def init_parameters(cfg, gen, perturb):
    """GPT-2 init as the engine documents it; float32 values (the engine's storage type)."""
    mc = cfg["model"]
    residual_std = mc["init_std"] / math.sqrt(2.0 * mc["n_layers"])
    params = {}
    for name, shape, kind in parameter_specs(cfg):
        if kind == "embedding":
            t = torch.randn(shape, generator=gen) * mc["embedding_init_std"]
        elif kind == "matrix":
            t = torch.randn(shape, generator=gen) * mc["init_std"]
        elif kind == "residual":
            t = torch.randn(shape, generator=gen) * residual_std
        elif kind == "gain":
            t = 1.0 + (0.1 * torch.randn(shape, generator=gen) if perturb else torch.zeros(shape))
        else:
            t = 0.02 * torch.randn(shape, generator=gen) if perturb else torch.zeros(shape)
        params[name] = t.float()
    return params


def decays(name, kind, opt):
    if "embedding" in name:
        return opt["decay_embeddings"]
    if kind in ("gain", "bias"):
        return opt["decay_norms_and_biases"]
    return True


# ---------------------------------------------------------------------------------------------
# The model.

def norm(cfg, x, p, prefix):
    mc = cfg["model"]
    if mc["norm"] == "layernorm":
        return F.layer_norm(x, (x.shape[-1],), p[prefix + ".weight"], p[prefix + ".bias"], mc["norm_eps"])
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + mc["norm_eps"]) * p[prefix + ".weight"]


def rope(x):  # [B, H, T, Dh], rotate-half form
    T, Dh = x.shape[2], x.shape[3]
    half = Dh // 2
    i = torch.arange(Dh, dtype=torch.float64) % half
    angle = torch.arange(T, dtype=torch.float64)[:, None] * torch.pow(10000.0, -2.0 * i / Dh)[None, :]
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * angle.cos().to(x.dtype) + rotated * angle.sin().to(x.dtype)


def attention(cfg, x, p, prefix):
    B, T, C = x.shape
    H = cfg["model"]["n_heads"]
    qkv = F.linear(x, p[prefix + ".qkv.weight"], p[prefix + ".qkv.bias"])
    q, k, v = (t.reshape(B, T, H, C // H).transpose(1, 2) for t in qkv.split(C, dim=-1))
    if cfg["model"]["position"] == "rope":
        q, k = rope(q), rope(k)
    scores = q @ k.transpose(-1, -2) / math.sqrt(C // H)
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    a = torch.softmax(scores.masked_fill(~causal, float("-inf")), dim=-1) @ v
    return F.linear(a.transpose(1, 2).reshape(B, T, C), p[prefix + ".proj.weight"], p[prefix + ".proj.bias"])


def mlp(cfg, x, p, prefix):
    if cfg["model"]["activation"] == "gelu":
        h = F.gelu(F.linear(x, p[prefix + ".fc1.weight"], p[prefix + ".fc1.bias"]), approximate="tanh")
        return F.linear(h, p[prefix + ".fc2.weight"], p[prefix + ".fc2.bias"])
    h = F.silu(F.linear(x, p[prefix + ".gate_proj.weight"])) * F.linear(x, p[prefix + ".up_proj.weight"])
    return F.linear(h, p[prefix + ".down_proj.weight"])


def kept_slots(cfg, r, N):
    """Per expert, the assignment indices that survive capacity, in token order."""
    moe = cfg["moe"]
    E, k = moe["num_experts"], moe["top_k"]
    per_expert = [[] for _ in range(E)]
    for m, e in enumerate(r["expert"]):
        per_expert[e].append(m)
    # capacity "required": the router's own selection is the capacity, nothing dropped afterwards
    if ROUTER_TABLE[moe["router"]].capacity == "required" or moe["capacity_factor"] <= 0:
        return per_expert
    C = math.ceil(moe["capacity_factor"] * N * k / E)
    gate = r["gate"].detach().tolist()
    out = []
    for lst in per_expert:
        if moe["drop_policy"] == "score":
            lst = sorted(sorted(lst, key=lambda m: -gate[m])[:C])
        out.append(lst[:C])
    return out


def moe_layer(cfg, h, p, prefix, token_ids, bias, draws, training):
    B, T, d = h.shape
    x = h.reshape(-1, d)
    r = route(cfg, x, p, prefix, token_ids, bias, draws, training)
    y = torch.zeros_like(x)
    for e, slots in enumerate(kept_slots(cfg, r, x.shape[0])):
        if not slots:
            continue
        tokens = torch.tensor([r["token"][m] for m in slots])
        out = mlp(cfg, x[tokens], p, f"{prefix}.experts.{e}") * r["gate"][torch.tensor(slots)][:, None]
        y = y.index_add(0, tokens, out)
    for s in range(cfg["moe"]["num_shared_experts"]):
        y = y + mlp(cfg, x, p, f"{prefix}.shared_experts.{s}")
    return y.reshape(B, T, d), r


def _check_functions():
    """Every table entry has its function (routers here, losses in torch_losses.py) and every function its entry."""
    for table, funcs, prefix, dict_name, def_path, module in (
            (ROUTER_TABLE, ROUTERS, "route_", "ROUTERS", ROUTERS_DEF, "torch_routers.py"),
            (LOSS_TABLE, LOSSES, "loss_", "LOSSES", LOSSES_DEF, "torch_losses.py")):
        what = "router" if funcs is ROUTERS else "balance loss"
        rel = os.path.relpath(def_path, os.path.join(MODELS_DIR, ".."))
        for key in table:
            if key not in funcs:
                raise SystemExit(f"torch_reference: {what} {key} ({rel}) has no PyTorch function: define "
                                 f"{prefix}{key}() in tools/{module} and add \"{key}\": {prefix}{key} "
                                 f"to {dict_name}")
        for key in funcs:
            if key not in table:
                raise SystemExit(f"torch_reference: {dict_name}[\"{key}\"] is not a {what} of {rel}")


_check_functions()


def balance_terms(cfg, r, B, T):
    """One MoE layer's terms, in the table's order; the ones the routing does not provide are absent."""
    out = {}
    for key in LOSS_NAMES:
        value = LOSSES[key](cfg, r, B, T)
        if value is not None:
            out[key] = value
    return out


def forward(cfg, p, inputs, targets, biases, draws, step, training=True):
    """The model at optimizer step `step` (1-based): the balance losses weigh in with that step's
    coefficients. draws: MoE layer prefix -> {"noise", "jitter"} (training only). In evaluation the
    routers run without draws at moe.eval_capacity_factor where it is >= 0."""
    if not training and cfg["moe"]["eval_capacity_factor"] >= 0:
        cfg = merge(cfg, {"moe": {"capacity_factor": cfg["moe"]["eval_capacity_factor"]}})
    mc = cfg["model"]
    B, T = inputs.shape
    x = p["tok_embedding.weight"][inputs]
    if mc["position"] == "learned":
        x = x + p["pos_embedding.weight"][:T]
    ids = inputs.reshape(-1).tolist()
    routings = []
    for l in range(mc["n_layers"]):
        pre = f"layers.{l}"
        x = x + attention(cfg, norm(cfg, x, p, pre + ".norm1"), p, pre + ".attn")
        h = norm(cfg, x, p, pre + ".norm2")
        if is_moe_layer(cfg, l):
            y, r = moe_layer(cfg, h, p, pre + ".moe", ids, biases[pre], draws.get(pre, {}), training)
            routings.append(r)
            x = x + y
        else:
            x = x + mlp(cfg, h, p, pre + ".mlp")
    x = norm(cfg, x, p, "norm_f")
    logits = x @ (p["tok_embedding.weight"] if mc["tie_embeddings"] else p["lm_head.weight"]).t()
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
    terms, total = {}, ce
    per_layer = [balance_terms(cfg, r, B, T) for r in routings]
    for name in LOSS_NAMES:
        values = [t[name] for t in per_layer if name in t]
        if not values:
            continue
        terms[name] = sum(values) / len(routings)
        coef = schedule_at(cfg["moe"]["losses"][name], step)
        if coef > 0:
            total = total + coef * terms[name]
    return logits, total, ce, terms, routings


def lr_at(cfg, step):
    s, base = cfg["schedule"], cfg["optimizer"]["lr"]
    total = s["total_steps"] or cfg["training"]["steps"]
    warm = s["warmup_steps"]
    if step <= warm:
        return base * step / warm
    if s["decay"] == "constant":
        return base
    low = base * s["min_lr_ratio"]
    if step >= total:
        return low
    return low + (base - low) * 0.5 * (1 + math.cos(math.pi * (step - warm) / (total - warm)))


SCHEDULE_KEYS = {"constant": ("value",), "linear": ("from", "to", "steps", "start"), "warmup": ("value", "steps")}


def schedule_at(value, step):
    """A balancing strength at optimizer step `step` (1-based): a number, or a schedule map as the
    engine reads it (tools/lib/config/schedule.h; configs/README.md, "Schedules"). The same
    operations in the same order as Schedule::at, so the values agree to the last bit."""
    if not isinstance(value, dict):
        return float(value)
    kind = value.get("schedule")
    if kind not in SCHEDULE_KEYS:
        raise SystemExit(f"torch_reference: unknown schedule {kind!r} (allowed: {', '.join(SCHEDULE_KEYS)})")
    unknown = set(value) - {"schedule", *SCHEDULE_KEYS[kind]}
    if unknown:
        raise SystemExit(f"torch_reference: a {kind} schedule has no key {', '.join(sorted(unknown))}")
    if kind == "constant":
        return float(value["value"])
    if kind == "warmup":  # the linear ramp from 0 that starts at step 0
        frm, to, steps, start = 0.0, float(value["value"]), int(value["steps"]), 0
    else:
        frm, to, steps, start = float(value["from"]), float(value["to"]), int(value["steps"]), int(value.get("start", 0))
    if step <= start:
        return frm
    if step >= start + steps:
        return to
    return frm + (to - frm) * float(step - start) / float(steps)


def schedule_peak(value):
    """The largest value a number or schedule takes: whether the loss is on at all."""
    if not isinstance(value, dict):
        return float(value)
    if value.get("schedule") == "linear":
        return max(float(value["from"]), float(value["to"]))
    return float(value.get("value", 0.0))


def update_bias(cfg, bias, counts, step):
    """The loss-free bias update after optimizer step `step`, at that step's rate."""
    u = schedule_at(cfg["moe"]["bias_update_rate"], step)
    if u <= 0:
        return bias
    mean = counts.mean()
    return (np.asarray(bias, dtype=np.float32) + np.float32(u) * np.sign(mean - counts).astype(np.float32)).astype(
        np.float32)


# ---------------------------------------------------------------------------------------------

def check_router_rules(cfg):
    """The rules of routers.def and losses.def that the engine enforces on a config."""
    moe = cfg["moe"]
    kind = moe["router"]
    if kind not in ROUTER_TABLE:
        raise SystemExit(f"torch_reference: unknown router {kind} (routers.def has {', '.join(ROUTER_TABLE)})")
    rule = ROUTER_TABLE[kind]
    if rule.experts_per_token == "one" and moe["top_k"] != 1:
        raise SystemExit(f"torch_reference: router {kind} takes exactly one expert per token: moe.top_k must be 1")
    if rule.capacity == "required" and moe["capacity_factor"] <= 0:
        raise SystemExit(f"torch_reference: router {kind} needs moe.capacity_factor > 0")
    for key, coef in moe["losses"].items():
        if key not in LOSS_TABLE:
            raise SystemExit(f"torch_reference: moe.losses.{key}: not a balance loss (losses.def has "
                             f"{', '.join(LOSS_NAMES)})")
        if schedule_peak(coef) > 0 and LOSS_TABLE[key].needs not in router_provides(kind):
            raise SystemExit(f"torch_reference: moe.losses.{key} needs the router's {LOSS_TABLE[key].needs}, "
                             f"which router {kind} does not provide")
    for key, option in OPTION_TABLE.items():
        if moe[key] != option.default and not router_takes(kind, key):
            raise SystemExit(f"torch_reference: moe.{key}: router {kind} does not take it")


def make_reference(cfg, out_path, steps, seed, perturb, dtype):
    mc, moe, tr = cfg["model"], cfg["moe"], cfg["training"]
    check_router_rules(cfg)
    if mc["dropout"] != 0:
        raise SystemExit("torch_reference: model.dropout must be 0 (dropout masks are not carried)")
    if tr["grad_accum"] != 1:
        raise SystemExit("torch_reference: training.grad_accum must be 1 (one batch per step)")
    gen = torch.Generator().manual_seed(seed)
    B, T, V = tr["batch_size"], tr["seq_len"], mc["vocab_size"]
    params32 = init_parameters(cfg, gen, perturb)
    tokens = torch.randint(0, V, (B, T + 1), generator=gen)
    inputs, targets = tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()
    moe_prefixes = [f"layers.{l}" for l in range(mc["n_layers"]) if is_moe_layer(cfg, l)]
    noise = {}
    if ROUTER_TABLE[moe["router"]].weights == "gate_noise":
        for pre in moe_prefixes:
            noise[pre] = torch.randn(max(steps, 1), B * T, moe["num_experts"], generator=gen).float()
    jitter = {}  # the multipliers u ~ U(1 - eps, 1 + eps) of each step's router input
    if moe["input_jitter"] > 0:
        eps = moe["input_jitter"]
        for pre in moe_prefixes:
            u = torch.rand(max(steps, 1), B * T, mc["d_model"], generator=gen, dtype=torch.float64)
            jitter[pre] = (1 - eps + 2 * eps * u).float()

    specs = {name: kind for name, _, kind in parameter_specs(cfg)}
    p = {n: t.to(dtype).requires_grad_(True) for n, t in params32.items()}
    biases = {pre: np.zeros(moe["num_experts"], dtype=np.float32) for pre in moe_prefixes}
    step_draws = lambda s: {pre: {"noise": noise[pre][s] if pre in noise else None,
                                  "jitter": jitter[pre][s] if pre in jitter else None} for pre in moe_prefixes}

    with torch.no_grad():
        eval_logits, _, eval_ce, _, _ = forward(cfg, p, inputs, targets, biases, {}, 1, training=False)
    logits, total, ce, terms, _ = forward(cfg, p, inputs, targets, biases, step_draws(0), 1)
    total.backward()
    grads = {n: (t.grad if t.grad is not None else torch.zeros_like(t)).detach().clone() for n, t in p.items()}

    # S training steps on this batch, as moe-train runs them: backward, clip, AdamW, bias update;
    # step s + 1's balancing strength for its loss and for the bias update after it.
    opt = cfg["optimizer"]
    groups = [{"params": [p[n] for n in p if decays(n, specs[n], opt)], "weight_decay": opt["weight_decay"]},
              {"params": [p[n] for n in p if not decays(n, specs[n], opt)], "weight_decay": 0.0}]
    adamw = torch.optim.AdamW(groups, lr=opt["lr"], betas=(opt["beta1"], opt["beta2"]), eps=opt["eps"])
    step_losses = []
    for s in range(steps):
        adamw.zero_grad(set_to_none=True)
        _, loss, _, _, routings = forward(cfg, p, inputs, targets, biases, step_draws(s), s + 1)
        loss.backward()
        step_losses.append(loss.item())
        if opt["grad_clip"] > 0:
            torch.nn.utils.clip_grad_norm_([t for t in p.values() if t.grad is not None], opt["grad_clip"])
        for g in adamw.param_groups:
            g["lr"] = lr_at(cfg, s + 1)
        adamw.step()
        for pre, r in zip(moe_prefixes, routings):
            biases[pre] = update_bias(cfg, biases[pre], r["counts"], s + 1)

    tmp = out_path + ".tmp"
    import h5py  # here, not at the top: bench_torch.py imports this file and needs no h5py

    with h5py.File(tmp, "w") as f:
        f.attrs["config"] = yaml.safe_dump(cfg, sort_keys=False)
        f.attrs["format"] = "moe-engine reference 1"
        f.attrs["generator"] = f"tools/torch_reference.py, torch {torch.__version__}, {str(dtype).split('.')[-1]}"
        z = {}  # contiguous storage: chunk indexes would cost more than these small tensors save
        for n, t in params32.items():
            f.create_dataset("params/" + n, data=t.numpy(), **z)
        f.create_dataset("batch/inputs", data=inputs.numpy().astype(np.int32))
        f.create_dataset("batch/targets", data=targets.numpy().astype(np.int32))
        for pre, t in noise.items():
            f.create_dataset("noise/" + pre, data=t.numpy(), **z)
        for pre, t in jitter.items():
            f.create_dataset("jitter/" + pre, data=t.numpy(), **z)
        f.create_dataset("expected/eval/logits", data=eval_logits.float().numpy(), **z)
        f.create_dataset("expected/eval/loss", data=np.float32(eval_ce.item()))
        f.create_dataset("expected/logits", data=logits.detach().float().numpy(), **z)
        f.create_dataset("expected/loss/total", data=np.float32(total.item()))
        f.create_dataset("expected/loss/ce", data=np.float32(ce.item()))
        for name, v in terms.items():
            f.create_dataset("expected/loss/" + name, data=np.float32(v.item()))
        for n, g in grads.items():
            f.create_dataset("expected/grads/" + n, data=g.float().numpy(), **z)
        f.create_dataset("expected/steps/loss", data=np.array(step_losses, dtype=np.float32))
    os.replace(tmp, out_path)
    return total.item(), terms


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", help="a moe-train YAML config")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    ap.add_argument("--out", help="the reference file to write")
    ap.add_argument("--steps", type=int, default=5, help="AdamW steps recorded in /expected/steps/loss")
    ap.add_argument("--seed", type=int, default=1234, help="seed of the parameters, batch and noise")
    ap.add_argument("--no-perturb", action="store_true", help="keep norm gains at 1 and biases at 0")
    ap.add_argument("--float32", action="store_true", help="compute the reference in float32, not float64")
    ap.add_argument("--suite", metavar="DIR", help="write the committed reference set into DIR")
    ap.add_argument("--only", nargs="+", metavar="NAME",
                    help="with --suite: write only these suite entries (names without .h5; shell-style patterns "
                         "such as 'expert_choice_*' allowed)")
    a = ap.parse_args()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    dtype = torch.float32 if a.float32 else torch.float64
    if a.only and not a.suite:
        ap.error("--only needs --suite DIR")
    if a.suite:
        from reference_suite import suite  # here: it imports this module

        entries = suite()
        if a.only:
            unmatched = [pat for pat in a.only if not any(fnmatch.fnmatchcase(n, pat) for n in entries)]
            if unmatched:
                ap.error(f"--only {' '.join(unmatched)}: no such suite entry; the suite has {', '.join(entries)}")
            entries = {n: c for n, c in entries.items() if any(fnmatch.fnmatchcase(n, pat) for pat in a.only)}
        os.makedirs(a.suite, exist_ok=True)
        for name, cfg in entries.items():
            cfg = merge(DEFAULTS, cfg)
            total, terms = make_reference(cfg, os.path.join(a.suite, name + ".h5"), a.steps, a.seed, not a.no_perturb,
                                          dtype)
            print(f"{name}: loss {total:.6f} " + " ".join(f"{k} {v.item():.5f}" for k, v in terms.items()))
        return
    if not a.config or not a.out:
        ap.error("--config and --out are required (or --suite DIR)")
    with open(a.config) as fh:
        user = yaml.safe_load(fh) or {}
    for key in ("data", "logging", "checkpointing", "device"):
        user.pop(key, None)  # not part of the model or the step; the engine uses its defaults
    for item in a.set:
        apply_override(user, item)
    cfg = merge(DEFAULTS, user)
    total, terms = make_reference(cfg, a.out, a.steps, a.seed, not a.no_perturb, dtype)
    print(f"wrote {a.out}: loss {total:.6f} " + " ".join(f"{k} {v.item():.5f}" for k, v in terms.items()))


if __name__ == "__main__":
    sys.exit(main())
