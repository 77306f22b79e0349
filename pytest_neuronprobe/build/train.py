"""Training the heads that read residual features: linear and hidden-layer regression, classification."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F

from pytest_neuronprobe.build.log import log
from pytest_neuronprobe.core.errors import NeuronProbeError

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = ["MLP_STEPS", "FloatArray", "Mask", "TrainedHead", "train_feature_head"]

FloatArray = npt.NDArray[np.float64]
Mask = npt.NDArray[np.bool_]

_RIDGE = 1e-8  # relative to the mean kept eigenvalue of the centred features' Gram matrix
_RCOND = 1e-6  # singular values below this fraction of the largest are float32 rounding noise

# Training settings of the trained heads (full batch Adam on standardised inputs/targets).
MLP_STEPS = 400
_MLP_LR = 1e-2
_MLP_WEIGHT_DECAY = 1e-3


@dataclass
class TrainedHead:
    """A trained head: its state dict, its prediction on every row, and what config.json records of it."""

    state: dict[str, torch.Tensor]
    predictions: FloatArray
    config: dict[str, object] = field(default_factory=dict)  # extra top-level keys of config.json
    head_config: dict[str, object] = field(default_factory=dict)  # extra keys of config.json's head_config
    model: PreTrainedModel | None = None  # token heads: the fine-tuned model (written as base_model/)
    tokenizer: PreTrainedTokenizerBase | None = None


def _ridge_fit(x: FloatArray, y: FloatArray) -> tuple[FloatArray, float]:
    """Minimum-norm least squares with bias, with a tiny ridge (closed form, float64).

    Directions of the centred features whose singular value is below `_RCOND` of the largest are
    rounding noise of float32 features (under `compat` processing every residual vector sums to zero,
    so one such direction always exists) and get weight zero, as `lstsq(rcond=_RCOND)` would give them.
    """
    x_mean = x.mean(0)
    y_mean = float(y.mean())
    u, sv, vt = np.linalg.svd(x - x_mean, full_matrices=False)
    keep = sv > _RCOND * (sv[0] if len(sv) else 0.0)
    lam = _RIDGE * float(np.mean(sv[keep] ** 2)) if keep.any() else 0.0
    gain = np.where(keep, sv / np.where(keep, sv**2 + lam, 1.0), 0.0)
    w = vt.T @ (gain * (u.T @ (y - y_mean)))
    return w, float(y_mean - x_mean @ w)


def train_feature_head(
    head_type: str,
    features: torch.Tensor,
    activations: FloatArray,
    train: Mask,
    *,
    hidden_dim: int | None,
    n_bins: int,
    seed: int,
    progress: bool,
    steps: int,
) -> TrainedHead:
    """Regression or classification head on the train rows; predictions on every row."""
    x_train = features[torch.as_tensor(train)]
    y_train = activations[train]
    extra: dict[str, object] = {}
    bin_edges: list[float] | None = None
    if head_type == "regression" and hidden_dim is None:
        w, b = _ridge_fit(x_train.double().numpy(), y_train.astype(np.float64))
        state = {
            "output.weight": torch.tensor(w, dtype=torch.float32)[None, :],
            "output.bias": torch.tensor([b], dtype=torch.float32),
        }
        log("regression head: closed-form least squares", progress)
    elif head_type == "regression":
        y_mean, y_std = float(y_train.mean()), float(y_train.std()) or 1.0
        target = torch.tensor((y_train - y_mean) / y_std, dtype=torch.float32)[:, None]
        state = _fit_mlp(
            x_train, target, out_dim=1, hidden_dim=hidden_dim, loss="mse", seed=seed, progress=progress, steps=steps
        )
        state["output.weight"] = state["output.weight"] * y_std
        state["output.bias"] = state["output.bias"] * y_std + y_mean
    else:
        edges = _bin_edges(y_train, n_bins)
        labels = torch.as_tensor(np.searchsorted(edges[1:-1], y_train, side="right"), dtype=torch.long)
        state = _fit_mlp(
            x_train, labels, out_dim=n_bins, hidden_dim=hidden_dim, loss="ce", seed=seed, progress=progress, steps=steps
        )
        bin_edges = [float(e) for e in edges]
        extra["bin_edges"] = bin_edges
        extra["n_bins"] = n_bins
    state = {k: v.detach().float().contiguous() for k, v in state.items()}
    return TrainedHead(state=state, predictions=_predict(state, features, bin_edges), config=extra)


def _bin_edges(values: FloatArray, n_bins: int) -> FloatArray:
    edges = np.quantile(values.astype(np.float64), np.linspace(0.0, 1.0, n_bins + 1))
    edges[0], edges[-1] = float(values.min()), float(values.max())
    if np.any(np.diff(edges) <= 0):
        raise NeuronProbeError(
            f"the train activations have too few distinct values for {n_bins} quantile bins "
            f"(edges {np.round(edges, 6).tolist()}); use fewer bins or more texts",
            key="n_bins",
        )
    return edges


def _fit_mlp(
    x: torch.Tensor,
    target: torch.Tensor,
    *,
    out_dim: int,
    hidden_dim: int | None,
    loss: str,
    seed: int,
    progress: bool,
    steps: int,
) -> dict[str, torch.Tensor]:
    """Full-batch Adam on standardised inputs; the standardisation is folded back into the first layer."""
    x = x.float()
    mu = x.mean(0)
    scale = float((x - mu).pow(2).mean().sqrt()) or 1.0
    xs = (x - mu) / scale
    torch.manual_seed(seed)
    d = x.shape[1]
    layers: dict[str, torch.nn.Module] = {}
    if hidden_dim is not None:
        layers["hidden"] = torch.nn.Linear(d, hidden_dim)
    layers["output"] = torch.nn.Linear(hidden_dim or d, out_dim)
    net = torch.nn.ModuleDict(layers)
    opt = torch.optim.AdamW(net.parameters(), lr=_MLP_LR, weight_decay=_MLP_WEIGHT_DECAY)

    def forward(inp: torch.Tensor) -> torch.Tensor:
        if "hidden" in net:
            inp = F.gelu(net["hidden"](inp))
        out: torch.Tensor = net["output"](inp)
        return out

    every = max(1, steps // 4)
    for step in range(steps):
        out = forward(xs)
        value = F.mse_loss(out, target) if loss == "mse" else F.cross_entropy(out, target)
        opt.zero_grad(set_to_none=True)
        torch.autograd.backward(value)
        opt.step()
        if (step + 1) % every == 0:
            log(f"  step {step + 1}/{steps} {loss} {value.item():.4f}", progress)
    state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    first = "hidden" if hidden_dim is not None else "output"
    w = state[f"{first}.weight"] / scale
    state[f"{first}.weight"] = w
    state[f"{first}.bias"] = state[f"{first}.bias"] - w @ mu
    return state


def _predict(state: dict[str, torch.Tensor], x: torch.Tensor, bin_edges: Sequence[float] | None) -> FloatArray:
    """SPEC §2 prediction of a regression/classification state dict on feature rows."""
    with torch.no_grad():
        h = x.float()
        if "hidden.weight" in state:
            h = F.gelu(F.linear(h, state["hidden.weight"], state["hidden.bias"]))
        logits = F.linear(h, state["output.weight"], state["output.bias"])
        if bin_edges is None:
            out: FloatArray = logits[:, 0].double().numpy()
            return out
        edges = torch.tensor(bin_edges, dtype=torch.float32)
        centres = (edges[:-1] + edges[1:]) / 2
        out = (logits.softmax(-1) * centres).sum(-1).double().numpy()
        return out
