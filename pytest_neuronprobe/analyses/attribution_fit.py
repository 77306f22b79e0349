"""The attribution result (issue 12): the verified units, where the target ranks, how far the estimates hold."""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from pytest_neuronprobe.analyses.fits import bootstrap_means_ci
from pytest_neuronprobe.analyses.options import AttributionOptions
from pytest_neuronprobe.analyses.stats import FloatArray, Number, Undefined, as_number, correlate, put_number
from pytest_neuronprobe.core.formatting import format_3f

#: Below this Spearman rho (estimate vs exact effect over the verified units) the estimates are not trusted.
TRUST_RHO = 0.8
#: Units per layer kept in the per-layer summary (the figure's dots).
LAYER_TOP = 10


@dataclass(frozen=True)
class Sweep:
    """What the two passes measured: per site (layer, kind, units); per unit the mean |estimate| and signed
    estimate; the chosen (verified) units' flat indices, per text their exact changes and direct-path
    estimates `[texts, chosen]`, and the value a neuron was ablated to (NaN for a head)."""

    sites: list[tuple[int, str, int]]
    estimate: FloatArray
    estimate_signed: FloatArray
    chosen: np.ndarray
    delta: FloatArray
    direct: FloatArray
    ablated_to: FloatArray


@dataclass(frozen=True)
class VerifiedUnit:
    """One unit verified by exact patching: its exact effect (mean |change|, 95% interval over texts), the
    first-order estimate, the direct-path estimate, its rank among all units by estimate."""

    unit: str
    layer: int
    kind: str
    index: int
    effect: Number
    effect_signed: Number
    ci_low: Number
    ci_high: Number
    estimate: Number
    estimate_signed: Number
    direct: Number
    rank_estimate: int
    ablated_to: Number

    def as_dict(self) -> dict[str, object]:
        d: dict[str, object] = {"unit": self.unit, "layer": self.layer, "kind": self.kind, "index": self.index}
        for name in ("effect", "effect_signed", "ci_low", "ci_high", "estimate", "estimate_signed", "direct"):
            put_number(d, name, getattr(self, name))
        d["rank_estimate"] = self.rank_estimate
        put_number(d, "ablated_to", self.ablated_to)
        return d


@dataclass(frozen=True)
class LayerSummary:
    """One layer's units of one kind: how many, their summed |estimate|, and the largest few (index, estimate)."""

    layer: int
    kind: str
    n_units: int
    total: float
    top: tuple[tuple[int, float], ...]

    def as_dict(self) -> dict[str, object]:
        return {
            "layer": self.layer,
            "kind": self.kind,
            "n_units": self.n_units,
            "total_estimate": self.total,
            "top": [[i, v] for i, v in self.top],
        }


@dataclass(frozen=True)
class AttributionResult:
    """Which units the head's prediction depends on at the read position (see `analyses.attribution`)."""

    run_name: str
    ablation: str
    n_texts: int
    split: str
    n_units: int
    target: str | None
    #: The verified units, largest exact effect first.
    verified: tuple[VerifiedUnit, ...]
    target_rank: Number
    target_rank_estimate: Number
    target_share: Number
    spearman: Number
    layers: tuple[LayerSummary, ...] = field(repr=False)
    options: dict[str, object] = field(repr=False)
    arrays: dict[str, object] = field(repr=False, compare=False)

    @property
    def top(self) -> tuple[str, ...]:
        """The verified units' names, largest exact effect first (`top[0]` is the unit the head depends on most)."""
        return tuple(v.unit for v in self.verified)

    @property
    def trustworthy(self) -> bool:
        """Whether the estimates rank the verified units like their exact effects (Spearman >= 0.8)."""
        return isinstance(self.spearman, float) and self.spearman >= TRUST_RHO

    def unit(self, name: str) -> VerifiedUnit | None:
        """The verified unit of that name (`"L2.N470"`), or None when it was not verified."""
        return next((v for v in self.verified if v.unit == name), None)

    def as_dict(self) -> dict[str, object]:
        """The `attribution` section of summary.json."""
        target = self.unit(self.target) if self.target else None
        d: dict[str, object] = {"ablation": self.ablation, "n_texts": self.n_texts, "n_units": self.n_units}
        t: dict[str, object] = {"unit": self.target}
        put_number(t, "rank", self.target_rank)
        put_number(t, "rank_estimate", self.target_rank_estimate)
        put_number(t, "share", self.target_share)
        why = self.target_rank.reason if isinstance(self.target_rank, Undefined) else "not verified"
        for name in ("effect", "ci_low", "ci_high", "estimate", "direct"):
            put_number(t, name, getattr(target, name) if target else Undefined(why))
        d["target"] = t
        put_number(d, "spearman", self.spearman)
        d["trustworthy"] = self.trustworthy
        d["verified"] = [v.as_dict() for v in self.verified]
        d["layers"] = [layer.as_dict() for layer in self.layers]
        d["options"] = dict(self.options)
        return d

    def __repr__(self) -> str:
        top = ", ".join(
            f"{v.unit} {format_3f(v.effect)} [{format_3f(v.ci_low)}, {format_3f(v.ci_high)}]" for v in self.verified[:3]
        )
        trust = "" if self.trustworthy else ", NOT trustworthy (estimates disagree with exact effects)"
        return (
            f"AttributionResult({self.run_name!r}, {self.n_units} units, n={self.n_texts}, {self.ablation} ablation; "
            f"top: {top}; target {self.target} rank {_int(self.target_rank)} (by estimate "
            f"{_int(self.target_rank_estimate)}), share {format_3f(self.target_share)}; "
            f"spearman {format_3f(self.spearman)}{trust})"
        )


