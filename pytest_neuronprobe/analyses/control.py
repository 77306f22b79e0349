"""Control task (Hewitt & Liang 2019) and input probe: baselines for the head's r.

The control task retrains a head of the head's own type and size on the same features of the train
rows with the targets shuffled (seeded, several shuffles) and correlates its prediction with the ground
truth of the analysed rows: what that capacity reaches on meaningless targets. The input probe is a
linear probe fitted on the neuron's own input (the `input` hook of SPEC §3, train rows): how much of the
neuron is readable from what computes it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from pytest_neuronprobe.analyses.head_fit import bin_labels, fit_mlp, ridge_fit, ridge_fit_columns
from pytest_neuronprobe.analyses.options import NAMES, ControlOptions, Progress
from pytest_neuronprobe.analyses.rows import analysed_rows, train_rows
from pytest_neuronprobe.analyses.stats import (
    Correlation,
    FloatArray,
    Number,
    Undefined,
    as_number,
    correlate,
    finite_or_none,
    pearson,
)
from pytest_neuronprobe.core.heads import LinearHead
from pytest_neuronprobe.core.probe import Probe

TOKEN_REASON = (
    "a token head is the model's own fine-tuned blocks: its control task would fine-tune them again (not done)"
)
NO_TRAIN_REASON = "no train rows to fit on (rows with split == 'train' that are not analysed rows)"
NOT_MLP_REASON = "the neuron is not an MLP neuron (layer_type is not pre/post): it has no `input` hook"
_NUMBERS = ("r", "r_sd", "r_min", "r_max", "head_r", "selectivity")


@dataclass(frozen=True)
class ControlBaseline:
    """Control heads' r on the analysed rows (mean and spread over shuffles) and the head's selectivity.

    ``selectivity = head_r - r``, where ``head_r`` is the head's own prediction r on the same rows.
    """

    r: Number
    r_sd: Number
    r_min: Number
    r_max: Number
    head_r: Number
    selectivity: Number
    n_shuffles: int
    n_train: int
    n: int
    fit: str = ""
    #: Each shuffle's r, and how many control heads predicted a constant (counted as r = 0).
    shuffle_r: tuple[float, ...] = ()
    n_constant: int = 0
    reason: str | None = None

    def __post_init__(self) -> None:
        for name in _NUMBERS:
            object.__setattr__(self, name, as_number(getattr(self, name), self.reason or "undefined"))

    @property
    def defined(self) -> bool:
        """True when the control r exists."""
        return not isinstance(self.r, Undefined)

    def as_dict(self) -> dict[str, Any]:
        """Undefined numbers are ``None`` with a sibling ``<name>_reason``."""
        d: dict[str, Any] = {}
        for name in _NUMBERS:
            value = getattr(self, name)
            d[name] = finite_or_none(value)
            if d[name] is None:
                d[f"{name}_reason"] = value.reason if isinstance(value, Undefined) else "undefined"
        d.update(n_shuffles=self.n_shuffles, n_train=self.n_train, n=self.n, fit=self.fit)
        d.update(shuffle_r=list(self.shuffle_r), n_constant=self.n_constant)
        return d

    def __repr__(self) -> str:
        if not self.defined:
            return f"ControlBaseline(undefined — {self.reason}, head_r={_fmt(self.head_r)}, n={self.n})"
        return (
            f"ControlBaseline(r={self.r:.3f} (sd {_fmt(self.r_sd)}, range [{self.r_min:.3f}, {self.r_max:.3f}] over "
            f"{self.n_shuffles} shuffles), head_r={_fmt(self.head_r)}, selectivity={_fmt(self.selectivity)}, "
            f"n={self.n}, n_train={self.n_train}, {self.fit})"
        )


def _fmt(x: object) -> str:
    return f"{x:.3f}" if isinstance(x, float) else repr(x)


@dataclass(frozen=True)
class ControlResult:
    """The control task and the input probe of one run (`summary.json` sections `control`, `input_probe`)."""

    run_name: str
    split: str
    control: ControlBaseline
    input_probe: Correlation
    options: dict[str, object] = field(repr=False)

    def as_dict(self) -> dict[str, object]:
        return {
            "control": {**self.control.as_dict(), "options": dict(self.options)},
            "input_probe": self.input_probe.as_dict(),
        }

    def __repr__(self) -> str:
        probe = f"r={self.input_probe.r:.3f}" if self.input_probe.defined else f"undefined ({self.input_probe.reason})"
        return f"ControlResult({self.run_name!r}, split={self.split}, control={self.control!r}, input_probe={probe})"


@dataclass(frozen=True)
class HeadShape:
    """What a control head copies of the real one: type, hidden width, outputs, and how classes become a value."""

    head_type: str
    hidden_dim: int | None
    out_dim: int
    bin_centres: torch.Tensor | None = None
    bin_edges: tuple[float, ...] | None = None

    @classmethod
    def of(cls, head: LinearHead, bin_edges: tuple[float, ...] | None) -> HeadShape:
        hidden = None if head.hidden_weight is None else int(head.hidden_weight.shape[0])
        centres = None if head.bin_centres is None else head.bin_centres.cpu()
        return cls(head.head_type, hidden, int(head.output_weight.shape[0]), centres, bin_edges)

    @property
    def fit(self) -> str:
        if self.head_type == "regression" and self.hidden_dim is None:
            return "closed-form least squares"
        return "full-batch AdamW"


def control_predictions(
    shape: HeadShape, x_train: torch.Tensor, y: FloatArray, x_eval: torch.Tensor, *, seed: int, steps: int
) -> FloatArray:
    """A head of `shape` fitted to (`x_train`, `y`) as make-run fits one, predicting `x_eval`."""
    if shape.head_type == "regression" and shape.hidden_dim is None:
        w, b = ridge_fit(x_train.double().numpy(), y)
        out: FloatArray = x_eval.double().numpy() @ w + b
        return out
    if shape.head_type == "regression":
        mean, sd = float(y.mean()), float(y.std()) or 1.0
        target = torch.tensor((y - mean) / sd, dtype=torch.float32)[:, None]
        state = fit_mlp(x_train, target, out_dim=1, hidden_dim=shape.hidden_dim, loss="mse", seed=seed, steps=steps)
        state["output.weight"], state["output.bias"] = state["output.weight"] * sd, state["output.bias"] * sd + mean
    else:
        edges = shape.bin_edges or tuple(np.quantile(y, np.linspace(0.0, 1.0, shape.out_dim + 1)))
        labels = bin_labels(y, edges)
        state = fit_mlp(
            x_train, labels, out_dim=shape.out_dim, hidden_dim=shape.hidden_dim, loss="ce", seed=seed, steps=steps
        )
    head = LinearHead(
        shape.head_type,
        state["output.weight"],
        state["output.bias"],
        state.get("hidden.weight"),
        state.get("hidden.bias"),
        shape.bin_centres,
    )
    with torch.inference_mode():
        return head.predict(x_eval.float()).double().numpy()


def control_task(
    shape: HeadShape,
    x_train: torch.Tensor,
    y_train: FloatArray,
    x_eval: torch.Tensor,
    y_eval: FloatArray,
    head_prediction: FloatArray,
    *,
    shuffles: int,
    seed: int,
    steps: int,
) -> ControlBaseline:
    """Shuffle `k` (k = 0 … shuffles-1) permutes the train targets with `default_rng(seed + k)` and seeds the
    head's initialisation with `seed + k`; its r is Pearson's with `y_eval` (a constant prediction counts 0)."""
    head_r: Number = as_number(pearson(head_prediction, y_eval), "the head's prediction r is undefined")
    sizes = {"n_shuffles": shuffles, "n_train": len(y_train), "n": len(y_eval), "fit": shape.fit}
    why = None if len(y_train) else NO_TRAIN_REASON
    if why is None and (len(y_eval) < 3 or np.ptp(y_eval) == 0):
        why = "fewer than 3 analysed rows or a constant ground truth"
    if why is not None:
        u = Undefined(why)
        return ControlBaseline(u, u, u, u, head_r, u, reason=why, **sizes)  # type: ignore[arg-type]
    shuffled = np.stack(
        [y_train[np.random.default_rng(seed + k).permutation(len(y_train))] for k in range(shuffles)], 1
    )
    if shape.fit == "closed-form least squares":  # one decomposition of the features serves every shuffle
        w, b = ridge_fit_columns(x_train.double().numpy(), shuffled)
        predictions = list((x_eval.double().numpy() @ w + b).T)
    else:
        predictions = [
            control_predictions(shape, x_train, shuffled[:, k], x_eval, seed=seed + k, steps=steps)
            for k in range(shuffles)
        ]
    found = [pearson(p, y_eval) for p in predictions]
    rs = [0.0 if r is None else r for r in found]
    r = float(np.mean(rs))
    sd: Number = float(np.std(rs, ddof=1)) if shuffles > 1 else Undefined("one shuffle: no spread")
    selectivity: Number = head_r - r if isinstance(head_r, float) else Undefined("the head's prediction r is undefined")
    return ControlBaseline(
        r,
        sd,
        min(rs),
        max(rs),
        head_r,
        selectivity,
        shuffle_r=tuple(rs),
        n_constant=found.count(None),
        **sizes,  # type: ignore[arg-type]
    )


def input_probe(
    x_train: FloatArray, y_train: FloatArray, x_eval: FloatArray, y_eval: FloatArray, *, n_resamples: int, seed: int
) -> Correlation:
    """A linear probe (:func:`ridge_fit`) fitted on the train rows, correlated on the analysed rows."""
    if len(y_train) == 0:
        return _undefined(NO_TRAIN_REASON, len(y_eval))
    w, b = ridge_fit(x_train, y_train)
    return correlate(
        x_eval @ w + b,
        y_eval,
        label="input_probe",
        n_resamples=n_resamples,
        seed=seed,
        x_name="input probe",
        y_name="ground_truth",
    )


def _undefined(reason: str, n: int) -> Correlation:
    u = Undefined(reason)
    return Correlation(u, u, u, u, n, u, u, reason=reason, label="input_probe")


def analyze_control(
    probe: Probe, options: ControlOptions = ControlOptions(), progress: Progress | None = None
) -> ControlResult:
    """The control task and the input probe: train rows fitted, analysed rows (the projection's) evaluated."""
    popt = options.projection
    data, used = analysed_rows(probe.run, max_samples=popt.max_samples, seed=popt.seed, split=popt.split)
    train = train_rows(probe.run, data, max_samples=popt.max_samples, seed=popt.seed)
    input_name = f"blocks.{probe.layer}.hook_{popt.input_hook}"
    hooks = [probe.feature_hook, *([input_name] if probe.is_mlp_neuron else [])]
    y_eval = data["activation"].to_numpy(dtype=np.float64)
    y_train = train["activation"].to_numpy(dtype=np.float64)
    evals = probe.read(data["text"].tolist(), hooks, batch_size=popt.batch_size, progress=progress)
    fits = (
        probe.read(train["text"].tolist(), hooks, batch_size=popt.batch_size, progress=progress) if len(train) else {}
    )
    x_eval = evals[probe.feature_hook].float()
    with torch.inference_mode():
        prediction = probe.head.predict(x_eval).double().cpu().numpy()
    x_train = fits[probe.feature_hook].float().cpu() if fits else x_eval.cpu()[:0]
    if isinstance(probe.head, LinearHead):
        shape = HeadShape.of(probe.head, probe.run.config.bin_edges)
        control = control_task(
            shape,
            x_train,
            y_train,
            x_eval.cpu(),
            y_eval,
            prediction,
            shuffles=options.shuffles,
            seed=popt.seed,
            steps=options.steps,
        )
    else:
        u = Undefined(TOKEN_REASON)
        head_r = as_number(pearson(prediction, y_eval), "the head's prediction r is undefined")
        control = ControlBaseline(
            u, u, u, u, head_r, u, options.shuffles, len(y_train), len(y_eval), "not fitted", reason=TOKEN_REASON
        )
    if probe.is_mlp_neuron:
        probe_r = input_probe(
            _f64(fits[input_name]) if fits else np.empty((0, 0)),
            y_train,
            _f64(evals[input_name]),
            y_eval,
            n_resamples=popt.n_resamples,
            seed=popt.seed + len(NAMES),
        )
    else:
        probe_r = _undefined(NOT_MLP_REASON, len(y_eval))
    return ControlResult(probe.run.name, used, control, probe_r, {**dataclasses.asdict(options), "split": used})


def _f64(t: torch.Tensor) -> FloatArray:
    return t.detach().to("cpu", torch.float64).numpy()
