"""Attribution sweep (issue 12): which units the head's prediction depends on at the read position.

Units: every MLP neuron (`blocks.L.mlp.hook_post`) of every layer the head's feature can see, and with
`heads=True` every attention head's output (`blocks.L.attn.hook_z`). A unit's effect is the mean over the
analysed texts of |prediction change| when the unit is ablated at the read position (to the analysed texts'
mean, or to zero). Two passes over the texts:

1. estimates for all units: a clean pass fills a KV cache; one single-token pass with gradients re-runs only
   the read position (attribution patching: gradient x (ablated - clean));
2. exact effects of the top-k units by |estimate| plus the target, by patching's single-token machinery
   (`patching.single_token_pass`): one pass per batch for all verified units at once, one query slot each.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from pytest_neuronprobe.analyses.attribution_fit import AttributionResult, Sweep, attribution_result
from pytest_neuronprobe.analyses.direct import reads_before, write_of
from pytest_neuronprobe.analyses.options import AttributionOptions, Progress
from pytest_neuronprobe.analyses.patching import agrees, single_token_pass, warn_cache_ignored
from pytest_neuronprobe.analyses.rows import analysed_rows
from pytest_neuronprobe.core.models import Batch, LoadedModel, PatchFn, batches, run_batch, stream
from pytest_neuronprobe.core.probe import Probe

#: Above this many bytes of per-text gradients and activations, mean ablation first takes the means in a pass
#: of its own (3 passes instead of 2) rather than holding texts x units numbers.
HOLD_BYTES = 256 * 2**20
#: A batch's KV cache and its slots grow with its tokens, not its texts: batches hold at most this many
#: (padded) tokens, so long texts get fewer per batch (32 texts of 32 tokens).
MAX_BATCH_TOKENS = 1024
UNIT_RE = re.compile(r"^L(\d+)\.([NH])(\d+)$")


@dataclass(frozen=True)
class Site:
    """One hook of units: `kind` N (MLP neurons) or H (attention heads); `offset` of its first unit."""

    hook: str
    layer: int
    kind: str
    n_units: int
    width: int
    offset: int


def unit_name(layer: int, kind: str, index: int) -> str:
    """`L2.N470` (MLP neuron 470 of layer 2), `L3.H5` (attention head 5 of layer 3)."""
    return f"L{layer}.{kind}{index}"


def unit_sites(probe: Probe, heads: bool) -> list[Site]:
    """The hooks whose units can reach the head's feature, in forward order."""
    model, out, offset = probe.model, [], 0
    cfg = model.bridge.cfg
    for layer in range(model.n_layers):
        hooks = [(f"blocks.{layer}.attn.hook_z", "H", int(cfg.n_heads), int(cfg.d_head))] if heads else []
        hooks.append((f"blocks.{layer}.mlp.hook_post", "N", model.d_mlp, 1))
        for hook, kind, n, width in hooks:
            if model.has_hook(hook) and not reads_before(probe.feature_hook, hook):
                out.append(Site(hook, layer, kind, n, width, offset))
                offset += n
    return out


def target_unit(probe: Probe) -> str | None:
    """The target neuron's unit name (None when it is not an MLP neuron)."""
    return unit_name(probe.layer, "N", probe.neuron) if probe.is_mlp_neuron else None


def analyze_attribution(
    probe: Probe, options: AttributionOptions = AttributionOptions(), progress: Progress | None = None
) -> AttributionResult:
    """Estimate every unit's effect, verify the top k (and the target) exactly."""
    data, used_split = analysed_rows(probe.run, max_samples=options.max_samples, seed=options.seed, split=options.split)
    texts = data["text"].tolist()
    sites = unit_sites(probe, options.heads)
    if not sites:
        raise ValueError(f"no unit can reach the head's feature {probe.feature_hook}")
    toks = probe.tokens(texts)
    pos = probe.positions(toks)
    total = 2 * len(toks)
    step = (lambda done, _t: progress(done, total)) if progress else None
    means, abs_sum, signed_sum = _estimates(probe, toks, pos, sites, options, step)
    T = len(toks)
    estimate, estimate_signed = abs_sum / T, signed_sum / T
    chosen = _chosen(probe, sites, estimate, options.k)
    later = (lambda done, _t: progress(T + done, total)) if progress else None
    delta, direct = _exact(probe, toks, pos, sites, chosen, means, options.batch_size, later)
    sweep = Sweep(
        sites=[(s.layer, s.kind, s.n_units) for s in sites],
        estimate=estimate,
        estimate_signed=estimate_signed,
        chosen=np.array(chosen, dtype=np.int64),
        delta=delta,
        direct=direct,
        ablated_to=np.array([_neuron_mean(sites, means, u) for u in chosen]),
    )
    return attribution_result(probe.run.name, target_unit(probe), used_split, sweep, options, direct_reasons(probe))


