"""Projection analysis (SPEC §3): how well projections of the residual stream track the neuron."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from .errors import NeuronProbeError
from .models import collect
from .probe import Probe
from .stats import Correlation, NullComparison, Undefined, correlate, empirical_null, finite_or_none

NAMES = ("prediction", "head", "input", "output", "neuron_dir", "live")
INPUT_HOOKS = ("resid_mid", "resid_pre")
LIVE_TOLERANCE = 1e-3


@dataclass(frozen=True)
class WeightSimilarities:
    """Cosine similarities between the head direction and the neuron's weights."""

    head_input: float | Undefined
    head_output: float | Undefined
    input_output: float | Undefined

    def as_dict(self) -> dict[str, float | None]:
        return {k: finite_or_none(getattr(self, k)) for k in ("head_input", "head_output", "input_output")}

    def __repr__(self) -> str:
        parts = ", ".join(f"{k}={_fmt(getattr(self, k))}" for k in ("head_input", "head_output", "input_output"))
        return f"WeightSimilarities({parts})"


@dataclass(frozen=True)
class NullBaseline:
    """The head projection's |r| against random unit directions and other neurons' output directions."""

    random: NullComparison
    neurons: NullComparison | None
    random_values: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False, compare=False)

    def as_dict(self) -> dict[str, Any]:
        return {"random": self.random.as_dict(), "neurons": None if self.neurons is None else self.neurons.as_dict()}


@dataclass(frozen=True)
class SelfCheck:
    """Live activations vs the dataset, and batched vs one-text-at-a-time reads."""

    live_max_abs_diff: float
    batched_max_abs_diff: float
    ok: bool
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"live_max_abs_diff": finite_or_none(self.live_max_abs_diff),
                "batched_max_abs_diff": finite_or_none(self.batched_max_abs_diff), "ok": self.ok,
                "message": self.message}


@dataclass(frozen=True)
class ProjectionResult:
    """Correlations of each projection with the ground truth, plus weight cosines, nulls and self-checks."""

    run_name: str
    split: str
    n: int
    prediction: Correlation
    head: Correlation
    input: Correlation
    output: Correlation
    neuron_dir: Correlation
    live: Correlation
    weights: WeightSimilarities
    null: NullBaseline | None
    self_check: SelfCheck
    options: dict[str, Any] = field(repr=False)
    arrays: dict[str, np.ndarray] = field(repr=False, compare=False)
    direction: np.ndarray = field(repr=False, compare=False)

    @property
    def correlations(self) -> dict[str, Correlation]:
        return {name: getattr(self, name) for name in NAMES}

    def __getitem__(self, name: str) -> Correlation:
        if name not in NAMES:
            raise KeyError(f"{name!r}: projections are {', '.join(NAMES)}")
        return getattr(self, name)

    def as_dict(self) -> dict[str, Any]:
        """The `projections` and `weight_similarities` parts of summary.json (SPEC §5), plus extras."""
        return {
            "dataset_size": self.n,
            "split": self.split,
            "weight_similarities": self.weights.as_dict(),
            "projections": {name: c.as_dict() for name, c in self.correlations.items()},
            "null": None if self.null is None else self.null.as_dict(),
            "self_check": self.self_check.as_dict(),
            "options": dict(self.options),
        }

    def __repr__(self) -> str:
        warn = "" if self.self_check.ok else f", WARNING: {self.self_check.message}"
        return (f"ProjectionResult({self.run_name!r}, split={self.split}, n={self.n}, head={_short(self.head)}, "
                f"prediction={_short(self.prediction)}{warn})")


def _fmt(x: Any) -> str:
    return f"{x:.3f}" if isinstance(x, float) else repr(x)


def _short(c: Correlation) -> str:
    return f"r={c.r:.3f}" if c.defined else "undefined"


def analysed_rows(probe: Probe, *, max_samples: int | None, seed: int, split: str | None = None):
    """The analysed dataset rows: the split rule (or `split`), then a seeded subsample of `max_samples`."""
    run = probe.run
    if split is None or split == "auto":
        data, used = run.analysed(), run.split
    elif split == "all":
        data, used = run.data, "all"
    else:
        if "split" not in run.data.columns or not (run.data["split"] == split).any():
            raise NeuronProbeError(f"no rows with split == {split!r}", path=run.dataset_path, key="split")
        data, used = run.data[run.data["split"] == split], split
    if max_samples is not None and len(data) > max_samples:
        keep = np.sort(np.random.default_rng(seed).choice(len(data), size=max_samples, replace=False))
        data = data.iloc[keep]
    return data, used


