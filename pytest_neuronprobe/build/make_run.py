"""Build probe-training runs in the seed layout (SPEC §1, §2) from a local or cached base model.

`make_run` checks the request, reads a neuron's ground-truth activations with the core's batched hook
reads, splits the texts into train/test with a seeded permutation, trains one head on the train rows
and writes

```
<out_dir>/<name>/
    datasets/neuron_l{L}_n{N}_s{seed}.csv                  # text, activation, split
    models/neuron_l{L}_n{N}_s{seed}/best_model/
        config.json
        head.safetensors | head.pt
        base_model/                                         # when the base model is a local dir
    introspection_summary.json                              # target_layer, target_neuron, metrics
    neuronprobe_build.json                                  # what was asked for (for reuse)
```

Everything is deterministic given the seed (no clock, no unseeded randomness), and the directory
appears atomically: it is built beside the target and renamed into place.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import torch

from pytest_neuronprobe.analyses.stats import pearson
from pytest_neuronprobe.build.log import log
from pytest_neuronprobe.build.reuse import (
    BUILD_STAMP,
    DEFAULT_NAME,
    build_stamp,
    check_name,
    find_reusable,
    format_name,
)
from pytest_neuronprobe.build.run_files import atomic_run_dir, write_head, write_json
from pytest_neuronprobe.build.texts import DEFAULT_N_TEXTS, resolve_texts, train_test_split
from pytest_neuronprobe.build.token_head import TOKEN_STEPS, save_finetuned, train_token_head
from pytest_neuronprobe.build.train import MLP_STEPS, FloatArray, Mask, TrainedHead, train_feature_head
from pytest_neuronprobe.core.errors import NeuronProbeError
from pytest_neuronprobe.core.formatting import format_3f
from pytest_neuronprobe.core.models import LoadedModel, collect, hook_layer, hook_name, load_model
from pytest_neuronprobe.core.runs import HEAD_TYPES, NEURON_RE, PROCESSING
from pytest_neuronprobe.core.tokens import encode, positions

__all__ = ["HEAD_FORMATS", "SUMMARY_FILE", "make_run"]

HEAD_FORMATS = ("safetensors", "pt")
SUMMARY_FILE = "introspection_summary.json"


@dataclass(frozen=True)
class _Request:
    """What a build asks for (every field but `base_model` is a stamp parameter)."""

    base_model: str
    layer: int
    neuron: int | None
    head_type: str
    hidden_dim: int | None
    n_bins: int
    finetune_layers: int
    layer_type: str
    feature_layer: int
    token_pos: str | int
    prepend_bos: bool
    processing: str
    test_fraction: float
    seed: int
    head_format: str
    train_steps: int | None

    @property
    def local(self) -> bool:
        return Path(self.base_model).expanduser().is_dir()

    def stamp_params(self) -> dict[str, object]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "base_model"}


@dataclass(frozen=True)
class _Hooks:
    neuron: str  # the hook the target neuron is read from
    feature: str  # the hook a regression/classification head reads
    final: str  # the last block's resid_post (what a token head reads, through the model's own logits)


@dataclass(frozen=True)
class _GroundTruth:
    toks: list[list[int]]
    pos: npt.NDArray[np.integer[Any]]
    split: npt.NDArray[np.object_]
    train: Mask
    neuron: int
    activations: FloatArray
    features: torch.Tensor


def make_run(
    out_dir: str | os.PathLike[str],
    *,
    base_model: str | os.PathLike[str],
    layer: int,
    neuron: int | None = None,
    texts: Sequence[str] | None = None,
    head_type: str = "regression",
    hidden_dim: int | None = None,
    n_bins: int = 5,
    finetune_layers: int = 1,
    layer_type: str = "post",
    feature_layer: int = -1,
    token_pos: str | int = "last",
    prepend_bos: bool = False,
    processing: str = "compat",
    test_fraction: float = 0.2,
    seed: int = 0,
    head_format: str = "safetensors",
    name: str | None = None,
    progress: bool = False,
    reuse: bool = False,
    n_texts: int = DEFAULT_N_TEXTS,
    train_steps: int | None = None,
) -> Path:
    """Train a probe head reading neuron `neuron` of layer `layer` and write it as a run; return the run dir.

    `neuron=None` picks the neuron with the largest activation variance over the train texts (at
    `token_pos`). `texts=None` uses the first `n_texts` (600) texts of `generate_corpus(..., seed)` that
    fit the model's context. `name` (default `{head_type}-neuron_l{layer}_n{neuron}-seed{seed}`) may
    use those four fields. `train_steps` overrides the optimiser steps of trained heads (default 400
    for hidden-layer/classification heads, 80 for token heads; the linear head is closed form).
    `reuse=True` returns an existing run at the target unchanged when its `neuronprobe_build.json`
    records the same request, base model and texts. Raises NeuronProbeError on bad arguments.
    """
    req = _Request(
        base_model=os.fspath(base_model),
        layer=layer,
        neuron=neuron,
        head_type=head_type,
        hidden_dim=hidden_dim,
        n_bins=n_bins,
        finetune_layers=finetune_layers,
        layer_type=layer_type,
        feature_layer=feature_layer,
        token_pos=token_pos,
        prepend_bos=prepend_bos,
        processing=processing,
        test_fraction=test_fraction,
        seed=seed,
        head_format=head_format,
        train_steps=train_steps,
    )
    template = name or DEFAULT_NAME
    model = _check_request(req, template)
    texts_list = resolve_texts(model, texts, seed, prepend_bos, n_texts)
    stamp = build_stamp(base_model=req.base_model, texts=texts_list, **req.stamp_params())
    hooks = _check_target(model, req)
    return _build(Path(out_dir).expanduser(), template, req, model, hooks, texts_list, stamp, reuse, progress)


def _build(
    out_root: Path,
    template: str,
    req: _Request,
    model: LoadedModel,
    hooks: _Hooks,
    texts_list: list[str],
    stamp: Mapping[str, object],
    reuse: bool,
    progress: bool,
) -> Path:
    """Return the reusable run if asked and found, else read, train and write the run."""
    if reuse:
        existing = find_reusable(out_root, template, req.head_type, req.layer, req.neuron, req.seed, stamp)
        if existing is not None:
            log(f"reusing {existing}", progress)
            return existing
    data = _read(model, req, hooks, texts_list, progress)
    target = out_root / _run_name(template, req, data.neuron)
    head = _train(req, data, progress)
    _write(target, req, hooks, data, head, texts_list, stamp, progress)
    log(f"wrote {target}", progress)
    return target


# --------------------------------------------------------------------------------------------- #
# Check


def _check_request(req: _Request, template: str) -> LoadedModel:
    """Check the arguments and the name template; return the loaded base model."""
    _check_args(req)
    base = req.base_model
    local = req.local
    if not local and (Path(base).expanduser().is_absolute() or base.startswith((".", "~"))):
        raise NeuronProbeError("base model directory not found", path=base, key="base_model")
    check_name(format_name(template, req.head_type, req.layer, 0 if req.neuron is None else req.neuron, req.seed))
    return load_model(str(Path(base).expanduser().resolve()) if local else base, req.processing, "cpu")


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _check_args(req: _Request) -> None:
    """Raise NeuronProbeError on an argument that is bad whatever the model."""
    if req.head_type not in HEAD_TYPES:
        raise NeuronProbeError(
            f"unknown head_type {req.head_type!r}; expected one of {', '.join(HEAD_TYPES)}", key="head_type"
        )
    if req.processing not in PROCESSING:
        raise NeuronProbeError(f"expected one of {', '.join(PROCESSING)}, got {req.processing!r}", key="processing")
    if req.head_format not in HEAD_FORMATS:
        raise NeuronProbeError(f"expected one of {', '.join(HEAD_FORMATS)}, got {req.head_format!r}", key="head_format")
    for key in ("layer", "seed", "n_bins", "finetune_layers", "feature_layer"):
        if not _is_int(getattr(req, key)):
            raise NeuronProbeError(f"expected an integer, got {getattr(req, key)!r}", key=key)
    if req.layer < 0:
        raise NeuronProbeError(f"expected a layer >= 0, got {req.layer}", key="layer")
    if req.neuron is not None and (not _is_int(req.neuron) or req.neuron < 0):
        raise NeuronProbeError(f"expected a neuron index >= 0 or None (auto), got {req.neuron!r}", key="neuron")
    if req.hidden_dim is not None and (not _is_int(req.hidden_dim) or req.hidden_dim < 1):
        raise NeuronProbeError(f"expected a positive integer or None, got {req.hidden_dim!r}", key="hidden_dim")
    if req.head_type == "classification" and req.n_bins < 2:
        raise NeuronProbeError(f"a classification head needs n_bins >= 2, got {req.n_bins}", key="n_bins")
    if req.finetune_layers < 1:
        raise NeuronProbeError(f"expected finetune_layers >= 1, got {req.finetune_layers}", key="finetune_layers")
    if req.train_steps is not None and (not _is_int(req.train_steps) or req.train_steps < 1):
        raise NeuronProbeError(f"expected train_steps >= 1 or None, got {req.train_steps!r}", key="train_steps")
    fraction = req.test_fraction
    if not (isinstance(fraction, (int, float)) and 0.0 <= float(fraction) < 1.0):
        raise NeuronProbeError(f"expected 0 <= test_fraction < 1, got {fraction!r}", key="test_fraction")
    if not (req.token_pos == "last" or _is_int(req.token_pos)):
        raise NeuronProbeError(f"expected 'last' or an integer position, got {req.token_pos!r}", key="token_pos")


def _check_target(model: LoadedModel, req: _Request) -> _Hooks:
    """Check layer, neuron and hook against the model; return the hooks the build reads."""
    n_layers, layer = model.n_layers, req.layer
    if not 0 <= layer < n_layers:
        raise NeuronProbeError(
            f"layer {layer} is out of range: the model has {n_layers} layers (0..{n_layers - 1})", key="layer"
        )
    neuron_hook = hook_name(req.layer_type, layer)
    if not model.has_hook(neuron_hook):
        raise NeuronProbeError(
            f"{neuron_hook!r} is not a TransformerLens hook of this model (layer_type: e.g. post, "
            "pre, mlp_out, resid_post, or a full hook name)",
            key="layer_type",
        )
    if hook_layer(neuron_hook) not in (None, layer):
        raise NeuronProbeError(
            f"layer_type {req.layer_type!r} names layer {hook_layer(neuron_hook)}, not {layer}", key="layer_type"
        )
    width = model.d_mlp if neuron_hook.endswith(("mlp.hook_pre", "mlp.hook_post")) else model.d_model
    if req.neuron is not None and not 0 <= req.neuron < width:
        raise NeuronProbeError(f"neuron {req.neuron} is out of range for {neuron_hook} (width {width})", key="neuron")
    hooks = _Hooks(
        neuron=neuron_hook,
        feature=f"blocks.{req.feature_layer % n_layers}.hook_resid_post",
        final=f"blocks.{n_layers - 1}.hook_resid_post",
    )
    if req.head_type == "token":
        _check_token_head(req, hooks, n_layers)
    return hooks


def _check_token_head(req: _Request, hooks: _Hooks, n_layers: int) -> None:
    if hooks.feature != hooks.final:
        raise NeuronProbeError(
            f"feature_layer {req.feature_layer} does not apply to a token head (it reads the "
            "model's own logits, i.e. the final layer)",
            key="feature_layer",
        )
    k = req.finetune_layers
    if not 1 <= k <= n_layers:
        raise NeuronProbeError(f"finetune_layers must be 1..{n_layers}, got {k}", key="finetune_layers")
    if req.layer >= n_layers - k:
        # stacklevel 4: the caller of make_run (make_run -> _check_target -> here)
        warnings.warn(
            f"fine-tuning the last {k} block(s) also changes layer {req.layer}: the "
            "dataset's activations are those of the original model",
            stacklevel=4,
        )


def _run_name(template: str, req: _Request, neuron: int) -> str:
    """The run directory name, checked to name the target neuron if it names one at all."""
    run_name = format_name(template, req.head_type, req.layer, neuron, req.seed)
    check_name(run_name)
    named = NEURON_RE.search(run_name)
    if named and (int(named.group(1)), int(named.group(2))) != (req.layer, neuron):
        raise NeuronProbeError(
            f"run name {run_name!r} names neuron_l{named.group(1)}_n{named.group(2)} but the "
            f"target is layer {req.layer}, neuron {neuron}: the run would not load",
            key="name",
        )
    return run_name


# --------------------------------------------------------------------------------------------- #
# Read


def _read(model: LoadedModel, req: _Request, hooks: _Hooks, texts: list[str], progress: bool) -> _GroundTruth:
    """Ground truth and features: the neuron's activations and the feature hook on every text."""
    log(f"{model.source}: reading {hooks.neuron} and {hooks.feature} on {len(texts)} texts", progress)
    toks = encode(model, texts, prepend_bos=req.prepend_bos)
    pos = positions(toks, req.token_pos)
    split = train_test_split(len(texts), req.test_fraction, req.seed)
    train: Mask = split == "train"
    values = collect(model, toks, pos, [hooks.neuron, hooks.feature], batch_size=32)
    acts_all = values[hooks.neuron].double().cpu()
    neuron = req.neuron
    if neuron is None:
        neuron = int(torch.argmax(acts_all[torch.as_tensor(train)].var(0)))
        log(f"most variable neuron of {hooks.neuron} on the train texts: {neuron}", progress)
    activations: FloatArray = acts_all[:, neuron].numpy()
    features = values[hooks.feature].clone().float().cpu()
    if float(np.var(activations[train])) == 0.0:
        raise NeuronProbeError(
            f"neuron {neuron} of {hooks.neuron} is constant on the train texts "
            f"({activations[train][0]:g}); nothing to probe",
            key="neuron",
        )
    return _GroundTruth(
        toks=toks, pos=pos, split=split, train=train, neuron=neuron, activations=activations, features=features
    )


