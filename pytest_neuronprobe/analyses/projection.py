"""Projection analysis (SPEC §3): how well projections of the residual stream track the neuron."""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import cast

import numpy as np
import torch

from pytest_neuronprobe.analyses.nulls import NullComparison, empirical_null
from pytest_neuronprobe.analyses.options import NAMES, Progress, ProjectionOptions
from pytest_neuronprobe.analyses.rows import analysed_rows
from pytest_neuronprobe.analyses.stats import Correlation, FloatArray, IntArray, Undefined, correlate, finite_or_none
from pytest_neuronprobe.core.models import collect, stream
from pytest_neuronprobe.core.probe import Probe

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
    random_values: FloatArray = field(default_factory=lambda: np.empty(0), repr=False, compare=False)

    def as_dict(self) -> dict[str, object]:
        return {"random": self.random.as_dict(), "neurons": None if self.neurons is None else self.neurons.as_dict()}


@dataclass(frozen=True)
class SelfCheck:
    """Live activations vs the dataset, and batched vs one-text-at-a-time reads."""

    live_max_abs_diff: float
    batched_max_abs_diff: float
    ok: bool
    message: str

    def as_dict(self) -> dict[str, object]:
        return {
            "live_max_abs_diff": finite_or_none(self.live_max_abs_diff),
            "batched_max_abs_diff": finite_or_none(self.batched_max_abs_diff),
            "ok": self.ok,
            "message": self.message,
        }


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
    options: dict[str, object] = field(repr=False)
    arrays: dict[str, FloatArray] = field(repr=False, compare=False)
    direction: FloatArray = field(repr=False, compare=False)

    @property
    def correlations(self) -> dict[str, Correlation]:
        return {name: getattr(self, name) for name in NAMES}

    def __getitem__(self, name: str) -> Correlation:
        if name not in NAMES:
            raise KeyError(f"{name!r}: projections are {', '.join(NAMES)}")
        correlation: Correlation = getattr(self, name)
        return correlation

    def as_dict(self) -> dict[str, object]:
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
        return (
            f"ProjectionResult({self.run_name!r}, split={self.split}, n={self.n}, head={_short(self.head)}, "
            f"prediction={_short(self.prediction)}{warn})"
        )


def _fmt(x: object) -> str:
    return f"{x:.3f}" if isinstance(x, float) else repr(x)


def _short(c: Correlation) -> str:
    return f"r={c.r:.3f}" if c.defined else "undefined"


def projection_hooks(probe: Probe, input_hook: str) -> list[str]:
    """Every hook the projection analysis reads."""
    L = probe.layer
    extra = [f"blocks.{L}.hook_{input_hook}", f"blocks.{L}.hook_resid_post"] if probe.is_mlp_neuron else []
    return list(dict.fromkeys([probe.neuron_hook, probe.feature_hook, probe.final_hook, *extra]))


class ProjectionPass:
    """The projection analysis' reads of one clean pass, reduced batch by batch (`add`).

    Per text it keeps the SPEC §3 numbers that need no other text (live, prediction, input, output,
    neuron_dir) and the feature vector: the head projection needs the mean-gradient direction, known only
    after the last batch. Memory is the features (4 bytes x width per text) plus one batch, whatever the
    number of hooks read. The rows in `check_rows` also keep their full neuron-hook vector for the self-check.
    """

    def __init__(self, probe: Probe, n_texts: int, input_hook: str, check_rows: Sequence[int] = ()) -> None:
        self.probe = probe
        self.n_texts = n_texts
        self.hooks = projection_hooks(probe, input_hook)
        self.input_name = f"blocks.{probe.layer}.hook_{input_hook}"
        self.output_name = f"blocks.{probe.layer}.hook_resid_post"
        names = ("live", "prediction", *(("input", "output", "neuron_dir") if probe.is_mlp_neuron else ()))
        self.scalars = {name: np.full(n_texts, np.nan) for name in names}
        self.features: torch.Tensor | None = None
        self.gradient_sum: torch.Tensor | None = None
        self.check_rows = {int(i) for i in check_rows}
        self.checked: dict[int, dict[str, torch.Tensor]] = {}
        self.seen = 0
        if probe.is_mlp_neuron:
            self.w_in = probe.model.W_in(probe.layer)[:, probe.neuron].float()
            self.w_out = probe.model.W_out(probe.layer)[probe.neuron].float()

    def add(self, rows: IntArray, values: Mapping[str, torch.Tensor]) -> None:
        """Reduce one batch: `values[hook]` is `[len(rows), d]`, `rows` index the analysed texts."""
        probe, head = self.probe, self.probe.head
        x = values[probe.feature_hook].float()
        if self.features is None or self.gradient_sum is None:  # the first batch
            self.features = torch.empty((self.n_texts, x.shape[1]), dtype=torch.float32, device=x.device)
            self.gradient_sum = torch.zeros(x.shape[1], dtype=torch.float32, device=x.device)
        index = torch.as_tensor(rows, device=x.device)
        self.features[index] = x
        with torch.inference_mode():
            self.scalars["prediction"][rows] = _np(head.predict(x))
        self.gradient_sum += head.gradient_sum(x)
        self.scalars["live"][rows] = _np(probe.neuron_values(values))
        if probe.is_mlp_neuron:
            self.scalars["input"][rows] = _np(values[self.input_name].float() @ self.w_in)
            self.scalars["output"][rows] = _np(values[self.output_name].float() @ self.w_out)
            self.scalars["neuron_dir"][rows] = _np(values[probe.final_hook].float() @ (self.w_out / self.w_out.norm()))
        for j, row in enumerate(rows.tolist()):
            if row in self.check_rows:
                self.checked[row] = {
                    probe.neuron_hook: values[probe.neuron_hook][j].clone(),
                    probe.feature_hook: x[j].clone(),
                }
        self.seen += len(rows)


