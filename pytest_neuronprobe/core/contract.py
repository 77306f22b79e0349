"""The model contract: the identities the analyses rely on, checked once per booted model.

The analyses read and patch TransformerLens hooks and assume they mean what their names say. Across
TransformerLens versions and architectures each of these has broken (``hook_mlp_out`` holding
residual-added states, ``hook_post`` of the wrong width, compatibility aliases firing after layer norm,
positions ignoring the attention mask), so before the first analysis of a model, on two short texts
batched with right padding, these must hold to :data:`RTOL` (relative to the compared values' size):

- ``resid_pre + attn_out = resid_mid`` and ``resid_mid + mlp_out = resid_post`` in every block;
- ``hook_post`` has ``d_mlp`` columns and ``hook_post @ W_out + b_out = mlp_out``;
- under ``raw`` processing, the bridge's logits equal the underlying Hugging Face model's;
- the read position of ``token_pos: last`` is each text's last real token: the batched, padded read
  equals the text read alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from pytest_neuronprobe.core.errors import NeuronProbeError
from pytest_neuronprobe.core.models import LoadedModel, batches, forward_read
from pytest_neuronprobe.core.tokens import encode, positions

__all__ = ["CONTRACT_TEXTS", "RTOL", "check_contract", "verify_contract"]

RTOL = 1e-4
#: Two texts of different lengths, so that the first is padded in their batch.
CONTRACT_TEXTS = ("The cat sat on the mat.", "A second text, longer than the first, so that the first one is padded.")
#: The models whose contract held in this process (by id; the value keeps the id from being reused).
_CHECKED: dict[int, LoadedModel] = {}


def check_contract(model: LoadedModel) -> None:
    """:func:`verify_contract`, once per booted model in this process."""
    if _CHECKED.get(id(model)) is model:
        return
    verify_contract(model)
    _CHECKED[id(model)] = model


def _close(got: torch.Tensor, want: torch.Tensor) -> float:
    """The largest difference relative to the larger of the two values' sizes (0 when both are 0)."""
    scale = max(float(want.abs().max()), float(got.abs().max()), 1e-12)
    return float((got.double() - want.double()).abs().max()) / scale


def _broken(model: LoadedModel, identity: str, hook: str, error: float) -> NeuronProbeError:
    return NeuronProbeError(
        f"model contract broken: {identity} does not hold (relative error {error:.2g} > {RTOL:g}); the analyses "
        "read and patch this hook and would give wrong numbers with this model or TransformerLens version",
        path=model.source,
        key=hook,
    )


def _hook_values(model: LoadedModel, ids: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
    names = [f"blocks.{layer}.{h}" for layer in range(model.n_layers) for h in _BLOCK_HOOKS]
    values: dict[str, torch.Tensor] = {}

    def keep(name: str) -> Callable[[torch.Tensor, object], torch.Tensor]:
        def hook(value: torch.Tensor, hook: object) -> torch.Tensor:
            values[name] = value.detach().clone()  # by the name asked for: compatibility aliases report others
            return value

        return hook

    missing = [n for n in names if not model.has_hook(n)]
    if missing:
        raise NeuronProbeError(
            f"model contract broken: the model has no hook {missing[0]}", path=model.source, key=missing[0]
        )
    logits = model.bridge.run_with_hooks(ids, attention_mask=mask, fwd_hooks=[(n, keep(n)) for n in names])
    values["logits"] = logits.detach()
    return values


_BLOCK_HOOKS = ("hook_resid_pre", "hook_attn_out", "hook_resid_mid", "hook_mlp_out", "hook_resid_post", "mlp.hook_post")


def _check_blocks(model: LoadedModel, values: dict[str, torch.Tensor], real: torch.Tensor) -> None:
    for layer in range(model.n_layers):
        v = {h: values[f"blocks.{layer}.{h}"] for h in _BLOCK_HOOKS}
        b = f"blocks.{layer}."
        post = v["mlp.hook_post"]
        if post.shape[-1] != model.d_mlp:
            raise NeuronProbeError(
                f"model contract broken: {b}mlp.hook_post has {post.shape[-1]} columns, expected d_mlp = {model.d_mlp}",
                path=model.source,
                key=f"{b}mlp.hook_post",
            )
        mlp = model.bridge.blocks[layer].mlp
        sums = (
            (f"{b}hook_resid_pre + {b}hook_attn_out = {b}hook_resid_mid", f"{b}hook_resid_mid",
             v["hook_resid_pre"] + v["hook_attn_out"], v["hook_resid_mid"]),
            (f"{b}hook_resid_mid + {b}hook_mlp_out = {b}hook_resid_post", f"{b}hook_mlp_out",
             v["hook_resid_mid"] + v["hook_mlp_out"], v["hook_resid_post"]),
            (f"{b}mlp.hook_post @ W_out + b_out = {b}hook_mlp_out", f"{b}hook_mlp_out",
             post @ mlp.W_out.detach() + mlp.b_out.detach(), v["hook_mlp_out"]),
        )  # fmt: skip
        for identity, hook, got, want in sums:
            error = _close(got[real], want[real])
            if not error <= RTOL:
                raise _broken(model, identity, hook, error)


def _check_positions(model: LoadedModel, tokens: Sequence[Sequence[int]]) -> None:
    """The padded batch's read at `token_pos: last` equals each text read alone at its own last token."""
    hook = f"blocks.{model.n_layers - 1}.hook_resid_post"
    pos = positions(tokens, "last")
    (batch,) = batches(tokens, pos, batch_size=len(tokens), pad_id=model.pad_id, device=model.device)
    together = forward_read(model, batch.input_ids, batch.attention_mask, batch.pos, [hook])[hook]
    for j, i in enumerate(batch.rows):
        ids = torch.tensor([list(tokens[i])], device=model.device)
        alone = forward_read(model, ids, torch.ones_like(ids), torch.tensor([len(tokens[i]) - 1]), [hook])[hook]
        error = _close(together[j], alone[0])
        if not error <= RTOL:
            raise _broken(model, f"the read at the last real token of a right-padded text ({hook})", hook, error)


def verify_contract(model: LoadedModel, texts: Sequence[str] = CONTRACT_TEXTS) -> None:
    """Check every identity of the module docstring on ``texts``; a broken one is a NeuronProbeError naming
    it and its hook (the model's directory or name as the path)."""
    tokens = encode(model, texts, prepend_bos=False)
    (batch,) = batches(
        tokens, positions(tokens, "last"), batch_size=len(tokens), pad_id=model.pad_id, device=model.device
    )
    with torch.inference_mode():
        values = _hook_values(model, batch.input_ids, batch.attention_mask)
        _check_blocks(model, values, batch.attention_mask.bool())
        if model.processing == "raw":
            hf = model.bridge.original_model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
            real = batch.attention_mask.bool()
            error = _close(values["logits"][real], hf.detach()[real])
            if not error <= RTOL:
                raise _broken(
                    model, "bridge logits = the Hugging Face model's logits (raw processing)", "logits", error
                )
        _check_positions(model, tokens)
