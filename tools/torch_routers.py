"""The routers of the PyTorch reference (tools/torch_reference.py), one function per entry of
models/routers/routers.def, and the routing options of models/routers/options.def, written from the
definitions in models/README.md.

route_KEY(cfg, x, p, prefix, token_ids, bias, noise, training) -> the routing r: r["expert"], r["token"],
r["gate"] (differentiable) per assignment before drops, and what the losses read: r["probs"] (p),
r["logits"] (z, or None), r["load_probs"] (P_ti, or None). x [N, d] (jittered already); prefix
"layers.<l>.moe"; bias [E] the loss-free bias (selects, never weighs); noise [N, E] the standard-normal
draws (noisy routing, training) or None. route() applies the options that act on every router.
"""
import math

import numpy as np
import torch
import torch.nn.functional as F

from moe_tables import ROUTER_TABLE


def _routing():
    return {"logits": None, "probs": None, "load_probs": None}


def _group_mask(biased, groups, keep):
    """0 where a token may choose, -inf outside its `keep` best groups (a group ranks by the sum of its
    two largest biased scores; ties to the lower group)."""
    N, E = biased.shape
    size = E // groups
    mask = torch.full((N, E), float("-inf"), dtype=biased.dtype)
    for t in range(N):
        ranks = [sum(sorted(biased[t, g * size:(g + 1) * size].tolist(), reverse=True)[:2]) for g in range(groups)]
        for g in sorted(range(groups), key=lambda g: -ranks[g])[:keep]:
            mask[t, g * size:(g + 1) * size] = 0.0
    return mask


def _select(cfg, scores, bias, k):
    """The selection [N, k] of a token-choice router: top-k of scores + bias within each token's best
    expert groups, or the forced round robin (t k + j) mod E."""
    moe = cfg["moe"]
    N, E = scores.shape
    if moe["force_balance"]:
        return torch.tensor([[(t * k + j) % E for j in range(k)] for t in range(N)])
    biased = (scores + torch.tensor(bias, dtype=scores.dtype)).detach()
    groups, keep = moe["expert_groups"], moe["topk_groups"] or moe["expert_groups"]
    if groups > 1 and keep < groups:
        biased = biased + _group_mask(biased, groups, keep)
    return torch.topk(biased, k, dim=-1).indices  # the bias picks


