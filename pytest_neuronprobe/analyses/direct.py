"""The direct path: what one unit of a hook writes, linearly, into the hook a head reads (or why nothing does).

One rule for patching's `direct_slope` and attribution's direct-path estimates. A unit writes into:

- its own hook (the head reads the neuron's own hook): the unit vector;
- a hook computed before it (an earlier layer, or earlier in its block): nothing (zero);
- the residual stream after it (`hook_resid_pre/mid/post`), and its own layer's `hook_mlp_out` (an MLP
  neuron) or `hook_attn_out` (an attention head): `W_out[n]` (an MLP neuron; times the activation's
  derivative for a `pre` neuron), `W_O[h]` (an attention head, `[d_head, d_model]`), the unit vector (a
  residual-stream dimension);
- anything else (a later layer's `hook_mlp_out`, `mlp.hook_pre`, …): no direct path, only through later
  non-linear layers; :func:`write_of` says so in words.
"""

from __future__ import annotations

import torch

from pytest_neuronprobe.core.models import LoadedModel, hook_layer

RESIDUAL = ("hook_resid_pre", "hook_resid_mid", "hook_resid_post")
RESIDUAL_WRITERS = (*RESIDUAL, "hook_mlp_out", "hook_attn_out")
MLP_NEURONS = ("mlp.hook_post", "mlp.hook_pre")
HEADS = "attn.hook_z"
_ORDER = (
    "hook_resid_pre",
    "attn.hook_z",
    "hook_attn_out",
    "hook_resid_mid",
    "mlp.hook_pre",
    "mlp.hook_post",
    "hook_mlp_out",
    "hook_resid_post",
)


def reads_before(feature: str, unit_hook: str) -> bool:
    """Whether `feature` is computed before `unit_hook` (so editing the unit cannot reach it)."""
    f_layer, n_layer = hook_layer(feature), hook_layer(unit_hook)
    if f_layer is None or n_layer is None:
        return False
    if f_layer != n_layer:
        return f_layer < n_layer

    def rank(hook: str) -> int:
        return next((i for i, s in enumerate(_ORDER) if hook.endswith(s)), len(_ORDER))

    return rank(feature) < rank(unit_hook)


def write_of(model: LoadedModel, feature: str, unit_hook: str, index: int) -> torch.Tensor | float | str:
    """What one unit (`unit_hook`, unit `index`) adds to `feature` along the direct path.

    A tensor (`[d_feature]`; `[d_head, d_feature]` for an attention head), ``0.0`` where the feature is
    computed before the unit, or the reason (a sentence) where no direct linear path exists. For a `pre`
    neuron the caller multiplies by the activation's derivative (:func:`act_derivative`).
    """
    same_layer = hook_layer(feature) == hook_layer(unit_hook)
    if feature == unit_hook:
        write = torch.zeros(_width(model, feature), device=model.device)
        write[index] = 1.0
        return write
    if reads_before(feature, unit_hook):
        return 0.0
    layer = hook_layer(unit_hook)
    own_out = same_layer and (
        (unit_hook.endswith(MLP_NEURONS) and feature.endswith("hook_mlp_out"))
        or (unit_hook.endswith(HEADS) and feature.endswith("hook_attn_out"))
    )
    if layer is not None and (feature.endswith(RESIDUAL) or own_out):
        if unit_hook.endswith(MLP_NEURONS):
            return model.W_out(layer)[index].float()
        if unit_hook.endswith(HEADS):
            return model.bridge.blocks[layer].attn.W_O.detach()[index].float()  # type: ignore[no-any-return]
        if unit_hook.endswith(RESIDUAL_WRITERS) and feature.endswith(RESIDUAL):
            write = torch.zeros(model.d_model, device=model.device)
            write[index] = 1.0
            return write
    return (
        f"no direct path from {unit_hook} to {feature}: the feature is computed from it only through later "
        "non-linear layers (LayerNorm, attention, MLP)"
    )


def _width(model: LoadedModel, hook: str) -> int:
    return model.d_mlp if hook.endswith(MLP_NEURONS) else model.d_model


def act_derivative(act_fn: str | None, pre: torch.Tensor) -> torch.Tensor:
    """d act(pre) / d pre for GPT-2's activations; NaN for one we do not know."""
    approximate = {"gelu_new": "tanh", "gelu_pytorch_tanh": "tanh", "gelu_fast": "tanh", "gelu": "none"}
    if act_fn not in approximate:
        return torch.full_like(pre, float("nan"))
    with torch.inference_mode(False), torch.enable_grad():
        p = pre.detach().clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(torch.nn.functional.gelu(p, approximate=approximate[act_fn]).sum(), p)
    return grad
