"""Build probe-training runs in the seed layout (SPEC §1, §2) from a local or cached base model.

`make_run` computes a neuron's ground-truth activations with the core's batched hook reads, splits
the texts into train/test with a seeded permutation, trains one head on the train rows and writes

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

import contextlib
import glob
import hashlib
import json
import os
import shutil
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from pytest_neuronprobe.core.atomic import atomic_dir
from pytest_neuronprobe.core.errors import NeuronProbeError
from pytest_neuronprobe.core.models import LoadedModel, collect, encode, hook_layer, hook_name, load_model, positions
from pytest_neuronprobe.core.runs import HEAD_TYPES, NEURON_RE, PROCESSING
from pytest_neuronprobe.core.digests import texts_digest

__all__ = ["make_run", "build_stamp", "BUILD_STAMP", "HEAD_FORMATS", "DEFAULT_N_TEXTS", "read_texts_file"]

HEAD_FORMATS = ("safetensors", "pt")
BUILD_STAMP = "neuronprobe_build.json"
SUMMARY_FILE = "introspection_summary.json"
DEFAULT_N_TEXTS = 600
DEFAULT_NAME = "{head_type}-neuron_l{layer}_n{neuron}-seed{seed}"
_STAMP_FORMAT = 1
_RIDGE = 1e-8  # relative to the mean kept eigenvalue of the centred features' Gram matrix
_RCOND = 1e-6  # singular values below this fraction of the largest are float32 rounding noise

# Training settings of the trained heads (full batch Adam on standardised inputs/targets).
_MLP_STEPS = 400
_MLP_LR = 1e-2
_MLP_WEIGHT_DECAY = 1e-3
_TOKEN_STEPS = 80
_TOKEN_LR = 4e-3
_TOKEN_BATCH = 64


def _log(msg: str, progress: bool) -> None:
    if progress:
        print(f"[neuronprobe] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------- #
# Public entry point


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
    _check_args(head_type=head_type, hidden_dim=hidden_dim, n_bins=n_bins, finetune_layers=finetune_layers,
                processing=processing, test_fraction=test_fraction, head_format=head_format, layer=layer,
                neuron=neuron, token_pos=token_pos, seed=seed, feature_layer=feature_layer,
                train_steps=train_steps)
    base_str = os.fspath(base_model)
    local = Path(base_str).expanduser().is_dir()
    if not local and (Path(base_str).expanduser().is_absolute() or base_str.startswith((".", "~"))):
        raise NeuronProbeError("base model directory not found", path=base_str, key="base_model")
    template = name or DEFAULT_NAME
    _check_name(_format_name(template, head_type, layer, 0 if neuron is None else neuron, seed))
    model = load_model(str(Path(base_str).expanduser().resolve()) if local else base_str, processing, "cpu")
    texts_list = _resolve_texts(model, texts, seed, prepend_bos, n_texts)
    stamp = build_stamp(base_model=base_str, texts=texts_list, layer=layer, neuron=neuron, head_type=head_type,
                        hidden_dim=hidden_dim, n_bins=n_bins, finetune_layers=finetune_layers,
                        layer_type=layer_type, feature_layer=feature_layer, token_pos=token_pos,
                        prepend_bos=prepend_bos, processing=processing, test_fraction=test_fraction, seed=seed,
                        head_format=head_format, train_steps=train_steps)

    n_layers = model.n_layers
    if not 0 <= layer < n_layers:
        raise NeuronProbeError(f"layer {layer} is out of range: the model has {n_layers} layers (0..{n_layers - 1})",
                               key="layer")
    neuron_hook = hook_name(layer_type, layer)
    if not model.has_hook(neuron_hook):
        raise NeuronProbeError(f"{neuron_hook!r} is not a TransformerLens hook of this model (layer_type: e.g. post, "
                               "pre, mlp_out, resid_post, or a full hook name)", key="layer_type")
    if hook_layer(neuron_hook) not in (None, layer):
        raise NeuronProbeError(f"layer_type {layer_type!r} names layer {hook_layer(neuron_hook)}, not {layer}",
                               key="layer_type")
    width = model.d_mlp if neuron_hook.endswith(("mlp.hook_pre", "mlp.hook_post")) else model.d_model
    if neuron is not None and not 0 <= neuron < width:
        raise NeuronProbeError(f"neuron {neuron} is out of range for {neuron_hook} (width {width})", key="neuron")
    final_hook = f"blocks.{n_layers - 1}.hook_resid_post"
    feature_hook = f"blocks.{feature_layer % n_layers}.hook_resid_post"
    if head_type == "token":
        if feature_hook != final_hook:
            raise NeuronProbeError(f"feature_layer {feature_layer} does not apply to a token head (it reads the "
                                   "model's own logits, i.e. the final layer)", key="feature_layer")
        if not 1 <= finetune_layers <= n_layers:
            raise NeuronProbeError(f"finetune_layers must be 1..{n_layers}, got {finetune_layers}",
                                   key="finetune_layers")
        if layer >= n_layers - finetune_layers:
            warnings.warn(f"fine-tuning the last {finetune_layers} block(s) also changes layer {layer}: the "
                          "dataset's activations are those of the original model", stacklevel=2)

    out_root = Path(out_dir).expanduser()
    if reuse:
        existing = _find_reusable(out_root, template, head_type, layer, neuron, seed, stamp)
        if existing is not None:
            _log(f"reusing {existing}", progress)
            return existing

    # Ground truth and features.
    _log(f"{model.source}: reading {neuron_hook} and {feature_hook} on {len(texts_list)} texts", progress)
    toks = encode(model, texts_list, prepend_bos=prepend_bos)
    pos = positions(toks, token_pos)
    split = _split(len(texts_list), test_fraction, seed)
    train = split == "train"
    values = collect(model, toks, pos, [neuron_hook, feature_hook], batch_size=32)
    acts_all = values[neuron_hook].double().cpu()
    if neuron is None:
        neuron = int(torch.argmax(acts_all[torch.as_tensor(train)].var(0)))
        _log(f"most variable neuron of {neuron_hook} on the train texts: {neuron}", progress)
    activations = acts_all[:, neuron].numpy()
    features = values[feature_hook].clone().float().cpu()
    if float(np.var(activations[train])) == 0.0:
        raise NeuronProbeError(f"neuron {neuron} of {neuron_hook} is constant on the train texts "
                               f"({activations[train][0]:g}); nothing to probe", key="neuron")

    stem = f"neuron_l{layer}_n{neuron}"
    stamp_name = f"{stem}_s{seed}"
    run_name = _format_name(template, head_type, layer, neuron, seed)
    _check_name(run_name)
    named = NEURON_RE.search(run_name)
    if named and (int(named.group(1)), int(named.group(2))) != (layer, neuron):
        raise NeuronProbeError(f"run name {run_name!r} names neuron_l{named.group(1)}_n{named.group(2)} but the "
                               f"target is layer {layer}, neuron {neuron}: the run would not load", key="name")
    target = out_root / run_name

    config: dict[str, Any] = {
        "head_type": head_type,
        "base_model_name": base_str,
        "target_layer": layer,
        "target_neuron": neuron,
        "layer_type": layer_type,
        "head_config": {"hidden_dim": hidden_dim if head_type != "token" else None, "dropout": 0.0},
        "feature_layer": feature_layer,
        "token_pos": token_pos,
        "prepend_bos": prepend_bos,
        "processing": processing,
    }
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if head_type == "token":
            trained = _train_token_head(base_str, local, toks, pos, activations, train, finetune_layers, seed,
                                        progress, steps=train_steps or _TOKEN_STEPS)
            config["head_config"]["digit_tokens"] = trained.digit_tokens
            config["head_config"]["finetune_layers"] = finetune_layers
            config["head_config"]["decile_edges"] = trained.edges
            state: dict[str, torch.Tensor] = {}
            predictions = trained.predictions
        else:
            state, predictions, extra = _train_linear_head(head_type, features, activations, train,
                                                           hidden_dim=hidden_dim, n_bins=n_bins, seed=seed,
                                                           progress=progress, steps=train_steps or _MLP_STEPS)
            config.update(extra)
            trained = None

    if local or head_type == "token":  # a copy of the local model, or the fine-tuned one
        config["base_model_path"] = "base_model"
    metrics = {part: _pearson(predictions[mask], activations[mask])
               for part, mask in (("train", train), ("test", ~train))}
    metrics["n_train"] = int(train.sum())
    metrics["n_test"] = int((~train).sum())
    _log(f"{head_type} head: train r={_fmt(metrics['train'])}, test r={_fmt(metrics['test'])}", progress)
    summary = {
        "target_layer": layer,
        "target_neuron": neuron,
        "head_type": head_type,
        "neuron_hook": neuron_hook,
        "feature_hook": final_hook if head_type == "token" else feature_hook,
        "pearson_r": {"train": metrics["train"], "test": metrics["test"]},
        "n_train": metrics["n_train"],
        "n_test": metrics["n_test"],
    }
    stamp_out = {**stamp, "result": {"target_neuron": neuron, "run_name": run_name}}

    with _atomic_run_dir(target) as tmp:
        (tmp / "datasets").mkdir()
        best = tmp / "models" / stamp_name / "best_model"
        best.mkdir(parents=True)
        frame = pd.DataFrame({"text": texts_list, "activation": activations.astype(np.float64),
                              "split": split})
        frame.to_csv(tmp / "datasets" / f"{stamp_name}.csv", index=False, lineterminator="\n", encoding="utf-8")
        _write_head(best / f"head.{head_format}", state, head_format)
        if head_type == "token":
            assert trained is not None
            _save_hf(trained.model, trained.tokenizer, best / "base_model")
        elif local:
            shutil.copytree(Path(base_str).expanduser(), best / "base_model",
                            ignore=shutil.ignore_patterns(".*"))
        _write_json(best / "config.json", config)
        _write_json(tmp / SUMMARY_FILE, summary)
        _write_json(tmp / BUILD_STAMP, stamp_out)
    _log(f"wrote {target}", progress)
    return target


# --------------------------------------------------------------------------------------------- #
# Arguments, texts, split, stamps


def _check_args(*, head_type: str, hidden_dim: int | None, n_bins: int, finetune_layers: int, processing: str,
                test_fraction: float, head_format: str, layer: int, neuron: int | None, token_pos: str | int,
                seed: int, feature_layer: int, train_steps: int | None) -> None:
    if head_type not in HEAD_TYPES:
        raise NeuronProbeError(f"unknown head_type {head_type!r}; expected one of {', '.join(HEAD_TYPES)}",
                               key="head_type")
    if processing not in PROCESSING:
        raise NeuronProbeError(f"expected one of {', '.join(PROCESSING)}, got {processing!r}", key="processing")
    if head_format not in HEAD_FORMATS:
        raise NeuronProbeError(f"expected one of {', '.join(HEAD_FORMATS)}, got {head_format!r}", key="head_format")
    for key, value in (("layer", layer), ("seed", seed), ("n_bins", n_bins), ("finetune_layers", finetune_layers),
                       ("feature_layer", feature_layer)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise NeuronProbeError(f"expected an integer, got {value!r}", key=key)
    if layer < 0:
        raise NeuronProbeError(f"expected a layer >= 0, got {layer}", key="layer")
    if neuron is not None and (isinstance(neuron, bool) or not isinstance(neuron, (int, np.integer)) or neuron < 0):
        raise NeuronProbeError(f"expected a neuron index >= 0 or None (auto), got {neuron!r}", key="neuron")
    if hidden_dim is not None and (isinstance(hidden_dim, bool) or not isinstance(hidden_dim, (int, np.integer))
                                   or hidden_dim < 1):
        raise NeuronProbeError(f"expected a positive integer or None, got {hidden_dim!r}", key="hidden_dim")
    if head_type == "classification" and n_bins < 2:
        raise NeuronProbeError(f"a classification head needs n_bins >= 2, got {n_bins}", key="n_bins")
    if finetune_layers < 1:
        raise NeuronProbeError(f"expected finetune_layers >= 1, got {finetune_layers}", key="finetune_layers")
    if train_steps is not None and (isinstance(train_steps, bool) or not isinstance(train_steps, (int, np.integer))
                                    or train_steps < 1):
        raise NeuronProbeError(f"expected train_steps >= 1 or None, got {train_steps!r}", key="train_steps")
    if not (isinstance(test_fraction, (int, float)) and 0.0 <= float(test_fraction) < 1.0):
        raise NeuronProbeError(f"expected 0 <= test_fraction < 1, got {test_fraction!r}", key="test_fraction")
    if not (token_pos == "last" or (isinstance(token_pos, (int, np.integer)) and not isinstance(token_pos, bool))):
        raise NeuronProbeError(f"expected 'last' or an integer position, got {token_pos!r}", key="token_pos")


def _check_name(name: str) -> None:
    if not name or name in (".", "..") or "/" in name or "\\" in name or name.startswith("."):
        raise NeuronProbeError(f"run name must be a plain directory name, got {name!r}", key="name")


def _resolve_texts(model: LoadedModel, texts: Sequence[str] | None, seed: int, prepend_bos: bool,
                   n_texts: int) -> list[str]:
    """The given texts (validated), else the first `n_texts` generated texts that fit the model's context."""
    if texts is None:
        from pytest_neuronprobe.build.corpus import generate_corpus

        if isinstance(n_texts, bool) or not isinstance(n_texts, (int, np.integer)) or n_texts < 4:
            raise NeuronProbeError(f"expected n_texts >= 4, got {n_texts!r}", key="n_texts")
        pool = generate_corpus(int(n_texts * 1.25) + 20, seed)
        ids = model.tokenizer(pool, add_special_tokens=True)["input_ids"]
        limit = model.n_ctx - (1 if prepend_bos else 0)
        return [t for t, row in zip(pool, ids) if len(row) <= limit][:n_texts]
    if isinstance(texts, str):
        raise NeuronProbeError("texts must be a sequence of strings, not one string", key="texts")
    out = list(texts)
    bad = [i for i, t in enumerate(out) if not isinstance(t, str) or not t]
    if bad:
        raise NeuronProbeError(f"texts must be non-empty strings; bad entries at {bad[:5]}", key="texts")
    if len(out) < 4:
        raise NeuronProbeError(f"need at least 4 texts to train and test a head, got {len(out)}", key="texts")
    return out


