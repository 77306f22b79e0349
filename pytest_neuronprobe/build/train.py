"""Training the heads that read residual features: linear and hidden-layer regression, classification."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F

from pytest_neuronprobe.analyses.head_fit import MLP_STEPS, bin_labels, fit_mlp, ridge_fit
from pytest_neuronprobe.build.log import log
from pytest_neuronprobe.core.errors import NeuronProbeError

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = ["MLP_STEPS", "FloatArray", "Mask", "TrainedHead", "train_feature_head"]

FloatArray = npt.NDArray[np.float64]
Mask = npt.NDArray[np.bool_]


@dataclass
class TrainedHead:
    """A trained head: its state dict, its prediction on every row, and what config.json records of it."""

    state: dict[str, torch.Tensor]
    predictions: FloatArray
    config: dict[str, object] = field(default_factory=dict)  # extra top-level keys of config.json
    head_config: dict[str, object] = field(default_factory=dict)  # extra keys of config.json's head_config
    model: PreTrainedModel | None = None  # token heads: the fine-tuned model (written as base_model/)
    tokenizer: PreTrainedTokenizerBase | None = None


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
    say = (lambda msg: log(msg, progress)) if progress else None
    bin_edges: list[float] | None = None
    if head_type == "regression" and hidden_dim is None:
        w, b = ridge_fit(x_train.double().numpy(), y_train.astype(np.float64))
        state = {
            "output.weight": torch.tensor(w, dtype=torch.float32)[None, :],
            "output.bias": torch.tensor([b], dtype=torch.float32),
        }
        log("regression head: closed-form least squares", progress)
    elif head_type == "regression":
        y_mean, y_std = float(y_train.mean()), float(y_train.std()) or 1.0
        target = torch.tensor((y_train - y_mean) / y_std, dtype=torch.float32)[:, None]
        state = fit_mlp(x_train, target, out_dim=1, hidden_dim=hidden_dim, loss="mse", seed=seed, log=say, steps=steps)
        state["output.weight"] = state["output.weight"] * y_std
        state["output.bias"] = state["output.bias"] * y_std + y_mean
    else:
        edges = _bin_edges(y_train, n_bins)
        labels = bin_labels(y_train, edges)
        state = fit_mlp(
            x_train, labels, out_dim=n_bins, hidden_dim=hidden_dim, loss="ce", seed=seed, log=say, steps=steps
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
