"""A run bound to its model and head: the hooks it reads, validated against the model."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from pytest_neuronprobe.core.contract import check_contract
from pytest_neuronprobe.core.errors import NeuronProbeError
from pytest_neuronprobe.core.heads import Head, LinearHead, TokenHead, digit_token_ids, linear_head, load_state_dict
from pytest_neuronprobe.core.models import (
    LoadedModel,
    Patch,
    collect,
    forward_read,
    hook_layer,
    hook_name,
    load_model,
)
from pytest_neuronprobe.core.runs import Run
from pytest_neuronprobe.core.tokens import encode, positions


@dataclass
class Probe:
    """Everything an analysis needs: run, model, head, hook names, one device."""

    run: Run
    model: LoadedModel
    head: Head
    neuron_hook: str
    feature_hook: str
    final_hook: str
    _tokens: dict[tuple[str, ...], list[list[int]]] = field(default_factory=dict, repr=False)

    @property
    def layer(self) -> int:
        return self.run.layer

    @property
    def neuron(self) -> int:
        return self.run.neuron

    @property
    def is_mlp_neuron(self) -> bool:
        return self.neuron_hook.endswith(("mlp.hook_pre", "mlp.hook_post"))

    @property
    def device(self) -> torch.device:
        return self.model.device

    def tokens(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids per text (SPEC §1 tokenisation), memoised per text list."""
        key = tuple(texts)
        if key not in self._tokens:
            self._tokens[key] = encode(
                self.model, list(texts), prepend_bos=self.run.config.prepend_bos, source=self.run.dataset_path
            )
        return self._tokens[key]

    def positions(self, token_lists: Sequence[Sequence[int]]) -> np.ndarray:
        texts = next((key for key, value in self._tokens.items() if value is token_lists), None)
        return positions(token_lists, self.run.config.token_pos, source=self.run.config_path, texts=texts)

    def read(
        self,
        texts: Sequence[str],
        hooks: Sequence[str],
        *,
        batch_size: int = 32,
        patch: Patch | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Hook values at each text's `token_pos`, `[len(texts), d]` per hook."""
        toks = self.tokens(texts)
        return collect(
            self.model,
            toks,
            self.positions(toks),
            list(dict.fromkeys(hooks)),
            batch_size=batch_size,
            patch=patch,
            progress=progress,
        )

    def neuron_values(self, values: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return values[self.neuron_hook][:, self.neuron]


def open_probe(run: Run, device: str | torch.device | None = "auto") -> Probe:
    """Load (or reuse) the run's model on one device and its head; check layer, neuron and shapes."""
    cfg = run.config
    model = load_model(run.base_model, cfg.processing, device)
    check_contract(model)  # the identities the analyses rely on (once per booted model)
    n_layers = model.n_layers
    if not 0 <= run.layer < n_layers:
        raise NeuronProbeError(
            f"target layer {run.layer} is out of range: the model has {n_layers} layers (0..{n_layers - 1})",
            path=run.config_path,
            key="target_layer",
        )
    neuron_hook = hook_name(cfg.layer_type, run.layer)
    if not model.has_hook(neuron_hook):
        raise NeuronProbeError(
            f"{neuron_hook!r} is not a TransformerLens hook of this model (e.g. post, pre, "
            "mlp_out, resid_post, or a full name like blocks.8.mlp.hook_post)",
            path=run.config_path,
            key="layer_type",
        )
    named_layer = hook_layer(neuron_hook)
    if named_layer is not None and named_layer != run.layer:
        raise NeuronProbeError(
            f"layer_type names layer {named_layer} but the target layer is {run.layer}",
            path=run.config_path,
            key="layer_type",
        )
    final_hook = f"blocks.{n_layers - 1}.hook_resid_post"
    if cfg.head_type == "token":
        if cfg.feature_hook and cfg.feature_hook != final_hook:
            warnings.warn(
                f"{run.config_path}: feature_hook ignored for a token head (it reads the model's logits, "
                f"i.e. {final_hook})",
                stacklevel=2,
            )
        feature = final_hook
    elif cfg.feature_hook:
        feature = cfg.feature_hook
    else:
        if not -n_layers <= cfg.feature_layer < n_layers:  # a huge value would wrap to some layer
            raise NeuronProbeError(
                f"feature_layer {cfg.feature_layer} is out of range [-{n_layers}, {n_layers})",
                path=run.config_path,
                key="feature_layer",
            )
        feature = f"blocks.{cfg.feature_layer % n_layers}.hook_resid_post"
    if not model.has_hook(feature):
        raise NeuronProbeError(
            f"{feature!r} is not a TransformerLens hook of this model", path=run.config_path, key="feature_hook"
        )
    width = hook_width(model, neuron_hook, path=run.config_path, key="layer_type")
    if not 0 <= run.neuron < width:
        raise NeuronProbeError(
            f"target neuron {run.neuron} is out of range for {neuron_hook} (width {width})",
            path=run.config_path,
            key="target_neuron",
        )
    width = hook_width(model, feature, path=run.config_path, key="feature_hook")
    head = build_head(run, model, width, "d_model" if width == model.d_model else f"width of {feature}")
    return Probe(run=run, model=model, head=head, neuron_hook=neuron_hook, feature_hook=feature, final_hook=final_hook)


def hook_width(model: LoadedModel, name: str, *, path: Path, key: str) -> int:
    """Width of a hook's vector at one token position, measured on a one-token forward pass.

    A hook that cannot be read, never runs, or holds more than one vector per position is an error naming `key`.
    """
    ids = torch.full((1, 1), model.pad_id, dtype=torch.long, device=model.device)
    try:
        with torch.inference_mode():
            value = forward_read(model, ids, torch.ones_like(ids), torch.zeros_like(ids[0]), [name]).get(name)
        why = "it does not run in this model's forward pass" if value is None else f"shape {list(value.shape[1:])}"
    except ValueError as exc:  # e.g. TransformerLens: "Cannot add hook ... because use_attn_in is False"
        value, why = None, str(exc).splitlines()[0][:200]
    if value is None or value.ndim != 2:
        raise NeuronProbeError(
            f"{name!r} cannot be read as one vector per token position ({why}); expected a hook "
            "such as post, pre, mlp_out or resid_post",
            path=path,
            key=key,
        )
    return int(value.shape[1])


def build_head(run: Run, model: LoadedModel, width: int, feature: str = "d_model") -> Head:
    """The run's head on the model's device; `width` is what its feature hook (named `feature`) holds."""
    cfg = run.config
    if cfg.head_type == "token":
        ids = digit_token_ids(model.tokenizer, cfg.digit_tokens, int(model.bridge.cfg.d_vocab), path=run.config_path)
        return TokenHead(unembed=model.unembed_final, digit_ids=ids.to(model.device))
    state = load_state_dict(run.head_path)
    head: LinearHead = linear_head(
        state, head_type=cfg.head_type, d_model=width, path=run.head_path, bin_edges=cfg.bin_edges, feature=feature
    )
    return head.to(model.device)
