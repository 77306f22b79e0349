"""Prediction heads (SPEC §2): loading head files safely, batched prediction, the mean-gradient direction."""

from __future__ import annotations

import pickle
import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from pytest_neuronprobe.core.errors import NeuronProbeError
from pytest_neuronprobe.core.files import check_input_file

if TYPE_CHECKING:  # pragma: no cover
    from transformers import PreTrainedTokenizerBase


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read `head.pt` (`weights_only=True`: never runs pickled code) or `head.safetensors`."""
    if check_input_file(path, "head", "head file", "a state dict of tensors") == 0:
        raise NeuronProbeError("head file is empty (0 bytes)", path=path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # e.g. torch's note on the pickle protocol of a file it refuses
                state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch's own text suggests weights_only=False; keep only the line naming what was refused.
        why = re.search(r"^.*(?:GLOBAL|Unsupported|unsupported).*$", str(exc), re.MULTILINE)
        refused = f": {why.group(0).split('. ')[0].strip()[:200]}" if why else ""
        raise NeuronProbeError(
            "refused to load: the file holds objects other than tensors, and loading them could "
            "run code (loaded with weights_only=True); expected a state dict of tensors" + refused,
            path=path,
        ) from None
    except Exception as exc:  # noqa: BLE001 - torch/safetensors raise many types for a damaged file
        raise NeuronProbeError(
            "not a readable head file (truncated or corrupt?); expected a state dict saved with "
            f"torch.save or safetensors: {type(exc).__name__}: "
            f"{(str(exc).splitlines() or [''])[0][:200]}",
            path=path,
        ) from None
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise NeuronProbeError("expected a state dict mapping names to tensors", path=path)
    for key, value in state.items():
        if not value.is_floating_point():
            raise NeuronProbeError(
                f"tensor has dtype {str(value.dtype).removeprefix('torch.')}; expected a floating-point dtype",
                path=path,
                key=key,
            )
    return {k: v.detach().to(torch.float32) for k, v in state.items()}


class Head:
    """A prediction from a `[N, d_model]` feature batch, differentiable in the features."""

    head_type: str

    def predict(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def smooth(self, x: torch.Tensor) -> torch.Tensor:
        """The function whose gradient defines the direction (the prediction itself unless it is piecewise constant)."""
        return self.predict(x)

    def direction(self, x: torch.Tensor) -> torch.Tensor:
        """Mean over rows of d prediction / d x (SPEC §2); exact for linear heads."""
        return self.gradient_sum(x) / max(len(x), 1)

    def gradient_sum(self, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """Sum over rows of d prediction / d x (so batches can be summed and divided once)."""
        with torch.enable_grad(), torch.inference_mode(False):
            total = torch.zeros(x.shape[1], dtype=torch.float32, device=x.device)
            for start in range(0, len(x), batch_size):
                chunk = x[start : start + batch_size].detach().clone().float().requires_grad_(True)
                (grad,) = torch.autograd.grad(self.smooth(chunk).sum(), chunk)
                total += grad.sum(0)
        return total


@dataclass
class LinearHead(Head):
    """`output(gelu(hidden(x)))` or `output(x)`; regression or classification."""

    head_type: str
    output_weight: torch.Tensor
    output_bias: torch.Tensor
    hidden_weight: torch.Tensor | None = None
    hidden_bias: torch.Tensor | None = None
    bin_centres: torch.Tensor | None = None

    def to(self, device: torch.device) -> LinearHead:
        for name in ("output_weight", "output_bias", "hidden_weight", "hidden_bias", "bin_centres"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, value.to(device))
        return self

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        if self.hidden_weight is not None:
            x = F.gelu(F.linear(x, self.hidden_weight, self.hidden_bias))
        return F.linear(x, self.output_weight, self.output_bias)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.logits(x)
        if self.head_type == "regression":
            return logits[:, 0]
        if self.bin_centres is not None:
            return (logits.softmax(-1) * self.bin_centres).sum(-1)
        return logits.argmax(-1).float()

    def smooth(self, x: torch.Tensor) -> torch.Tensor:
        if self.head_type == "classification" and self.bin_centres is None:
            # argmax has zero gradient almost everywhere: use the expected class index instead.
            probs = self.logits(x).softmax(-1)
            return (probs * torch.arange(probs.shape[-1], device=probs.device)).sum(-1)
        return self.predict(x)

    @property
    def has_hidden(self) -> bool:
        return self.hidden_weight is not None

    def output_direction(self) -> torch.Tensor:
        """The seed's approximation for regression: `output.weight[0]` (hidden-layer space if there is one)."""
        return self.output_weight[0]


@dataclass
class TokenHead(Head):
    """The model's own logits at the position, restricted to the digits: `sum_i i * softmax(digit_logits)_i`."""

    unembed: Callable[[torch.Tensor], torch.Tensor]
    digit_ids: torch.Tensor
    head_type: str = "token"

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        digit_logits = self.unembed(x)[:, self.digit_ids].float()
        probs = digit_logits.softmax(-1)
        return (probs * torch.arange(10, device=probs.device, dtype=probs.dtype)).sum(-1)