# --------------------------------------------------------------------------------------------- #
# Train


def _train(req: _Request, data: _GroundTruth, progress: bool) -> TrainedHead:
    """Train the requested head under its own seed, leaving the global torch RNG as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(req.seed)
        if req.head_type == "token":
            return train_token_head(
                req.base_model,
                req.local,
                data.toks,
                data.pos,
                data.activations,
                data.train,
                finetune_layers=req.finetune_layers,
                seed=req.seed,
                progress=progress,
                steps=req.train_steps or TOKEN_STEPS,
            )
        return train_feature_head(
            req.head_type,
            data.features,
            data.activations,
            data.train,
            hidden_dim=req.hidden_dim,
            n_bins=req.n_bins,
            seed=req.seed,
            progress=progress,
            steps=req.train_steps or MLP_STEPS,
        )


# --------------------------------------------------------------------------------------------- #
# Write


def _config(req: _Request, neuron: int, head: TrainedHead) -> dict[str, object]:
    """The run's config.json (SPEC §2)."""
    token = req.head_type == "token"
    config: dict[str, object] = {
        "head_type": req.head_type,
        "base_model_name": req.base_model,
        "target_layer": req.layer,
        "target_neuron": neuron,
        "layer_type": req.layer_type,
        "head_config": {"hidden_dim": req.hidden_dim if not token else None, "dropout": 0.0, **head.head_config},
        "feature_layer": req.feature_layer,
        "token_pos": req.token_pos,
        "prepend_bos": req.prepend_bos,
        "processing": req.processing,
        **head.config,
    }
    if req.local or token:  # a copy of the local model, or the fine-tuned one
        config["base_model_path"] = "base_model"
    return config


