"""Activation-patching analysis (SPEC §4): edit the neuron at the read position, watch the prediction move."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from pytest_neuronprobe.analyses.direct import act_derivative, write_of
from pytest_neuronprobe.analyses.options import PatchingOptions, Progress
from pytest_neuronprobe.analyses.patching_fit import PatchingResult, patching_result
from pytest_neuronprobe.analyses.rows import analysed_rows
from pytest_neuronprobe.analyses.stats import FloatArray
from pytest_neuronprobe.core.models import (
    Batch,
    LoadedModel,
    Patch,
    PatchFn,
    batches,
    blocks_from,
    forward_read,
    hook_layer,
    run_batch,
)
from pytest_neuronprobe.core.probe import Probe

if TYPE_CHECKING:  # pragma: no cover
    from transformers import DynamicCache


def analyze_patching(
    probe: Probe,
    options: PatchingOptions = PatchingOptions(),
    progress: Progress | None = None,
) -> PatchingResult:
    """Patch the neuron at `token_pos` for each factor and fit prediction change on activation change."""
    texts, used_split = patching_texts(probe, options)
    sweep = sweep_patches(
        probe,
        texts,
        options.mode,
        options.values,
        batch_size=options.batch_size,
        method=options.method,
        progress=progress,
    )
    return patching_result(probe, texts, used_split, sweep, options, direct_reason(probe))


def patching_texts(probe: Probe, options: PatchingOptions) -> tuple[list[str], str]:
    """(the texts to patch, where they come from: "given texts" or the split of the analysed rows)."""
    if options.texts is not None:
        return list(options.texts), "given texts"
    data, used_split = analysed_rows(probe.run, max_samples=options.max_samples, seed=options.seed, split=options.split)
    return data["text"].tolist(), used_split


def _patch_fn(mode: str, neuron: int, values: torch.Tensor, before: list[torch.Tensor] | None = None) -> PatchFn:
    """fn(hook value, rows, positions) writing the patched neuron; `values` holds one factor per row.

    `before`, if given, receives the neuron's value before the patch (float32, one per row).
    """

    def patch(act: torch.Tensor, rows: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        act = act.clone()
        current = act[rows, pos, neuron]
        if before is not None:
            before[:] = [current.detach().float().clone()]
        new = {"scale": current * values, "set": values.to(act.dtype).expand_as(current), "add": current + values}[mode]
        act[rows, pos, neuron] = new.to(act.dtype)
        return act

    return patch


# long: one batch loop; the clean pass, the patched pass and its fallback share the batch's tensors
def sweep_patches(
    probe: Probe,
    texts: Sequence[str],
    mode: str,
    factors: Sequence[float],
    *,
    batch_size: int = 32,
    method: str = "cached",
    also_read: Sequence[str] = (),
    on_clean: Callable[[np.ndarray, dict[str, torch.Tensor]], None] | None = None,
    progress: Progress | None = None,
) -> dict[str, FloatArray]:
    """Baseline and patched activation/prediction per (text, factor), plus the direct-path slope per text.

    `cached`: the clean pass fills a KV cache; one single-token pass then re-runs only each text's read
    position, from the neuron's block on, for all factors at once. `full`: a full patched forward per factor
    (the reference). `also_read` hooks are read in the clean pass and handed, batch by batch, to
    `on_clean(rows, values)` (e.g. `ProjectionPass.add`); nothing of a batch is kept after it.

    The cached path checks itself: the neuron's value before the patch must equal the clean pass's. Where it
    does not (a transformers/TransformerLens pair whose KV cache is not honoured), that batch is recomputed
    with full forward passes and a warning says so.
    """
    toks = probe.tokens(texts)
    pos = probe.positions(toks)
    model = probe.model
    T, F = len(toks), len(factors)
    out: dict[str, FloatArray] = {
        "activation": np.empty(T),
        "prediction": np.empty(T),
        "patched_activation": np.empty((T, F)),
        "patched_prediction": np.empty((T, F)),
        "direct_per_text": np.empty(T),
    }
    factor_t = torch.tensor(factors, dtype=torch.float32, device=model.device)
    feature, neuron_hook = probe.feature_hook, probe.neuron_hook
    read = list(dict.fromkeys([neuron_hook, feature]))
    start_block = hook_layer(neuron_hook)
    resume = f"blocks.{start_block}.hook_resid_pre" if start_block is not None else None
    clean_read = list(dict.fromkeys([*read, *also_read, *([resume] if resume and method == "cached" else [])]))
    done = 0
    for batch in batches(toks, pos, batch_size=batch_size, pad_id=model.pad_id, device=model.device):
        rows, B = batch.rows, len(batch.rows)
        # Rows repeated factor-major (row b under factor f at f*B + b), each with its own factor.
        before: list[torch.Tensor] = []  # the neuron's value just before the patch, per (factor, row)
        patch = (neuron_hook, _patch_fn(mode, probe.neuron, factor_t.repeat_interleave(B), before))
        with torch.inference_mode():
            if method == "cached":
                from transformers import DynamicCache

                cache = DynamicCache()
                clean = run_batch(model, batch, clean_read, past_key_values=cache, use_cache=True)
                resume_value = clean.get(resume) if resume else None
                patched = single_token_pass(model, batch, cache, F, read, patch, start_block, resume_value)
            else:
                clean = run_batch(model, batch, clean_read)
            x0 = clean[feature].float()
            a0 = clean[neuron_hook][:, probe.neuron].float()
            full = method != "cached"
            if not full and not (before and agrees(before[0], a0.repeat(F))):
                warn_cache_ignored(float((before[0] - a0.repeat(F)).abs().max()) if before else float("nan"))
                full = True
            if full:
                big = Batch(
                    rows=np.tile(rows, F),
                    input_ids=batch.input_ids.repeat(F, 1),
                    attention_mask=batch.attention_mask.repeat(F, 1),
                    pos=batch.pos.repeat(F),
                )
                patched = run_batch(model, big, read, patch)
            if feature not in patched:  # computed before the neuron's block, which the single-token pass starts at
                patched[feature] = clean[feature].repeat(F, 1)
            out["activation"][rows] = _cpu(a0)
            out["prediction"][rows] = _cpu(probe.head.predict(x0))
            out["patched_activation"][rows] = _cpu(patched[neuron_hook][:, probe.neuron].float().reshape(F, B).T)
            out["patched_prediction"][rows] = _cpu(probe.head.predict(patched[feature].float()).reshape(F, B).T)
        if on_clean is not None:
            on_clean(rows, {name: clean[name] for name in also_read})
        out["direct_per_text"][rows] = _cpu(_direct_slopes(probe, x0, a0))
        done += B
        if progress:
            progress(done, T)
    return out


def agrees(patched_pass: torch.Tensor, clean: torch.Tensor) -> bool:
    """Whether the patched pass saw the clean pass's neuron values (to float32 rounding of the KV-cache path)."""
    return bool(((patched_pass - clean).abs() <= 1e-4 * (1.0 + clean.abs())).all())


