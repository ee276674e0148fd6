"""The committed reference suite: the configs that `torch_reference.py --suite DIR` writes.

suite() gives name -> config (before the defaults are merged in) for tests/data/reference/:
every router with each balance loss it supports, plus the model's options.
"""
from moe_tables import LOSS_NAMES, LOSS_TABLE, ROUTER_TABLE, router_provides
from torch_reference import merge

# The committed suite: every router with each balance loss it supports, plus the model's options
# (norms, positions, activations, shared experts, placement, capacity policies, loss-free bias).
SUITE_BASE = {
    "model": {"vocab_size": 48, "d_model": 16, "n_layers": 2, "n_heads": 2, "max_seq_len": 16, "d_ff": 24,
              "embedding_init_std": 0.5, "init_std": 0.2},
    "moe": {"num_experts": 4, "top_k": 2, "d_expert": 12},
    "optimizer": {"lr": 1e-2},
    "schedule": {"warmup_steps": 2},
    "training": {"steps": 6, "batch_size": 2, "seq_len": 12},
}


def suite_router(key):
    """A router's suite settings from its table rules: top_k 1 for `one`, capacity 1.0 where `required`."""
    rule = ROUTER_TABLE[key]
    moe = {"router": key}
    if rule.experts_per_token == "one":
        moe["top_k"] = 1
    if rule.capacity == "required":
        moe["capacity_factor"] = 1.0
    return moe


SUITE_ROUTERS = {key: suite_router(key) for key in ROUTER_TABLE}  # in the table's order
# Routers whose selection is the capacity (capacity `required`) are also checked at these factors,
# as ROUTER_NAME__LOSS, e.g. expert_choice_half_capacity__switch_aux.
SUITE_CAPACITIES = {"half_capacity": 0.5, "double_capacity": 2.0}
SUITE_OPTIONS = {  # checked with every loss the router supports on at once
    "topk_softmax_normalized_capacity_position": {
        "moe": {"router": "topk_softmax", "normalize_topk": True, "capacity_factor": 1.0}},
    "topk_softmax_capacity_score_bias": {
        "moe": {"router": "topk_softmax", "capacity_factor": 1.0, "drop_policy": "score", "bias_update_rate": 0.05}},
    "switch_capacity_score": {"moe": {"router": "switch", "top_k": 1, "capacity_factor": 1.25, "drop_policy": "score"}},
    "noisy_topk_capacity_bias": {"moe": {"router": "noisy_topk", "capacity_factor": 1.0, "bias_update_rate": 0.05}},
    "sigmoid_topk_bias": {"moe": {"router": "sigmoid_topk", "bias_update_rate": 0.05}},
    "rmsnorm_rope_swiglu_shared_untied": {
        "model": {"norm": "rmsnorm", "position": "rope", "activation": "swiglu", "tie_embeddings": False,
                  "n_layers": 3},
        "moe": {"num_shared_experts": 1, "d_shared": 8, "layers": "every_n", "every_n": 2}},
    "first_dense_fine_grained": {
        "model": {"n_layers": 3}, "moe": {"first_dense": 1, "num_experts": 8, "top_k": 4, "d_expert": 6}},
    # The routing options of models/routers/options.def, each in at least one set.
    "topk_softmax_after_topk_jitter_scaled_bias": {
        "moe": {"router": "topk_softmax", "softmax_order": "after_topk", "input_jitter": 0.1, "routed_scaling": 2.5,
                "bias_update_rate": 0.05}},
    "sigmoid_topk_groups_scaled_bias": {
        "moe": {"router": "sigmoid_topk", "num_experts": 8, "top_k": 2, "expert_groups": 4, "topk_groups": 2,
                "routed_scaling": 2.5, "bias_update_rate": 0.05}},
    "noisy_topk_groups_jitter": {
        "moe": {"router": "noisy_topk", "expert_groups": 2, "topk_groups": 1, "input_jitter": 0.2}},
    "switch_eval_capacity": {
        "moe": {"router": "switch", "top_k": 1, "capacity_factor": 0.75, "eval_capacity_factor": 2.0,
                "drop_policy": "score"}},
    "expert_choice_eval_capacity": {
        "moe": {"router": "expert_choice", "capacity_factor": 1.0, "eval_capacity_factor": 0.5}},
    "topk_softmax_force_balance": {
        "moe": {"router": "topk_softmax", "force_balance": True, "normalize_topk": True, "capacity_factor": 1.0}},
    "sinkhorn_normalized_jitter_one_iteration": {
        "moe": {"router": "sinkhorn", "normalize_topk": True, "input_jitter": 0.1, "sinkhorn_iterations": 1}},
}
# Balancing strength that follows schedules (configs/README.md, "Schedules"), each changing within the
# recorded steps (--steps, 5 by default): switch_aux annealed from step 2 to 4, a warm-up of z_loss over
# 4 steps, and the bias update rate annealed to 0. Checked as given, not with every loss on.
SUITE_SCHEDULED = {
    "topk_softmax_scheduled_losses_bias": {"moe": {
        "router": "topk_softmax",
        "losses": {"switch_aux": {"schedule": "linear", "from": 0.2, "to": 0.02, "steps": 3, "start": 1},
                   "z_loss": {"schedule": "warmup", "value": 0.02, "steps": 4}},
        "bias_update_rate": {"schedule": "linear", "from": 0.05, "to": 0.0, "steps": 4}}},
}
# Coefficients large enough that each term visibly moves the gradients: 0.1 unless listed here.
SUITE_LOSSES = {key: {"z_loss": 0.01}.get(key, 0.1) for key in LOSS_NAMES}
# moe settings a loss is checked with wherever it is on: device_aux over 2 devices (it is the constant 1
# on the default single device), which divides the suite's 4 and 8 experts.
SUITE_LOSS_SETTINGS = {"device_aux": {"device_groups": 2}}


def with_losses(cfg, names):
    """cfg with these losses on at their suite coefficients, and the settings they are checked with."""
    moe = {"losses": {n: SUITE_LOSSES[n] for n in names}}
    for n in names:
        moe.update(SUITE_LOSS_SETTINGS.get(n, {}))
    return merge(cfg, {"moe": moe})


def supported_losses(router):
    """The losses (table order) whose input the router provides (logits: not hash; noise: noisy_topk)."""
    provides = router_provides(router)
    return [n for n in LOSS_NAMES if LOSS_TABLE[n].needs in provides]


def suite():
    """name -> config: each router with CE only and with each balance loss alone (capacity `required`
    routers also at SUITE_CAPACITIES), then the options, then the schedules."""
    out = {}
    for router, moe in SUITE_ROUTERS.items():
        variants = {router: moe}
        if ROUTER_TABLE[router].capacity == "required":
            variants.update({f"{router}_{name}": dict(moe, capacity_factor=cf)
                             for name, cf in SUITE_CAPACITIES.items()})
        for prefix, over in variants.items():
            base = merge(SUITE_BASE, {"moe": over})
            out[prefix + "__ce_only"] = base
            for name in supported_losses(router):
                out[f"{prefix}__{name}"] = with_losses(base, [name])
    for option, over in SUITE_OPTIONS.items():
        cfg = merge(SUITE_BASE, over)
        out[option + "__all_losses"] = with_losses(cfg, supported_losses(cfg["moe"].get("router", "topk_softmax")))
    for name, over in SUITE_SCHEDULED.items():
        out[name] = merge(SUITE_BASE, over)
    return out