def _neuron_mean(sites: Sequence[Site], means: dict[str, torch.Tensor], flat: int) -> float:
    site, index = _locate(sites, flat)
    return float(means[site.hook][index, 0]) if site.width == 1 else float("nan")


def _locate(sites: Sequence[Site], flat: int) -> tuple[Site, int]:
    site = next(s for s in sites if s.offset <= flat < s.offset + s.n_units)
    return site, flat - site.offset


def _chosen(probe: Probe, sites: Sequence[Site], estimate: np.ndarray, k: int) -> list[int]:
    """Flat indices of the top-k units by |estimate| (stable order), plus the target where it is a unit."""
    order = [int(u) for u in np.argsort(-estimate, kind="stable")[:k]]
    own = next((s for s in sites if s.kind == "N" and s.layer == probe.layer), None)
    if probe.is_mlp_neuron and own is not None and own.offset + probe.neuron not in order:
        order.append(own.offset + probe.neuron)
    return order


def direct_reasons(probe: Probe) -> dict[str, str]:
    """Per unit kind and layer (`L2.N`), why its units have no direct path to the feature (absent: they have one)."""
    out: dict[str, str] = {}
    for site in unit_sites(probe, heads=True):
        write = write_of(probe.model, probe.feature_hook, site.hook, 0)
        if isinstance(write, str):
            out[f"L{site.layer}.{site.kind}"] = write
    return out


def _values(clean: dict[str, torch.Tensor], site: Site) -> torch.Tensor:
    """A site's clean values at the read position as `[rows, units, width]` (float32)."""
    v = clean[site.hook].float()
    return v.reshape(len(v), site.n_units, site.width)


# long: one batch loop: the clean pass, the gradient pass, its fallback and the reduction share the batch
def _estimates(
    probe: Probe,
    toks: list[list[int]],
    pos: np.ndarray,
    sites: Sequence[Site],
    options: AttributionOptions,
    progress: Progress | None,
) -> tuple[dict[str, torch.Tensor], np.ndarray, np.ndarray]:
    """(ablation value per site `[units, width]`, sum over texts of |estimate|, of the signed estimate)."""
    model, T = probe.model, len(toks)
    n_values = sum(s.n_units * s.width for s in sites)
    zero = options.ablation == "zero"
    hold = not zero and T * n_values * 8 <= HOLD_BYTES
    means: dict[str, torch.Tensor] | None = None
    if zero:
        means = {s.hook: torch.zeros(s.n_units, s.width, device=model.device) for s in sites}
    elif not hold:
        means = _means(model, toks, pos, sites, options.batch_size)
    held: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    if hold:
        held = {s.hook: (torch.empty(T, s.n_units, s.width), torch.empty(T, s.n_units, s.width)) for s in sites}
    sums = {s.hook: torch.zeros(s.n_units, s.width, dtype=torch.float64) for s in sites}
    abs_sum, signed_sum = np.zeros(sites[-1].offset + sites[-1].n_units), np.zeros(0)
    signed_sum = np.zeros_like(abs_sum)
    done = 0
    size, dev = options.batch_size, model.device
    for batch in batches(toks, pos, batch_size=size, pad_id=model.pad_id, device=dev, max_tokens=MAX_BATCH_TOKENS):
        grads, acts = _gradients(probe, batch, sites)
        rows = torch.as_tensor(batch.rows)
        for s in sites:
            sums[s.hook] += acts[s.hook].double().sum(0).cpu()
            if hold:
                held[s.hook][0][rows], held[s.hook][1][rows] = grads[s.hook].cpu(), acts[s.hook].cpu()
            else:
                assert means is not None
                _reduce(s, grads[s.hook], acts[s.hook], means[s.hook], abs_sum, signed_sum)
        done += len(batch.rows)
        if progress:
            progress(done, T)
    if hold:
        means = {h: (sums[h] / T).float().to(model.device) for h in sums}
        for s in sites:
            for start in range(0, T, options.batch_size):
                g, a = (x[start : start + options.batch_size] for x in held[s.hook])
                _reduce(s, g, a, means[s.hook].cpu(), abs_sum, signed_sum)
    assert means is not None
    return means, abs_sum, signed_sum