_CACHE_WARNED: list[bool] = []


def warn_cache_ignored(diff: float) -> None:
    if not _CACHE_WARNED:
        _CACHE_WARNED.append(True)
        from importlib.metadata import version

        warnings.warn(
            f"the KV-cache patching path disagrees with the clean pass (neuron values differ by {diff:.3g}): "
            f"transformers {version('transformers')} with transformer_lens {version('transformer_lens')} "
            "does not honour the cache; recomputing with full forward passes (slower, same numbers)",
            RuntimeWarning,
            stacklevel=3,
        )


def _cpu(t: torch.Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float64).numpy()


def direct_reason(probe: Probe) -> str | None:
    """Why the patched neuron has no direct path to the head's feature (None when it has one)."""
    write = write_of(probe.model, probe.feature_hook, probe.neuron_hook, probe.neuron)
    return write if isinstance(write, str) else None


def _direct_slopes(probe: Probe, x: torch.Tensor, a0: torch.Tensor) -> torch.Tensor:
    """Per text, d prediction / d activation along the direct path alone: grad_x head · (what one unit writes).

    The head's gradient includes `ln_final` for a token head. Later layers' reactions are left out by design.
    What one unit writes is `analyses.direct.write_of`; NaN where there is no direct path (`direct_reason`).
    """
    write = write_of(probe.model, probe.feature_hook, probe.neuron_hook, probe.neuron)
    if isinstance(write, str):
        return torch.full((len(x),), float("nan"), device=x.device)
    if isinstance(write, float):
        return torch.zeros(len(x), device=x.device)
    scale = torch.ones_like(a0)
    if probe.neuron_hook.endswith("mlp.hook_pre") and probe.feature_hook != probe.neuron_hook:
        scale = act_derivative(probe.model.bridge.cfg.act_fn, a0)
    with torch.inference_mode(False), torch.enable_grad():
        xg = x.detach().clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(probe.head.smooth(xg).sum(), xg)
    return scale * (grad @ write)


def single_token_pass(
    model: LoadedModel,
    batch: Batch,
    cache: DynamicCache,
    F: int,
    read: Sequence[str],
    patch: Patch | Sequence[Patch],
    start_block: int | None,
    resume: torch.Tensor | None,
) -> dict[str, torch.Tensor]:
    """Re-run only each text's read position, for all factors at once, attending to the cached keys before it.

    A patch at position p cannot change anything before p (causal attention), so the cached keys/values of
    positions < p are exact; only position p is recomputed, with its true position id. Each text's F copies
    are F query slots of one row, which attend to the row's cached keys before p and to their own key only
    (a 4-D mask), so the cache is shared, never copied F times; hooks see the copies as rows, factor-major.
    Blocks below the neuron's are identical to the clean pass: they are skipped and the clean residual is
    injected instead.
    """
    B, width = batch.input_ids.shape
    dev = batch.input_ids.device
    ids = batch.input_ids[torch.arange(B, device=dev), batch.pos][:, None].expand(B, F)
    before = torch.arange(width, device=dev)[None, :] < batch.pos[:, None]  # [B, width]
    own = torch.eye(F, dtype=torch.bool, device=dev)  # slot f sees its own new key only
    mask = torch.cat([before[:, None, :].expand(B, F, width), own[None].expand(B, F, F)], dim=2)[:, None]
    zero = torch.zeros(B * F, dtype=torch.long, device=dev)
    kwargs: dict[str, Any] = dict(
        past_key_values=_fork_cache(cache), use_cache=True, position_ids=batch.pos[:, None].expand(B, F)
    )
    if start_block and resume is not None:
        with blocks_from(model, start_block) as sliced:
            if sliced:
                inject = (f"blocks.{start_block}.hook_resid_pre", resume.repeat(F, 1))
                return forward_read(model, ids, mask, zero, read, patch, inject=inject, slots=F, **kwargs)
    return forward_read(model, ids, mask, zero, read, patch, slots=F, **kwargs)


def _fork_cache(cache: DynamicCache) -> DynamicCache:
    """A copy of the cache that a pass can append to without changing the original (tensors are shared)."""
    import copy

    fork = copy.copy(cache)
    fork.layers = [copy.copy(layer) for layer in cache.layers]
    return fork
