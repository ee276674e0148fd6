"""The balance losses of the PyTorch reference (tools/torch_reference.py), one function per entry of
models/balance/losses.def, written from the formulas in models/README.md.

loss_KEY(cfg, r, B, T) -> one MoE layer's term (a scalar tensor), or None where the routing does not
provide it (the term is then absent). r is the layer's routing (torch_reference.route): r["expert"],
r["token"], r["gate"] per assignment before drops, r["counts"] (c_i), r["probs"] (p), r["logits"]
(z, or None), r["load_probs"] (P_ti, or None); B sequences of T tokens, N = B T.
"""
import torch


def cv_squared(v):
    m = v.mean()
    return ((v - m) ** 2).mean() / (m * m + 1e-10)


def loss_switch_aux(cfg, r, B, T):
    """E sum_i f_i P_i, f_i = c_i / (N k) for every router (expert_choice too), P_i = mean_t p_ti."""
    if r["probs"] is None or not r["expert"]:
        return None
    E, k = cfg["moe"]["num_experts"], cfg["moe"]["top_k"]
    f = torch.tensor(r["counts"] / (B * T * k), dtype=r["probs"].dtype)
    return E * (f * r["probs"].mean(0)).sum()


def loss_importance(cfg, r, B, T):
    if not r["expert"]:
        return None
    E = cfg["moe"]["num_experts"]
    return cv_squared(torch.zeros(E, dtype=r["gate"].dtype).index_add(0, torch.tensor(r["expert"]), r["gate"]))


def loss_load(cfg, r, B, T):
    return None if r["load_probs"] is None else cv_squared(r["load_probs"].sum(0))


def loss_z_loss(cfg, r, B, T):
    return None if r["logits"] is None else (torch.logsumexp(r["logits"], dim=-1) ** 2).mean()


def loss_sequence_aux(cfg, r, B, T):
    """switch_aux within each sequence, f_bi = c_bi / (T k), averaged over the B sequences."""
    if r["probs"] is None or not r["expert"]:
        return None
    E, k = cfg["moe"]["num_experts"], cfg["moe"]["top_k"]
    fs = torch.zeros(B, E, dtype=r["probs"].dtype)
    for m in range(len(r["expert"])):
        fs[r["token"][m] // T, r["expert"][m]] += 1.0 / (T * k)
    return E / B * (fs * r["probs"].reshape(B, T, E).mean(1)).sum()


def device_groups(cfg):
    """The devices device_aux groups the experts into: moe.device_groups, or parallel.expert where it is 0."""
    groups = cfg["moe"].get("device_groups", 0)
    return groups if groups > 0 else (cfg.get("parallel") or {}).get("expert", 1)


def loss_device_aux(cfg, r, B, T):
    """DeepSeek-V2's device-level loss: D sum_d F_d P'_d over D devices of E/D contiguous experts (device d
    holds experts d E/D ... (d+1) E/D - 1), F_d and P'_d the sums over device d of switch_aux's f_i and P_i."""
    if r["probs"] is None or not r["expert"]:
        return None
    E, k, D = cfg["moe"]["num_experts"], cfg["moe"]["top_k"], device_groups(cfg)
    if D < 1 or E % D:
        raise SystemExit(f"torch_reference: {D} devices do not divide moe.num_experts = {E} (moe.device_groups)")
    f = torch.tensor(r["counts"] / (B * T * k), dtype=r["probs"].dtype)
    device_share = f.reshape(D, E // D).sum(1)
    device_prob = r["probs"].mean(0).reshape(D, E // D).sum(1)
    return D * (device_share * device_prob).sum()


LOSSES = {
    "switch_aux": loss_switch_aux,
    "importance": loss_importance,
    "load": loss_load,
    "z_loss": loss_z_loss,
    "sequence_aux": loss_sequence_aux,
    "device_aux": loss_device_aux,
}