def _summary(req: _Request, hooks: _Hooks, data: _GroundTruth, head: TrainedHead, progress: bool) -> dict[str, object]:
    """introspection_summary.json: the target, the hooks and the head's train/test Pearson r."""
    train = data.train
    r = {
        part: pearson(head.predictions[mask], data.activations[mask])
        for part, mask in (("train", train), ("test", ~train))
    }
    log(f"{req.head_type} head: train r={format_3f(r['train'])}, test r={format_3f(r['test'])}", progress)
    return {
        "target_layer": req.layer,
        "target_neuron": data.neuron,
        "head_type": req.head_type,
        "neuron_hook": hooks.neuron,
        "feature_hook": hooks.final if req.head_type == "token" else hooks.feature,
        "pearson_r": {"train": r["train"], "test": r["test"]},
        "n_train": int(train.sum()),
        "n_test": int((~train).sum()),
    }


def _write(
    target: Path,
    req: _Request,
    hooks: _Hooks,
    data: _GroundTruth,
    head: TrainedHead,
    texts: list[str],
    stamp: Mapping[str, object],
    progress: bool,
) -> None:
    """Write the run directory atomically (SPEC §1 layout)."""
    config = _config(req, data.neuron, head)
    summary = _summary(req, hooks, data, head, progress)
    stem = f"neuron_l{req.layer}_n{data.neuron}_s{req.seed}"
    run_name = target.name
    with atomic_run_dir(target) as tmp:
        (tmp / "datasets").mkdir()
        best = tmp / "models" / stem / "best_model"
        best.mkdir(parents=True)
        frame = pd.DataFrame({"text": texts, "activation": data.activations.astype(np.float64), "split": data.split})
        frame.to_csv(tmp / "datasets" / f"{stem}.csv", index=False, lineterminator="\n", encoding="utf-8")
        write_head(best / f"head.{req.head_format}", head.state, req.head_format)
        if req.head_type == "token":
            save_finetuned(head, best / "base_model")
        elif req.local:
            shutil.copytree(Path(req.base_model).expanduser(), best / "base_model", ignore=shutil.ignore_patterns(".*"))
        write_json(best / "config.json", config)
        write_json(tmp / SUMMARY_FILE, summary)
        write_json(tmp / BUILD_STAMP, {**stamp, "result": {"target_neuron": data.neuron, "run_name": run_name}})