def projection_options(*, input_hook: str = "resid_mid", max_samples: int | None = None, split: str | None = None,
                       n_resamples: int = 1000, seed: int = 0, null_directions: int = 200, batch_size: int = 32,
                       ) -> dict[str, Any]:
    """Validated projection options with defaults filled in."""
    if input_hook not in INPUT_HOOKS:
        raise NeuronProbeError(f"input_hook must be one of {', '.join(INPUT_HOOKS)}, got {input_hook!r}",
                               key="input_hook")
    return {"input_hook": input_hook, "max_samples": max_samples, "split": split, "n_resamples": n_resamples,
            "seed": seed, "null_directions": null_directions, "batch_size": batch_size}


def projection_hooks(probe: Probe, input_hook: str) -> list[str]:
    """Every hook the projection analysis reads."""
    L = probe.layer
    extra = [f"blocks.{L}.hook_{input_hook}", f"blocks.{L}.hook_resid_post"] if probe.is_mlp_neuron else []
    return list(dict.fromkeys([probe.neuron_hook, probe.feature_hook, probe.final_hook, *extra]))


def analyze_projection(probe: Probe, *, progress: Callable[[int], None] | None = None,
                       values: dict[str, torch.Tensor] | None = None, **options: Any) -> ProjectionResult:
    """Run the projection analysis of SPEC §3 on the probe's analysed texts.

    Options: input_hook (resid_mid|resid_pre), max_samples, split, n_resamples, seed, null_directions,
    batch_size. `values` (hook -> `[texts, d]`, the analysed texts in order) skips the forward pass.
    """
    opts = projection_options(**options)
    data, used_split = analysed_rows(probe, max_samples=opts["max_samples"], seed=opts["seed"], split=opts["split"])
    texts = data["text"].tolist()
    truth = data["activation"].to_numpy(dtype=np.float64)
    L, n = probe.layer, probe.neuron
    mlp = probe.is_mlp_neuron
    input_name = f"blocks.{L}.hook_{opts['input_hook']}"
    output_name = f"blocks.{L}.hook_resid_post"
    if values is None:
        values = probe.read(texts, projection_hooks(probe, opts["input_hook"]), batch_size=opts["batch_size"],
                            progress=progress)
    seed = opts["seed"]
    x = values[probe.feature_hook].float()
    head = probe.head
    with torch.inference_mode():
        prediction = head.predict(x)
    direction = head.direction(x)
    arrays: dict[str, np.ndarray] = {
        "ground_truth": truth,
        "live": _np(probe.neuron_values(values)),
        "prediction": _np(prediction),
        "head": _np(x @ direction),
    }
    absent = "the neuron is not an MLP neuron (layer_type is not pre/post)"
    if mlp:
        w_in = probe.model.W_in(L)[:, n].float()
        w_out = probe.model.W_out(L)[n].float()
        arrays["input"] = _np(values[input_name].float() @ w_in)
        arrays["output"] = _np(values[output_name].float() @ w_out)
        arrays["neuron_dir"] = _np(values[probe.final_hook].float() @ (w_out / w_out.norm()))
        if direction.shape[0] == w_in.shape[0]:
            weights = WeightSimilarities(_cos(direction, w_in), _cos(direction, w_out), _cos(w_in, w_out))
        else:
            other = Undefined(f"the head reads {probe.feature_hook}, not the residual stream")
            weights = WeightSimilarities(other, other, _cos(w_in, w_out))
    else:
        why = Undefined(absent)
        weights = WeightSimilarities(why, why, why)
    corr = {}
    for i, name in enumerate(NAMES):
        if name in arrays:
            corr[name] = correlate(arrays[name], truth, label=name, n_resamples=opts["n_resamples"], seed=seed + i,
                                   x_name=name, y_name="ground_truth")
        else:
            corr[name] = Correlation(r=None, r_squared=None, p_value=None, spearman=None, n=len(truth), ci_low=None,
                                     ci_high=None, reason=f"absent: {absent}", label=name)
    null = _null_baseline(probe, x, truth, direction, corr["head"], opts["null_directions"], seed)
    if null is not None:
        arrays["null_random"] = null.random_values
    check = _self_check(probe, texts, arrays, values)
    if not check.ok:
        warnings.warn(f"{probe.run.name}: {check.message}", stacklevel=2)
    options = {**opts, "split": used_split}
    return ProjectionResult(run_name=probe.run.name, split=used_split, n=len(truth), weights=weights, null=null,
                            self_check=check, options=options, arrays=arrays, direction=_np(direction), **corr)


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float64).numpy()