def _int(x: Number) -> str:
    return str(int(x)) if isinstance(x, float) else repr(x)


# long: assembles the result's parts (ranks, intervals, per-layer summary) from the sweep in one place
def attribution_result(
    run_name: str,
    target: str | None,
    used_split: str,
    sweep: Sweep,
    options: AttributionOptions,
    direct_reasons: Mapping[str, str],
) -> AttributionResult:
    """The result from the sweep's numbers."""
    names = [f"L{layer}.{kind}{i}" for layer, kind, n in sweep.sites for i in range(n)]
    est, T = sweep.estimate, len(sweep.delta)
    effect = np.abs(sweep.delta).mean(0)
    lo, hi = bootstrap_means_ci(np.abs(sweep.delta), n_resamples=options.n_resamples, seed=options.seed)
    units = []
    for col, flat in enumerate(sweep.chosen.tolist()):
        name = names[flat]
        layer, rest = name[1:].split(".", 1)
        kind = rest[0]
        reason = direct_reasons.get(f"L{layer}.{kind}")
        direct = Undefined(reason) if reason else as_number(float(np.abs(sweep.direct[:, col]).mean()), "non-finite")
        units.append(
            VerifiedUnit(
                unit=name,
                layer=int(layer),
                kind=kind,
                index=int(rest[1:]),
                effect=float(effect[col]),
                effect_signed=float(sweep.delta[:, col].mean()),
                ci_low=as_number(lo[col], "no interval (fewer than 2 texts or no resamples)"),
                ci_high=as_number(hi[col], "no interval (fewer than 2 texts or no resamples)"),
                estimate=float(est[flat]),
                estimate_signed=float(sweep.estimate_signed[flat]),
                direct=direct,
                rank_estimate=int((est > est[flat]).sum()) + 1,
                ablated_to=as_number(float(sweep.ablated_to[col]), "a head is ablated to a vector"),
            )
        )
    units.sort(key=lambda v: -float(v.effect))
    rank, rank_est, share = _target_numbers(target, units, names)
    rho = correlate([float(v.estimate) for v in units], [float(v.effect) for v in units], n_resamples=0).spearman
    if not (isinstance(rho, float) and rho >= TRUST_RHO):
        why = f"Spearman {format_3f(rho)} < {TRUST_RHO}" if isinstance(rho, float) else f"Spearman {rho!r}"
        warnings.warn(
            f"attribution of {run_name or 'the run'}: the first-order estimates do not rank the verified units like "
            f"their exact effects ({why}); trust only the verified effects",
            RuntimeWarning,
            stacklevel=3,
        )
    return AttributionResult(
        run_name=run_name,
        ablation=options.ablation,
        n_texts=T,
        split=used_split,
        n_units=len(names),
        target=target,
        verified=tuple(units),
        target_rank=rank,
        target_rank_estimate=rank_est,
        target_share=share,
        spearman=rho,
        layers=_layers(sweep),
        options={**dataclasses.asdict(options), "split": used_split, "n_texts": T},
        arrays={
            "estimate": est,
            "estimate_signed": sweep.estimate_signed,
            "chosen": sweep.chosen,
            "delta": sweep.delta,
        },
    )


def _target_numbers(target: str | None, units: Sequence[VerifiedUnit], names: Sequence[str]) -> tuple[Number, ...]:
    """(target's rank by exact effect among the verified units, its rank by estimate among all, its share of
    the verified units' summed exact effect); undefined with the reason when the target is no unit here."""
    found = next((v for v in units if v.unit == target), None)
    if found is None:
        why = (
            "the target is not an MLP neuron"
            if target is None
            else f"the target {target} cannot reach the head's feature (it is computed before it)"
        )
        return Undefined(why), Undefined(why), Undefined(why)
    rank = float(sum(float(v.effect) > float(found.effect) for v in units) + 1)
    total = sum(float(v.effect) for v in units)
    share = as_number(
        float(found.effect) / total if total > 0 else float("nan"), "no verified unit changes the prediction"
    )
    return rank, float(found.rank_estimate), share


def _layers(sweep: Sweep) -> tuple[LayerSummary, ...]:
    out, offset = [], 0
    for layer, kind, n in sweep.sites:
        est = sweep.estimate[offset : offset + n]
        top = np.argsort(-est, kind="stable")[:LAYER_TOP]
        out.append(LayerSummary(layer, kind, n, float(est.sum()), tuple((int(i), float(est[i])) for i in top)))
        offset += n
    return tuple(out)
