"""Fitting heads on feature rows, one recipe for `make-run`'s heads and the control task's.

The closed form (linear regression heads, the input probe) and full-batch AdamW on standardised
inputs (hidden-layer and classification heads).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F

__all__ = ["MLP_STEPS", "bin_labels", "fit_mlp", "ridge_fit", "ridge_fit_columns"]

FloatArray = npt.NDArray[np.float64]

RIDGE = 1e-8  # relative to the mean kept eigenvalue of the centred features' Gram matrix
RCOND = 1e-6  # singular values below this fraction of the largest are float32 rounding noise

# Training settings of the trained heads (full batch AdamW on standardised inputs/targets).
MLP_STEPS = 400
MLP_LR = 1e-2
MLP_WEIGHT_DECAY = 1e-3


def ridge_fit(x: FloatArray, y: FloatArray) -> tuple[FloatArray, float]:
    """Minimum-norm least squares with bias, with a tiny ridge (closed form, float64): (weights, bias).

    Directions of the centred features whose singular value is below `RCOND` of the largest are
    rounding noise of float32 features (under `compat` processing every residual vector sums to zero,
    so one such direction always exists) and get weight zero, as `lstsq(rcond=RCOND)` would give them.
    """
    w, b = ridge_fit_columns(x, y[:, None])
    return w[:, 0], float(b[0])


def ridge_fit_columns(x: FloatArray, y: FloatArray) -> tuple[FloatArray, FloatArray]:
    """:func:`ridge_fit` of each column of `y` [n, k] on the same `x`, one decomposition for all: ([d, k], [k])."""
    x_mean = x.mean(0)
    y_mean = y.mean(0)
    u, sv, vt = np.linalg.svd(x - x_mean, full_matrices=False)
    keep = sv > RCOND * (sv[0] if len(sv) else 0.0)
    lam = RIDGE * float(np.mean(sv[keep] ** 2)) if keep.any() else 0.0
    gain = np.where(keep, sv / np.where(keep, sv**2 + lam, 1.0), 0.0)
    w = vt.T @ (gain[:, None] * (u.T @ (y - y_mean)))
    return w, y_mean - x_mean @ w


def bin_labels(values: FloatArray, edges: npt.ArrayLike) -> torch.Tensor:
    """The class of each value under bin `edges` (the outer edges are open: below the first is class 0)."""
    inner = np.asarray(edges, dtype=np.float64)[1:-1]
    return torch.as_tensor(np.searchsorted(inner, values, side="right"), dtype=torch.long)


def fit_mlp(
    x: torch.Tensor,
    target: torch.Tensor,
    *,
    out_dim: int,
    hidden_dim: int | None,
    loss: str,
    seed: int,
    steps: int,
    log: Callable[[str], None] | None = None,
) -> dict[str, torch.Tensor]:
    """Full-batch AdamW on standardised inputs; the standardisation is folded back into the first layer.

    `loss` is `mse` (regression, `target` [n, 1]) or `ce` (classification, `target` class indices).
    """
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
    opt = torch.optim.AdamW(net.parameters(), lr=MLP_LR, weight_decay=MLP_WEIGHT_DECAY)

    def forward(inp: torch.Tensor) -> torch.Tensor:
        if "hidden" in net:
            inp = F.gelu(net["hidden"](inp))
        out: torch.Tensor = net["output"](inp)
        return out

    every = max(1, steps // 4)
    with torch.enable_grad(), torch.inference_mode(False):
        for step in range(steps):
            out = forward(xs)
            value = F.mse_loss(out, target) if loss == "mse" else F.cross_entropy(out, target)
            opt.zero_grad(set_to_none=True)
            torch.autograd.backward(value)
            opt.step()
            if log is not None and (step + 1) % every == 0:
                log(f"  step {step + 1}/{steps} {loss} {value.item():.4f}")
    state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    first = "hidden" if hidden_dim is not None else "output"
    w = state[f"{first}.weight"] / scale
    state[f"{first}.weight"] = w
    state[f"{first}.bias"] = state[f"{first}.bias"] - w @ mu
    return state