def _cos(a: torch.Tensor, b: torch.Tensor) -> float | Undefined:
    na, nb = float(a.norm()), float(b.norm())
    if na == 0 or nb == 0:
        return Undefined("zero-length vector")
    return float((a.double() @ b.double()) / (na * nb))


def _abs_r_columns(proj: torch.Tensor, truth: np.ndarray) -> np.ndarray:
    """|Pearson r| of each column of `proj` [N, K] with `truth`, NaN for constant columns."""
    p = proj.detach().to("cpu", torch.float64).numpy()
    p = p - p.mean(0)
    t = truth - truth.mean()
    denom = np.sqrt((p * p).sum(0) * (t * t).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.abs((p * t[:, None]).sum(0) / denom)


def _null_baseline(probe: Probe, x: torch.Tensor, truth: np.ndarray, direction: torch.Tensor, head: Correlation,
                   k: int, seed: int) -> NullBaseline | None:
    if k <= 0:
        return None
    gen = torch.Generator().manual_seed(seed)
    random_dirs = torch.randn(x.shape[1], k, generator=gen, dtype=torch.float64).to(x.device)
    random_dirs = (random_dirs / random_dirs.norm(dim=0)).float()
    r = head.r if head.defined else float("nan")
    random_values = _finite(_abs_r_columns(x @ random_dirs, truth))
    random = empirical_null(r, random_values, label="random directions")
    neurons = None
    if probe.is_mlp_neuron and x.shape[1] == probe.model.d_model:
        w_out = probe.model.W_out(probe.layer).float()
        others = torch.cat([w_out[: probe.neuron], w_out[probe.neuron + 1:]])
        neurons = empirical_null(r, _finite(_abs_r_columns(x @ others.T, truth)),
                                 label=f"other neurons' output directions (layer {probe.layer})")
    return NullBaseline(random=random, neurons=neurons, random_values=random_values)


def _finite(a: np.ndarray) -> np.ndarray:
    return a[np.isfinite(a)]


def _self_check(probe: Probe, texts: list[str], arrays: dict[str, np.ndarray], values: dict[str, torch.Tensor],
                ) -> SelfCheck:
    live, truth = arrays["live"], arrays["ground_truth"]
    live_diff = float(np.max(np.abs(live - truth))) if len(truth) else 0.0
    scale = max(1.0, float(np.max(np.abs(truth))) if len(truth) else 1.0)
    # One text at a time for the shortest, median and longest text: batching must not change any number.
    toks = probe.tokens(texts)
    lengths = np.array([len(t) for t in toks])
    picks = sorted(set(np.argsort(lengths, kind="stable")[[0, len(toks) // 2, -1]].tolist())) if toks else []
    batched_diff = 0.0
    for i in picks:
        single = collect(probe.model, [toks[i]], probe.positions([toks[i]]), [probe.neuron_hook, probe.feature_hook])
        for name in (probe.neuron_hook, probe.feature_hook):
            batched_diff = max(batched_diff, float((single[name][0] - values[name][i]).abs().max()))
    problems = []
    if live_diff > LIVE_TOLERANCE * scale:
        problems.append(f"live activations do not match the dataset (max |live - activation| = {live_diff:.4g}); "
                        "was the dataset made with this model, tokenisation (prepend_bos) and processing?")
    if batched_diff > 1e-4 * scale:
        problems.append(f"batched and one-at-a-time reads differ by {batched_diff:.3g}")
    return SelfCheck(live_max_abs_diff=live_diff, batched_max_abs_diff=batched_diff, ok=not problems,
                     message="; ".join(problems) or "ok")