def linear_head(
    state: dict[str, torch.Tensor],
    *,
    head_type: str,
    d_model: int,
    path: Path,
    feature: str = "d_model",
    bin_edges: Sequence[float] | None = None,
) -> LinearHead:
    """Validate a regression/classification state dict against the feature width `d_model` and the bins.

    `feature` names that width in messages (`d_model`, or the hook the head reads when that is narrower).
    """
    for key in ("output.weight", "output.bias"):
        if key not in state:
            raise NeuronProbeError(f"missing tensor {key!r}; found {sorted(state) or 'none'}", path=path, key=key)
    out_w, out_b = state["output.weight"], state["output.bias"]
    hid_w, hid_b = state.get("hidden.weight"), state.get("hidden.bias")
    if (hid_w is None) != (hid_b is None):
        raise NeuronProbeError("hidden.weight and hidden.bias must come together", path=path, key="hidden.weight")
    if out_w.ndim != 2 or out_b.ndim != 1 or out_b.shape[0] != out_w.shape[0]:
        raise NeuronProbeError(
            f"expected output.weight [out, in] and output.bias [out], got {list(out_w.shape)} and {list(out_b.shape)}",
            path=path,
            key="output.weight",
        )
    reads = d_model
    if hid_w is not None:
        if hid_w.ndim != 2 or hid_w.shape[1] != d_model:
            raise NeuronProbeError(
                f"expected hidden.weight [hidden_dim, {feature}={d_model}], got {list(hid_w.shape)}",
                path=path,
                key="hidden.weight",
            )
        assert hid_b is not None  # they come together (checked above)
        if hid_b.shape != (hid_w.shape[0],):
            raise NeuronProbeError(
                f"expected hidden.bias [{hid_w.shape[0]}], got {list(hid_b.shape)}", path=path, key="hidden.bias"
            )
        reads = hid_w.shape[0]
    if out_w.shape[1] != reads:
        what = f"hidden_dim={reads}" if hid_w is not None else f"{feature}={d_model}"
        raise NeuronProbeError(
            f"output.weight reads {out_w.shape[1]} features but the head feeds it {what}",
            path=path,
            key="output.weight",
        )
    centres = _bin_centres(head_type, out_w, bin_edges, path)
    for key, value in state.items():
        if not torch.isfinite(value).all():
            raise NeuronProbeError("tensor holds NaN or inf", path=path, key=key)
    return LinearHead(
        head_type=head_type,
        output_weight=out_w,
        output_bias=out_b,
        hidden_weight=hid_w,
        hidden_bias=hid_b,
        bin_centres=centres,
    )


def _bin_centres(
    head_type: str, out_w: torch.Tensor, bin_edges: Sequence[float] | None, path: Path
) -> torch.Tensor | None:
    """Check the output count against the head type and bins; the bins' centres for a binned classifier."""
    centres = None
    if head_type == "regression" and out_w.shape[0] != 1:
        raise NeuronProbeError(
            f"a regression head has one output; output.weight has {out_w.shape[0]}", path=path, key="output.weight"
        )
    if head_type == "classification":
        if bin_edges is not None:
            if out_w.shape[0] != len(bin_edges) - 1:
                raise NeuronProbeError(
                    f"{len(bin_edges) - 1} bins (from bin_edges) but output.weight has {out_w.shape[0]} classes",
                    path=path,
                    key="output.weight",
                )
            edges = torch.tensor(bin_edges, dtype=torch.float32)
            centres = (edges[:-1] + edges[1:]) / 2
        elif out_w.shape[0] < 2:
            raise NeuronProbeError("a classification head needs at least 2 classes", path=path, key="output.weight")
    return centres


def digit_token_ids(
    tokenizer: PreTrainedTokenizerBase, digit_tokens: Sequence[int] | None, vocab_size: int, *, path: Path
) -> torch.Tensor:
    """`head_config.digit_tokens`, else the tokenizer's single-token ids for "0".."9"."""
    if digit_tokens is None:
        ids = []
        for d in range(10):
            enc = tokenizer.encode(str(d), add_special_tokens=False)
            if len(enc) != 1:
                raise NeuronProbeError(
                    f"digit {d!r} is not a single token for this tokenizer ({enc}); set head_config.digit_tokens",
                    path=path,
                    key="head_config.digit_tokens",
                )
            ids.append(enc[0])
        digit_tokens = ids
    bad = [t for t in digit_tokens if not 0 <= t < vocab_size]
    if bad:
        raise NeuronProbeError(
            f"digit token ids {bad} are outside the vocabulary (size {vocab_size})",
            path=path,
            key="head_config.digit_tokens",
        )
    return torch.tensor(list(digit_tokens), dtype=torch.long)