def _reduce(
    site: Site, g: torch.Tensor, a: torch.Tensor, mean: torch.Tensor, abs_sum: np.ndarray, signed_sum: np.ndarray
) -> None:
    """Add one chunk of texts' first-order estimates g . (ablated - clean) to the sums (float64)."""
    est = (g.double() * (mean.double().to(g.device) - a.double())).sum(-1)
    sl = slice(site.offset, site.offset + site.n_units)
    abs_sum[sl] += est.abs().sum(0).cpu().numpy()
    signed_sum[sl] += est.sum(0).cpu().numpy()


def _means(
    model: LoadedModel, toks: list[list[int]], pos: np.ndarray, sites: Sequence[Site], batch_size: int
) -> dict[str, torch.Tensor]:
    """Each site's mean clean value at the read position over the texts (a pass of its own)."""
    sums = {s.hook: torch.zeros(s.n_units, s.width, dtype=torch.float64) for s in sites}
    for _, values in stream(
        model, toks, pos, [s.hook for s in sites], batch_size=batch_size, max_tokens=MAX_BATCH_TOKENS
    ):
        for s in sites:
            sums[s.hook] += _values(values, s).double().sum(0).cpu()
    return {h: (v / len(toks)).float().to(model.device) for h, v in sums.items()}


def _gradients(
    probe: Probe, batch: Batch, sites: Sequence[Site]
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(d smooth prediction / d unit values, clean unit values) at the read position, `[rows, units, width]`.

    The clean pass (no_grad: its KV cache must be usable by autograd) is followed by a single-token pass with
    a zero leaf added to each site; a batch whose single-token pass did not see the clean values (the KV cache
    not honoured) is redone with one full forward pass with gradients.
    """
    from transformers import DynamicCache

    model, feature = probe.model, probe.feature_hook
    B, first = len(batch.rows), sites[0].layer
    resume = f"blocks.{first}.hook_resid_pre"
    with torch.no_grad():
        cache = DynamicCache()
        clean = run_batch(model, batch, [*(s.hook for s in sites), resume], past_key_values=cache, use_cache=True)
    acts = {s.hook: _values(clean, s) for s in sites}
    for full in (False, True):
        with torch.enable_grad():
            leaves = {
                s.hook: torch.zeros(B, s.n_units * s.width, device=model.device, requires_grad=True) for s in sites
            }
            before: dict[str, torch.Tensor] = {}
            got: dict[str, torch.Tensor] = {}
            patches = [(s.hook, _add_leaf(leaves[s.hook], before, s.hook)) for s in sites]
            patches.append((feature, _capture(got)))
            if full:
                run_batch(model, batch, [], patches)
            else:
                single_token_pass(model, batch, cache, 1, [], patches, first, clean[resume])
            seen = all(agrees(before[s.hook].reshape(B, -1), acts[s.hook].reshape(B, -1)) for s in sites)
            if full or seen:
                grads = torch.autograd.grad(probe.head.smooth(got["x"].float()).sum(), [leaves[s.hook] for s in sites])
                break
        warn_cache_ignored(
            max(float((before[s.hook].reshape(B, -1) - acts[s.hook].reshape(B, -1)).abs().max()) for s in sites)
        )
    out = {s.hook: g.reshape(B, s.n_units, s.width).detach() for s, g in zip(sites, grads, strict=True)}
    return out, acts


def _add_leaf(leaf: torch.Tensor, before: dict[str, torch.Tensor], hook: str) -> PatchFn:
    def patch(act: torch.Tensor, rows: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        before[hook] = act[rows, pos].detach().float()
        delta = torch.zeros_like(act).index_put((rows, pos), leaf.reshape(act[rows, pos].shape).to(act.dtype))
        return act + delta

    return patch


def _capture(got: dict[str, torch.Tensor]) -> PatchFn:
    def patch(act: torch.Tensor, rows: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        got["x"] = act[rows, pos]
        return act

    return patch


# long: one batch loop: the clean pass, the single-token pass, its fallback and the direct path
def _exact(
    probe: Probe,
    toks: list[list[int]],
    pos: np.ndarray,
    sites: Sequence[Site],
    chosen: Sequence[int],
    means: dict[str, torch.Tensor],
    batch_size: int,
    progress: Progress | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per text and chosen unit: (the exact prediction change when it is ablated, its direct-path estimate)."""
    from transformers import DynamicCache

    model, feature, T = probe.model, probe.feature_hook, len(toks)
    located = [_locate(sites, flat) for flat in chosen]  # slot f ablates unit located[f]
    first = min(site.layer for site, _ in located)
    writes = [write_of(model, feature, site.hook, i) for site, i in located]
    delta, direct = np.empty((T, len(chosen))), np.empty((T, len(chosen)))
    resume = f"blocks.{first}.hook_resid_pre"
    read = list(dict.fromkeys([feature, *(site.hook for site, _ in located), resume]))
    done = 0
    dev = model.device
    for batch in batches(
        toks, pos, batch_size=batch_size, pad_id=model.pad_id, device=dev, max_tokens=MAX_BATCH_TOKENS
    ):
        rows, B = batch.rows, len(batch.rows)
        with torch.inference_mode():
            cache = DynamicCache()
            clean = run_batch(model, batch, read, past_key_values=cache, use_cache=True)
            x0 = clean[feature].float()
            pred = _ablated(probe, batch, cache, clean, located, means, first)
            delta[rows] = (pred.reshape(len(chosen), B).T - probe.head.predict(x0)[:, None]).double().cpu().numpy()
        grad = _feature_gradient(probe, x0)
        for col, (site, index) in enumerate(located):
            change = means[site.hook][index][None] - _values(clean, site)[:, index]
            direct[rows, col] = _direct(writes[col], change, grad)
        done += B
        if progress:
            progress(done, T)
    return delta, direct


def _ablated(
    probe: Probe,
    batch: Batch,
    cache: object,
    clean: dict[str, torch.Tensor],
    located: Sequence[tuple[Site, int]],
    means: dict[str, torch.Tensor],
    first: int,
) -> torch.Tensor:
    """The head's prediction with each unit of `located` ablated in turn, all in one pass (slot-major rows:
    unit f, text b at f*B + b); every slot starts from block `first` and is patched at its own unit's hook."""
    model, B, F = probe.model, len(batch.rows), len(located)
    before: dict[str, torch.Tensor] = {}
    patches: list[tuple[str, PatchFn]] = []
    expected: dict[str, torch.Tensor] = {}
    for site in dict.fromkeys(s for s, _ in located):
        slots = [f for f, (s, _) in enumerate(located) if s == site]
        units = torch.tensor([located[f][1] for f in slots], device=model.device)
        at = (torch.tensor(slots, device=model.device)[:, None] * B + torch.arange(B, device=model.device)).ravel()
        expected[site.hook] = _values(clean, site)[:, units].permute(1, 0, 2).reshape(-1, site.width)
        patches.append((site.hook, _set_units(site, at, units.repeat_interleave(B), means[site.hook], before)))
    resume = clean[f"blocks.{first}.hook_resid_pre"]
    out = single_token_pass(model, batch, cache, F, [probe.feature_hook], patches, first, resume)  # type: ignore[arg-type]
    seen = [agrees(before[h], e) if h in before else False for h, e in expected.items()]
    if not all(seen):
        gap = max(float((before[h] - e).abs().max()) if h in before else float("nan") for h, e in expected.items())
        warn_cache_ignored(gap)
        big = Batch(
            rows=np.tile(batch.rows, F),
            input_ids=batch.input_ids.repeat(F, 1),
            attention_mask=batch.attention_mask.repeat(F, 1),
            pos=batch.pos.repeat(F),
        )
        out = run_batch(model, big, [probe.feature_hook], patches)
    return probe.head.predict(out[probe.feature_hook].float())


def _set_units(
    site: Site, at: torch.Tensor, units: torch.Tensor, mean: torch.Tensor, before: dict[str, torch.Tensor]
) -> PatchFn:
    """Set unit `units[i]` of row `at[i]` to its ablation value (`before[hook]`: the values it replaced)."""

    def patch(act: torch.Tensor, rows: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        act = act.clone()
        here = act[rows, pos].reshape(len(rows), site.n_units, site.width)
        before[site.hook] = here[at, units].float().clone()
        here[at, units] = mean[units].to(act.dtype)
        act[rows, pos] = here.reshape(act[rows, pos].shape)
        return act

    return patch


def _feature_gradient(probe: Probe, x: torch.Tensor) -> torch.Tensor:
    """d smooth prediction / d feature, per row."""
    with torch.inference_mode(False), torch.enable_grad():
        xg = x.detach().clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(probe.head.smooth(xg).sum(), xg)
    return grad


def _direct(write: torch.Tensor | float | str, change: torch.Tensor, grad: torch.Tensor) -> np.ndarray:
    """Per row, the direct-path estimate: grad . (change `[rows, width]` @ write `[width, d]`)."""
    if isinstance(write, str):
        return np.full(len(grad), np.nan)
    if isinstance(write, float):
        return np.zeros(len(grad))
    w = write.reshape(change.shape[1], -1)
    return ((change.double() @ w.double()) * grad.double()).sum(-1).cpu().numpy()