def _split(n: int, test_fraction: float, seed: int) -> np.ndarray:
    """`train`/`test` per row: the first round(n*test_fraction) of a seeded permutation are test."""
    n_test = int(round(n * float(test_fraction)))
    if test_fraction > 0:
        n_test = max(1, n_test)
    n_test = min(n_test, n - 2)
    perm = np.random.default_rng(seed).permutation(n)
    split = np.full(n, "train", dtype=object)
    split[perm[:n_test]] = "test"
    return split


def _digest_dir(path: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")):
        h.update(f.relative_to(path).as_posix().encode())
        h.update(b"\0")
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def build_stamp(*, base_model: str | os.PathLike[str], texts: Sequence[str], **params: Any) -> dict[str, Any]:
    """What a build asked for: parameters, a digest of the texts and of a local base model's files."""
    base = os.fspath(base_model)
    local = Path(base).expanduser().is_dir()
    return {
        "format": _STAMP_FORMAT,
        "request": {"base_model": base, **{k: params[k] for k in sorted(params)}},
        "texts_sha256": texts_digest(texts),
        "n_texts": len(texts),
        "base_model_sha256": _digest_dir(Path(base).expanduser()) if local else None,
        "torch": torch.__version__,
    }


def _stamp_matches(run_dir: Path, stamp: dict[str, Any]) -> bool:
    try:
        found = json.loads((run_dir / BUILD_STAMP).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(found, dict) or any(found.get(k) != v for k, v in stamp.items()):
        return False
    try:
        from pytest_neuronprobe.core.runs import load_run

        load_run(run_dir)
    except NeuronProbeError:
        return False
    return True


def _format_name(template: str, head_type: str, layer: int, neuron: int | str, seed: int) -> str:
    """The run directory name: `template` with {head_type}, {layer}, {neuron}, {seed} filled in."""
    if "{" not in template:
        return template
    try:
        return template.format(head_type=head_type, layer=layer, neuron=neuron, seed=seed)
    except (KeyError, IndexError, ValueError) as exc:
        raise NeuronProbeError(f"bad name template {template!r} ({exc}); the fields are {{head_type}}, {{layer}}, "
                               "{neuron}, {seed}", key="name") from None


def _find_reusable(out_root: Path, template: str, head_type: str, layer: int, neuron: int | None, seed: int,
                   stamp: dict[str, Any]) -> Path | None:
    """An existing run that this exact request built, found without reading any activations."""
    if neuron is not None or "{neuron" not in template:
        target = out_root / _format_name(template, head_type, layer, -1 if neuron is None else neuron, seed)
        return target if _stamp_matches(target, stamp) else None
    if out_root.is_dir():  # neuron=None: any run whose name fits the template
        pattern = glob.escape(_format_name(template, head_type, layer, "\0", seed)).replace("\0", "*")
        for candidate in sorted(out_root.glob(pattern)):
            if _stamp_matches(candidate, stamp):
                return candidate
    return None


# --------------------------------------------------------------------------------------------- #
# Heads


def _ridge_fit(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
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
    gain = np.where(keep, sv / np.where(keep, sv ** 2 + lam, 1.0), 0.0)
    w = vt.T @ (gain * (u.T @ (y - y_mean)))
    return w, float(y_mean - x_mean @ w)


def _train_linear_head(head_type: str, features: torch.Tensor, activations: np.ndarray, train: np.ndarray, *,
                       hidden_dim: int | None, n_bins: int, seed: int, progress: bool, steps: int,
                       ) -> tuple[dict[str, torch.Tensor], np.ndarray, dict[str, Any]]:
    """Regression or classification head: state dict, predictions on every row, extra config keys."""
    x_train = features[torch.as_tensor(train)]
    y_train = activations[train]
    extra: dict[str, Any] = {}
    if head_type == "regression" and hidden_dim is None:
        w, b = _ridge_fit(x_train.double().numpy(), y_train.astype(np.float64))
        state = {"output.weight": torch.tensor(w, dtype=torch.float32)[None, :],
                 "output.bias": torch.tensor([b], dtype=torch.float32)}
        _log("regression head: closed-form least squares", progress)
    elif head_type == "regression":
        y_mean, y_std = float(y_train.mean()), float(y_train.std()) or 1.0
        target = torch.tensor((y_train - y_mean) / y_std, dtype=torch.float32)[:, None]
        state = _fit_mlp(x_train, target, out_dim=1, hidden_dim=hidden_dim, loss="mse", seed=seed,
                         progress=progress, steps=steps)
        state["output.weight"] = state["output.weight"] * y_std
        state["output.bias"] = state["output.bias"] * y_std + y_mean
    else:
        edges = _bin_edges(y_train, n_bins)
        labels = torch.as_tensor(np.searchsorted(edges[1:-1], y_train, side="right"), dtype=torch.long)
        state = _fit_mlp(x_train, labels, out_dim=n_bins, hidden_dim=hidden_dim, loss="ce", seed=seed,
                         progress=progress, steps=steps)
        extra["bin_edges"] = [float(e) for e in edges]
        extra["n_bins"] = n_bins
    state = {k: v.detach().float().contiguous() for k, v in state.items()}
    predictions = _predict(state, features, extra.get("bin_edges"))
    return state, predictions, extra


def _bin_edges(values: np.ndarray, n_bins: int) -> np.ndarray:
    edges = np.quantile(values.astype(np.float64), np.linspace(0.0, 1.0, n_bins + 1))
    edges[0], edges[-1] = float(values.min()), float(values.max())
    if np.any(np.diff(edges) <= 0):
        raise NeuronProbeError(f"the train activations have too few distinct values for {n_bins} quantile bins "
                               f"(edges {np.round(edges, 6).tolist()}); use fewer bins or more texts", key="n_bins")
    return edges


def _fit_mlp(x: torch.Tensor, target: torch.Tensor, *, out_dim: int, hidden_dim: int | None, loss: str, seed: int,
             progress: bool, steps: int) -> dict[str, torch.Tensor]:
    """Full-batch Adam on standardised inputs; the standardisation is folded back into the first layer."""
    x = x.float()
    mu = x.mean(0)
    scale = float((x - mu).pow(2).mean().sqrt()) or 1.0
    xs = (x - mu) / scale
    torch.manual_seed(seed)
    d = x.shape[1]
    layers: dict[str, torch.nn.Linear] = {}
    if hidden_dim is not None:
        layers["hidden"] = torch.nn.Linear(d, hidden_dim)
    layers["output"] = torch.nn.Linear(hidden_dim or d, out_dim)
    net = torch.nn.ModuleDict(layers)
    opt = torch.optim.AdamW(net.parameters(), lr=_MLP_LR, weight_decay=_MLP_WEIGHT_DECAY)

    def forward(inp: torch.Tensor) -> torch.Tensor:
        if "hidden" in net:
            inp = F.gelu(net["hidden"](inp))
        return net["output"](inp)

    every = max(1, steps // 4)
    for step in range(steps):
        out = forward(xs)
        value = F.mse_loss(out, target) if loss == "mse" else F.cross_entropy(out, target)
        opt.zero_grad(set_to_none=True)
        value.backward()
        opt.step()
        if (step + 1) % every == 0:
            _log(f"  step {step + 1}/{steps} {loss} {value.item():.4f}", progress)
    state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    first = "hidden" if hidden_dim is not None else "output"
    w = state[f"{first}.weight"] / scale
    state[f"{first}.weight"] = w
    state[f"{first}.bias"] = state[f"{first}.bias"] - w @ mu
    return state


def _predict(state: dict[str, torch.Tensor], x: torch.Tensor, bin_edges: Sequence[float] | None) -> np.ndarray:
    """SPEC §2 prediction of a regression/classification state dict on feature rows."""
    with torch.no_grad():
        h = x.float()
        if "hidden.weight" in state:
            h = F.gelu(F.linear(h, state["hidden.weight"], state["hidden.bias"]))
        logits = F.linear(h, state["output.weight"], state["output.bias"])
        if bin_edges is None:
            return logits[:, 0].double().numpy()
        edges = torch.tensor(bin_edges, dtype=torch.float32)
        centres = (edges[:-1] + edges[1:]) / 2
        return (logits.softmax(-1) * centres).sum(-1).double().numpy()


@dataclass
class _TokenResult:
    model: Any
    tokenizer: Any
    digit_tokens: list[int]
    edges: list[float]
    predictions: np.ndarray


@contextlib.contextmanager
def _quiet_hf() -> Iterator[None]:
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def _digit_ids(tokenizer: Any) -> list[int]:
    ids = []
    for d in range(10):
        enc = tokenizer.encode(str(d), add_special_tokens=False)
        if len(enc) != 1:
            raise NeuronProbeError(f"digit {d!r} is not a single token for this tokenizer ({enc}); a token head "
                                   "needs single-token digits", key="head_type")
        ids.append(int(enc[0]))
    return ids


def _train_token_head(base: str, local: bool, toks: list[list[int]], pos: np.ndarray, activations: np.ndarray,
                      train: np.ndarray, finetune_layers: int, seed: int, progress: bool, steps: int,
                      ) -> _TokenResult:
    """Fine-tune the last blocks (+ final LayerNorm) so the digit logits at `token_pos` give the decile."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = str(Path(base).expanduser().resolve()) if local else base
    with _quiet_hf():
        try:
            tokenizer = AutoTokenizer.from_pretrained(source)
            model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
        except Exception as exc:  # noqa: BLE001 - loader failures become one message
            raise NeuronProbeError(f"could not load the base model for fine-tuning: {type(exc).__name__}: "
                                   f"{(str(exc).splitlines() or [''])[0]}", key="base_model") from None
    body = model.base_model
    if not (hasattr(body, "h") and hasattr(body, "ln_f")):
        raise NeuronProbeError(f"token heads fine-tune GPT-2-style models (transformer.h, transformer.ln_f); "
                               f"got {type(model).__name__}", key="head_type")
    digits = _digit_ids(tokenizer)
    edges = np.quantile(activations[train].astype(np.float64), np.linspace(0.1, 0.9, 9))
    labels = torch.as_tensor(np.searchsorted(edges, activations, side="right"), dtype=torch.long)
    model.eval()  # dropout off: training stays deterministic
    for p in model.parameters():
        p.requires_grad_(False)
    n_blocks = len(body.h)
    top = list(body.h[n_blocks - finetune_layers:])
    params = [p for module in [*top, body.ln_f] for p in module.parameters()]
    unembed = model.get_output_embeddings()
    digit_idx = torch.tensor(digits, dtype=torch.long)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)

    def padded(rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        width = max(len(toks[i]) for i in rows)
        ids = torch.full((len(rows), width), int(pad), dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for j, i in enumerate(rows):
            ids[j, : len(toks[i])] = torch.tensor(toks[i], dtype=torch.long)
            mask[j, : len(toks[i])] = 1
        return ids, mask, torch.as_tensor(pos[rows], dtype=torch.long)

    def to_digits(final: torch.Tensor) -> torch.Tensor:
        bias = unembed.bias[digit_idx] if getattr(unembed, "bias", None) is not None else None
        return F.linear(final, unembed.weight[digit_idx], bias)

    def full_logits(rows: np.ndarray) -> torch.Tensor:
        """Digit logits at each row's position from the whole model (right padding, attention mask)."""
        ids, mask, at = padded(rows)
        hidden = body(input_ids=ids, attention_mask=mask).last_hidden_state
        return to_digits(hidden[torch.arange(len(rows)), at])

    # The frozen lower blocks give the same values at every step: run them once and keep the input of
    # the first fine-tuned block per text. The fine-tuned blocks then run alone under a causal mask,
    # which is exact for right padding (no real token attends to a later padding token).
    cached: list[torch.Tensor] = []
    with torch.no_grad():
        order = np.arange(len(toks))
        for start in range(0, len(order), 64):
            rows = order[start:start + 64]
            ids, mask, _ = padded(rows)
            states = body(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
            entry = states[n_blocks - finetune_layers]
            cached.extend(entry[j, : len(toks[i])].clone() for j, i in enumerate(rows))

    def fast_logits(rows: np.ndarray) -> torch.Tensor:
        width = max(len(toks[i]) for i in rows)
        hidden = torch.zeros((len(rows), width, cached[0].shape[-1]), dtype=cached[0].dtype)
        for j, i in enumerate(rows):
            hidden[j, : len(toks[i])] = cached[i]
        causal = torch.full((width, width), torch.finfo(hidden.dtype).min, dtype=hidden.dtype).triu(1)
        causal = causal[None, None].expand(len(rows), 1, width, width)
        for block in top:
            out = block(hidden, attention_mask=causal)
            hidden = out[0] if isinstance(out, tuple) else out
        hidden = body.ln_f(hidden)
        return to_digits(hidden[torch.arange(len(rows)), torch.as_tensor(pos[rows], dtype=torch.long)])

    train_rows = np.flatnonzero(train)
    batch = min(_TOKEN_BATCH, len(train_rows))
    with torch.no_grad():
        probe_rows = train_rows[:batch]
        fast_ok = bool(torch.allclose(fast_logits(probe_rows), full_logits(probe_rows), atol=1e-4, rtol=1e-4))
    logits_of = fast_logits if fast_ok else full_logits
    if not fast_ok:
        _log("token head: cached lower layers disagree with the full forward; training on full forwards", progress)

    for p in params:
        p.requires_grad_(True)
    gen = np.random.default_rng(seed)
    opt = torch.optim.AdamW(params, lr=_TOKEN_LR, weight_decay=0.0)
    every = max(1, steps // 5)
    _log(f"token head: fine-tuning {finetune_layers} block(s) + ln_f on {len(train_rows)} texts", progress)
    for step in range(steps):
        rows = np.sort(gen.choice(train_rows, size=batch, replace=False))
        loss = F.cross_entropy(logits_of(rows), labels[rows])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if (step + 1) % every == 0:
            _log(f"  step {step + 1}/{steps} ce {loss.item():.4f}", progress)
    for p in params:
        p.requires_grad_(False)
    preds = []
    with torch.no_grad():
        everything = np.arange(len(toks))
        for start in range(0, len(everything), 64):
            probs = full_logits(everything[start:start + 64]).softmax(-1)
            preds.append((probs * torch.arange(10, dtype=probs.dtype)).sum(-1))
    return _TokenResult(model=model, tokenizer=tokenizer, digit_tokens=digits, edges=[float(e) for e in edges],
                        predictions=torch.cat(preds).double().numpy())


# --------------------------------------------------------------------------------------------- #
# Writing


def _write_head(path: Path, state: dict[str, torch.Tensor], head_format: str) -> None:
    if head_format == "safetensors":
        from safetensors.torch import save_file

        save_file(dict(sorted(state.items())), str(path))
    else:
        torch.save(dict(sorted(state.items())), path)


def _save_hf(model: Any, tokenizer: Any, path: Path) -> None:
    with _quiet_hf():
        model.save_pretrained(path)
        tokenizer.save_pretrained(path)


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, allow_nan=False) + "\n", encoding="utf-8")


def _looks_like_run(path: Path) -> bool:
    return path.is_dir() and ((path / BUILD_STAMP).is_file() or (path / "models").is_dir()
                              or (path / "datasets").is_dir() or not any(path.iterdir()))


@contextlib.contextmanager
def _atomic_run_dir(target: Path) -> Iterator[Path]:
    """`atomic_dir`, refusing to replace a directory that is not a run."""
    if target.exists() and not _looks_like_run(target):
        raise NeuronProbeError("exists and is not a run directory; refusing to replace it", path=target)
    with atomic_dir(target) as tmp:
        yield tmp


# --------------------------------------------------------------------------------------------- #
# Helpers


def _pearson(a: np.ndarray, b: np.ndarray) -> float | None:
    """Pearson r, or None where it is undefined (fewer than 2 rows, or a constant side)."""
    if len(a) < 2:
        return None
    a = a - a.mean()
    b = b - b.mean()
    den = float(np.sqrt((a * a).sum() * (b * b).sum()))
    if den == 0.0 or not np.isfinite(den):
        return None
    return float((a * b).sum() / den)


def _fmt(r: float | None) -> str:
    return "undefined" if r is None else f"{r:.3f}"


def read_texts_file(path: str | os.PathLike[str]) -> list[str]:
    """Texts from a file: a CSV (`.csv`) with a `text` column, else one text per non-empty line."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise NeuronProbeError("texts file not found", path=p)
    try:
        if p.suffix.lower() == ".csv":
            frame = pd.read_csv(p, dtype=str, keep_default_na=False, na_values=[], encoding="utf-8")
            if "text" not in frame.columns:
                raise NeuronProbeError(f"CSV has no 'text' column; found {', '.join(map(str, frame.columns))}",
                                       path=p, key="text")
            texts = [t for t in frame["text"].tolist() if t]
        else:
            texts = [line for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
    except UnicodeDecodeError:
        raise NeuronProbeError("not UTF-8 text", path=p) from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise NeuronProbeError(f"not a readable CSV: {str(exc).splitlines()[0]}", path=p) from None
    if not texts:
        raise NeuronProbeError("no texts in file", path=p)
    return texts