def _token_choice(r, scores, bias, k, gates_from, cfg):
    """Each token takes its k best scores + bias (_select); gates_from(selected [N, k]) gives their gates."""
    N = scores.shape[0]
    sel = _select(cfg, scores, bias, k)
    gates = gates_from(sel)
    r["expert"] = sel.reshape(-1).tolist()
    r["token"] = [m // k for m in range(N * k)]
    r["gate"] = gates.reshape(-1)
    return r


def route_topk_softmax(cfg, x, p, prefix, token_ids, bias, noise, training):
    moe, r = cfg["moe"], _routing()
    r["logits"] = F.linear(x, p[prefix + ".router.weight"])
    r["probs"] = torch.softmax(r["logits"], dim=-1)
    if moe["softmax_order"] == "after_topk":  # top-k of the logits, softmax over the k (Mixtral)
        return _token_choice(r, r["logits"], bias, moe["top_k"],
                             lambda sel: torch.softmax(r["logits"].gather(1, sel), dim=-1), cfg)

    def gates(sel):
        g = r["probs"].gather(1, sel)
        return g / g.sum(-1, keepdim=True) if moe["normalize_topk"] else g
    return _token_choice(r, r["probs"], bias, moe["top_k"], gates, cfg)


def route_switch(cfg, x, p, prefix, token_ids, bias, noise, training):
    return route_topk_softmax(cfg, x, p, prefix, token_ids, bias, noise, training)  # top_k 1 (the table's rule)


def route_sigmoid_topk(cfg, x, p, prefix, token_ids, bias, noise, training):
    r = _routing()
    r["logits"] = F.linear(x, p[prefix + ".router.weight"])
    scores = torch.sigmoid(r["logits"])
    r["probs"] = scores / scores.sum(-1, keepdim=True)

    def gates(sel):
        g = scores.gather(1, sel)
        return g / g.sum(-1, keepdim=True)
    return _token_choice(r, scores, bias, cfg["moe"]["top_k"], gates, cfg)


def route_noisy_topk(cfg, x, p, prefix, token_ids, bias, noise, training):
    E, k, r = cfg["moe"]["num_experts"], cfg["moe"]["top_k"], _routing()
    N = x.shape[0]
    r["logits"] = F.linear(x, p[prefix + ".router.weight"])
    r["probs"] = torch.softmax(r["logits"], dim=-1)
    if noise is None:  # evaluation: no noise, as in the engine
        H = r["logits"]
        return _token_choice(r, H, bias, k, lambda sel: torch.softmax(H.gather(1, sel), dim=-1), cfg)
    noise_std = F.softplus(F.linear(x, p[prefix + ".router.noise.weight"]))
    H = r["logits"] + noise.to(x.dtype) * noise_std
    _token_choice(r, H, bias, k, lambda sel: torch.softmax(H.gather(1, sel), dim=-1), cfg)
    if k < E:  # P(expert i kept under fresh noise), the k-th largest of H without i as threshold
        top = torch.topk(H, k + 1, dim=-1).values
        kth, nxt = top[:, k - 1:k], top[:, k:k + 1]
        chosen = torch.zeros(N, E, dtype=torch.bool)
        chosen[torch.tensor(r["token"]), torch.tensor(r["expert"])] = True
        threshold = torch.where(chosen, nxt, kth)
        r["load_probs"] = torch.distributions.Normal(0.0, 1.0).cdf((r["logits"] - threshold) / noise_std)
    return r


def route_expert_choice(cfg, x, p, prefix, token_ids, bias, noise, training):
    moe, r = cfg["moe"], _routing()
    E, k, N = moe["num_experts"], moe["top_k"], x.shape[0]
    r["logits"] = F.linear(x, p[prefix + ".router.weight"])
    r["probs"] = torch.softmax(r["logits"], dim=-1)
    C = min(N, math.ceil(moe["capacity_factor"] * N * k / E))
    picks = torch.topk(r["probs"].t(), C, dim=-1)
    r["token"] = picks.indices.reshape(-1).tolist()
    r["expert"] = [m // C for m in range(E * C)]
    r["gate"] = picks.values.reshape(-1)
    return r


def hash_expert(token, E):
    return ((int(token) * 2654435761) >> 7) % E


def sinkhorn_assignment(z, iterations):
    """The balanced assignment diag(row) K diag(col), K = exp(z - row max): rows sum to 1, columns to
    N/E after the last (column) normalization; sums floored at the smallest normal double."""
    K = torch.exp(z - z.max(-1, keepdim=True).values).to(torch.float64)
    N, E = K.shape
    col, floor = torch.ones(E, dtype=torch.float64), torch.finfo(torch.float64).tiny
    for _ in range(iterations):
        row = 1.0 / (K @ col).clamp_min(floor)
        col = (N / E) / (row @ K).clamp_min(floor)
    return K * row[:, None] * col[None, :]


def route_sinkhorn(cfg, x, p, prefix, token_ids, bias, noise, training):
    moe, r = cfg["moe"], _routing()
    r["logits"] = F.linear(x, p[prefix + ".router.weight"])
    r["probs"] = torch.softmax(r["logits"], dim=-1)
    chooser = sinkhorn_assignment(r["logits"].detach(), moe["sinkhorn_iterations"]) if training else r["probs"]

    def gates(sel):
        g = r["probs"].gather(1, sel)
        return g / g.sum(-1, keepdim=True) if moe["normalize_topk"] else g
    return _token_choice(r, chooser, [0.0] * moe["num_experts"], moe["top_k"], gates, cfg)  # no bias


def route_hash(cfg, x, p, prefix, token_ids, bias, noise, training):
    E, N, r = cfg["moe"]["num_experts"], x.shape[0], _routing()
    experts = [hash_expert(t, E) for t in token_ids]
    r["probs"] = F.one_hot(torch.tensor(experts), E).to(x.dtype)
    r["expert"], r["token"] = experts, list(range(N))
    r["gate"] = torch.ones(N, dtype=x.dtype)
    return r


ROUTERS = {
    "topk_softmax": route_topk_softmax,
    "switch": route_switch,
    "noisy_topk": route_noisy_topk,
    "sigmoid_topk": route_sigmoid_topk,
    "expert_choice": route_expert_choice,
    "sinkhorn": route_sinkhorn,
    "hash": route_hash,
}


def route(cfg, x, p, prefix, token_ids, bias, draws, training):
    """The routing of moe.router (its function in ROUTERS) on the jittered input, gates times
    routed_scaling, plus r["counts"]: c_i before drops. draws: {"noise": eps, "jitter": u} of this layer."""
    kind, moe = cfg["moe"]["router"], cfg["moe"]
    if kind not in ROUTERS:
        raise SystemExit(f"torch_reference: unknown router {kind} (routers.def has {', '.join(ROUTER_TABLE)})")
    router_x = x * draws["jitter"].to(x.dtype) if training and moe["input_jitter"] > 0 else x
    r = ROUTERS[kind](cfg, router_x, p, prefix, token_ids, bias, draws.get("noise") if training else None, training)
    if moe["routed_scaling"] != 1.0:
        r["gate"] = r["gate"] * moe["routed_scaling"]
    r["counts"] = np.bincount(np.array(r["expert"], dtype=np.int64), minlength=cfg["moe"]["num_experts"])
    return r