def projection_pass(probe: Probe, texts: Sequence[str], input_hook: str) -> ProjectionPass:
    """An empty pass for these texts; the self-check re-reads the shortest, median and longest text alone."""
    lengths = np.array([len(t) for t in probe.tokens(texts)])
    picks = np.argsort(lengths, kind="stable")[[0, len(lengths) // 2, -1]].tolist() if len(lengths) else []
    return ProjectionPass(probe, len(texts), input_hook, check_rows=sorted(set(picks)))


def analyze_projection(
    probe: Probe,
    options: ProjectionOptions = ProjectionOptions(),
    progress: Progress | None = None,
) -> ProjectionResult:
    """Run the projection analysis of SPEC §3 on the probe's analysed texts."""
    data, _ = analysed_rows(probe.run, max_samples=options.max_samples, seed=options.seed, split=options.split)
    texts = data["text"].tolist()
    reads = projection_pass(probe, texts, options.input_hook)
    toks = probe.tokens(texts)
    for rows, values in stream(
        probe.model, toks, probe.positions(toks), reads.hooks, batch_size=options.batch_size, progress=progress
    ):
        reads.add(rows, values)
    return projection_result(probe, options, reads)


def projection_result(probe: Probe, options: ProjectionOptions, reads: ProjectionPass) -> ProjectionResult:
    """The projection analysis from a filled `projection_pass` of the analysed texts."""
    data, used_split = analysed_rows(probe.run, max_samples=options.max_samples, seed=options.seed, split=options.split)
    texts = data["text"].tolist()
    truth = data["activation"].to_numpy(dtype=np.float64)
    if reads.seen != len(texts) or reads.features is None or reads.gradient_sum is None:
        raise RuntimeError(f"projection pass read {reads.seen} of {len(texts)} texts")  # a bug, not bad input
    seed = options.seed
    x = reads.features
    direction = reads.gradient_sum / len(texts)
    arrays: dict[str, FloatArray] = {"ground_truth": truth, **reads.scalars, "head": _np(x @ direction)}
    corr = {}
    for i, name in enumerate(NAMES):
        if name in arrays:
            corr[name] = correlate(
                arrays[name],
                truth,
                label=name,
                n_resamples=options.n_resamples,
                seed=seed + i,
                x_name=name,
                y_name="ground_truth",
            )
        else:
            why = Undefined(f"absent: {NOT_MLP}")
            corr[name] = Correlation(
                r=why,
                r_squared=why,
                p_value=why,
                spearman=why,
                n=len(truth),
                ci_low=why,
                ci_high=why,
                reason=why.reason,
                label=name,
            )
    null = _null_baseline(probe, x, truth, corr["head"], options.null_directions, seed)
    if null is not None:
        arrays["null_random"] = null.random_values
    check = _self_check(probe, texts, arrays, reads.checked)
    if not check.ok:
        warnings.warn(f"{probe.run.name}: {check.message}", stacklevel=2)
    return ProjectionResult(
        run_name=probe.run.name,
        split=used_split,
        n=len(truth),
        weights=_weights(probe, reads, direction),
        null=null,
        self_check=check,
        options={**dataclasses.asdict(options), "split": used_split},
        arrays=arrays,
        direction=_np(direction),
        **corr,
    )


NOT_MLP = "the neuron is not an MLP neuron (layer_type is not pre/post)"


def _weights(probe: Probe, reads: ProjectionPass, direction: torch.Tensor) -> WeightSimilarities:
    if not probe.is_mlp_neuron:
        why = Undefined(NOT_MLP)
        return WeightSimilarities(why, why, why)
    w_in, w_out = reads.w_in, reads.w_out
    if direction.shape[0] == w_in.shape[0]:
        return WeightSimilarities(_cos(direction, w_in), _cos(direction, w_out), _cos(w_in, w_out))
    other = Undefined(f"the head reads {probe.feature_hook}, not the residual stream")
    return WeightSimilarities(other, other, _cos(w_in, w_out))


def _np(t: torch.Tensor) -> FloatArray:
    return t.detach().to("cpu", torch.float64).numpy()


def _cos(a: torch.Tensor, b: torch.Tensor) -> float | Undefined:
    na, nb = float(a.norm()), float(b.norm())
    if na == 0 or nb == 0:
        return Undefined("zero-length vector")
    return float((a.double() @ b.double()) / (na * nb))


def _moments(x: torch.Tensor, truth: FloatArray, chunk: int = 4096) -> tuple[FloatArray, FloatArray, float]:
    """(Σ (x-x̄)(x-x̄)ᵀ, Σ (x-x̄)(t-t̄), Σ (t-t̄)²) in float64 on the CPU, a chunk of rows at a time."""
    n = len(x)
    total = cast(torch.Tensor, sum(x[i : i + chunk].to("cpu", torch.float64).sum(0) for i in range(0, n, chunk)))
    mean = total.numpy() / n
    t = truth - truth.mean()
    gram = np.zeros((x.shape[1], x.shape[1]))
    cross = np.zeros(x.shape[1])
    for i in range(0, n, chunk):
        xc = x[i : i + chunk].to("cpu", torch.float64).numpy() - mean
        gram += xc.T @ xc
        cross += xc.T @ t[i : i + chunk]
    return gram, cross, float(t @ t)


def _abs_r_columns(moments: tuple[FloatArray, FloatArray, float], directions: FloatArray) -> FloatArray:
    """|Pearson r| of `x · d` with the truth for each column d of `directions` [width, K], from the moments.

    cov(x·d, t) = dᵀ Σxt and var(x·d) = dᵀ Σxx d, so no [texts, K] projection is formed; NaN where x·d is
    constant (variance below rounding).
    """
    gram, cross, stt = moments
    var = ((gram @ directions) * directions).sum(0)
    scale = (directions * directions).sum(0) * max(np.trace(gram), np.finfo(float).tiny)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.abs(directions.T @ cross) / np.sqrt(var * stt)
    return np.where(var > 1e-12 * scale, np.minimum(r, 1.0), np.nan)


def _null_baseline(
    probe: Probe,
    x: torch.Tensor,
    truth: FloatArray,
    head: Correlation,
    k: int,
    seed: int,
) -> NullBaseline | None:
    if k <= 0:
        return None
    moments = _moments(x, truth)
    gen = torch.Generator().manual_seed(seed)
    random_dirs = torch.randn(x.shape[1], k, generator=gen, dtype=torch.float64).numpy()
    r = head.r if head.defined else float("nan")
    random_values = _finite(_abs_r_columns(moments, random_dirs))
    random = empirical_null(r, random_values, label="random directions")
    neurons = None
    if probe.is_mlp_neuron and x.shape[1] == probe.model.d_model:
        w_out = probe.model.W_out(probe.layer).to("cpu", torch.float64).numpy()
        others = np.concatenate([w_out[: probe.neuron], w_out[probe.neuron + 1 :]])
        neurons = empirical_null(
            r,
            _finite(_abs_r_columns(moments, others.T)),
            label=f"other neurons' output directions (layer {probe.layer})",
        )
    return NullBaseline(random=random, neurons=neurons, random_values=random_values)


def _finite(a: FloatArray) -> FloatArray:
    return a[np.isfinite(a)]


def _self_check(
    probe: Probe, texts: list[str], arrays: dict[str, FloatArray], checked: Mapping[int, Mapping[str, torch.Tensor]]
) -> SelfCheck:
    live, truth = arrays["live"], arrays["ground_truth"]
    live_diff = float(np.max(np.abs(live - truth))) if len(truth) else 0.0
    scale = max(1.0, float(np.max(np.abs(truth))) if len(truth) else 1.0)
    # One text at a time for the shortest, median and longest text: batching must not change any number.
    toks = probe.tokens(texts)
    batched_diff = 0.0
    for i, kept in checked.items():
        single = collect(probe.model, [toks[i]], probe.positions([toks[i]]), list(kept))
        for name, value in kept.items():
            batched_diff = max(batched_diff, float((single[name][0].float() - value.float()).abs().max()))
    problems = []
    if live_diff > LIVE_TOLERANCE * scale:
        problems.append(
            f"live activations do not match the dataset (max |live - activation| = {live_diff:.4g}); "
            "was the dataset made with this model, tokenisation (prepend_bos) and processing?"
        )
    if batched_diff > 1e-4 * scale:
        problems.append(f"batched and one-at-a-time reads differ by {batched_diff:.3g}")
    return SelfCheck(
        live_max_abs_diff=live_diff,
        batched_max_abs_diff=batched_diff,
        ok=not problems,
        message="; ".join(problems) or "ok",
    )
