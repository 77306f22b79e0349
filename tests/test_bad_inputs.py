"""Bad inputs: one clear NeuronProbeError per malformed run, or a warning saying what was done.

Each row of `CASES` copies the session's regression run into `tmp_path`, mutates it, and runs the whole
chain `load_run -> open_probe -> analyze_projection`. An error must be exactly one `NeuronProbeError`
raised from this package (no chained torch/pandas/transformers traceback) whose message names the file,
the key or row, and what was expected; a usable run must analyse and warn.

The copies share the session run's `base_model/` through a symlink (it resolves to one path, so the
model is booted once); rows that damage the base model copy it for real first.

Also here: degenerate numbers (constant ground truth), determinism, and atomic writes.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import shutil
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from run_copies import config_path, copy_run, dataset_path, model_dir
from safetensors.torch import load_file, save_file

import pytest_neuronprobe
from pytest_neuronprobe.analyses.options import NAMES, PatchingOptions, ProjectionOptions
from pytest_neuronprobe.analyses.patching import analyze_patching
from pytest_neuronprobe.analyses.projection import analyze_projection
from pytest_neuronprobe.analyses.stats import Undefined
from pytest_neuronprobe.core import atomic
from pytest_neuronprobe.core.atomic import write_bytes_atomic, write_json_atomic, write_text_atomic
from pytest_neuronprobe.core.errors import NeuronProbeError
from pytest_neuronprobe.core.probe import open_probe
from pytest_neuronprobe.core.runs import load_run
from pytest_neuronprobe.report.summary import build_summary

PACKAGE_DIR = Path(pytest_neuronprobe.__file__).resolve().parent
MARKER = "PAYLOAD_RAN"  # a pickle payload writes this file next to the run if it is ever executed

# The tiny LM (tests/conftest.py): 2 layers, d_model 32, d_mlp 128, vocab 300, context 64 tokens.
N_LAYERS, D_MODEL, D_MLP, VOCAB, N_CTX = 2, 32, 128, 300, 64


# ------------------------------------------------------------------------------------------ helpers


def analyse(path: Path):
    """The whole chain, so an error is caught wherever it surfaces."""
    run = load_run(path)
    probe = open_probe(run, "cpu")
    return analyze_projection(probe, ProjectionOptions(n_resamples=0, null_directions=0))


DELETE = object()


def config(**changes) -> Callable[[Path], None]:
    """Set (or, with DELETE, remove) config.json keys."""

    def mutate(root: Path) -> None:
        path = config_path(root)
        cfg = json.loads(path.read_text())
        for key, value in changes.items():
            if value is DELETE:
                cfg.pop(key, None)
            else:
                cfg[key] = value
        path.write_text(json.dumps(cfg))

    return mutate


def config_bytes(data: bytes | Callable[[bytes], bytes]) -> Callable[[Path], None]:
    def mutate(root: Path) -> None:
        path = config_path(root)
        path.write_bytes(data(path.read_bytes()) if callable(data) else data)

    return mutate


def head_state(root: Path) -> dict[str, torch.Tensor]:
    return load_file(str(model_dir(root) / "head.safetensors"))


def head(
    change: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]],
    fmt: str = "safetensors",
) -> Callable[[Path], None]:
    """Rewrite the head's state dict (in `fmt`), replacing the original head file."""

    def mutate(root: Path) -> None:
        state = change(head_state(root))
        (model_dir(root) / "head.safetensors").unlink()
        if fmt == "safetensors":
            save_file(state, str(model_dir(root) / "head.safetensors"))
        else:
            torch.save(state, model_dir(root) / "head.pt")

    return mutate


def head_bytes(data: bytes | Callable[[bytes], bytes], name: str = "head.safetensors") -> Callable[[Path], None]:
    def mutate(root: Path) -> None:
        original = (model_dir(root) / "head.safetensors").read_bytes()
        (model_dir(root) / "head.safetensors").unlink()
        (model_dir(root) / name).write_bytes(data(original) if callable(data) else data)

    return mutate


def head_pt_bytes(change: Callable[[bytes], bytes]) -> Callable[[Path], None]:
    """A valid head.pt (torch.save of the head), then `change` applied to its bytes."""

    def mutate(root: Path) -> None:
        state = head_state(root)
        (model_dir(root) / "head.safetensors").unlink()
        path = model_dir(root) / "head.pt"
        torch.save(state, path)
        path.write_bytes(change(path.read_bytes()))

    return mutate


class _SystemPayload:
    """Unpickling this runs a shell command that creates the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


class _OpenPayload:
    """Unpickling this calls open(marker, "w"), which creates the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def pickle_head(payload: type, legacy: bool = False) -> Callable[[Path], None]:
    """A head.pt whose pickle would create `<tmp>/PAYLOAD_RAN` if it were ever executed."""

    def mutate(root: Path) -> None:
        state: dict = dict(head_state(root))
        state["output.bias"] = payload(root.parent / MARKER)
        (model_dir(root) / "head.safetensors").unlink()
        path = model_dir(root) / "head.pt"
        if legacy:
            path.write_bytes(pickle.dumps(state))
        else:
            torch.save(state, path)

    return mutate


def dataset(change: Callable[[pd.DataFrame], pd.DataFrame]) -> Callable[[Path], None]:
    """Rewrite the dataset CSV through pandas (every cell read as text)."""

    def mutate(root: Path) -> None:
        path = dataset_path(root)
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        change(frame).to_csv(path, index=False)

    return mutate


def dataset_bytes(data: bytes | Callable[[bytes], bytes]) -> Callable[[Path], None]:
    def mutate(root: Path) -> None:
        path = dataset_path(root)
        path.write_bytes(data(path.read_bytes()) if callable(data) else data)

    return mutate


def set_cell(row: int, column: str, value: str) -> Callable[[Path], None]:
    def change(frame: pd.DataFrame) -> pd.DataFrame:
        frame.loc[row, column] = value
        return frame

    return dataset(change)


def add_test_row(text: str, activation: str = "0.1") -> Callable[[Path], None]:
    """Append a row in the analysed (`test`) split."""

    def change(frame: pd.DataFrame) -> pd.DataFrame:
        return pd.concat(
            [frame, pd.DataFrame([{"text": text, "activation": activation, "split": "test"}])], ignore_index=True
        )

    return dataset(change)


@dataclass(frozen=True)
class Moved:
    """A mutation's way to say the run to load is now elsewhere."""

    path: Path


def retarget(layer: int, neuron: int, **extra) -> Callable[[Path], Moved]:
    """Move the run to another layer/neuron consistently: directory names, dataset, config, summary."""

    def mutate(root: Path) -> Moved:
        stamp = model_dir(root).parent
        new_stamp = stamp.with_name(f"neuron_l{layer}_n{neuron}_s0")
        stamp.rename(new_stamp)
        dataset_path(root).rename(root / "datasets" / f"{new_stamp.name}.csv")
        config(target_layer=layer, target_neuron=neuron, **extra)(root)
        summary = root / "introspection_summary.json"
        obj = json.loads(summary.read_text())
        summary.write_text(json.dumps({**obj, "target_layer": layer, "target_neuron": neuron}))
        new_root = root.with_name(f"run-neuron_l{layer}_n{neuron}")
        root.rename(new_root)
        return Moved(new_root)

    return mutate


def real_base_model(change: Callable[[Path], None]) -> Callable[[Path], None]:
    """Replace the linked base model by a real copy, then damage it."""

    def mutate(root: Path) -> None:
        link = model_dir(root) / "base_model"
        target = link.resolve()
        link.unlink()
        shutil.copytree(target, link)
        change(link)

    return mutate


def both(*mutations: Callable[[Path], object]) -> Callable[[Path], Moved]:
    def mutate(root: Path) -> Moved:
        for m in mutations:
            out = m(root)
            root = out.path if isinstance(out, Moved) else root
        return Moved(root)

    return mutate


def unlink(relative: Callable[[Path], Path]) -> Callable[[Path], None]:
    def mutate(root: Path) -> None:
        path = relative(root)
        shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()

    return mutate


def sparse(relative: Callable[[Path], Path], size: int) -> Callable[[Path], None]:
    """Grow the file to `size` bytes without writing them (a sparse file): over a size limit, cheaply."""

    def mutate(root: Path) -> None:
        path = relative(root)
        with path.open("r+b") as fh:
            fh.truncate(size)

    return mutate


def symlink_to(relative: Callable[[Path], Path], target: str) -> Callable[[Path], None]:
    """Replace the file with a symlink to `target` (e.g. /dev/zero, which never ends)."""

    def mutate(root: Path) -> None:
        path = relative(root)
        path.unlink()
        path.symlink_to(target)

    return mutate


def head_path(root: Path) -> Path:
    return model_dir(root) / "head.safetensors"


def _retype(key: str, dtype: torch.dtype):
    def change(state):
        return {**state, key: state[key].to(dtype)}

    return change


@dataclass(frozen=True)
class Err:
    fragments: tuple[str, ...]


@dataclass(frozen=True)
class Warn:
    fragments: tuple[str, ...]


@dataclass(frozen=True)
class Case:
    id: str
    mutate: Callable[[Path], object]  # returns Moved(path) where the run to load moved
    expect: Err | Warn


def err(*fragments: str) -> Err:
    return Err(fragments)


def warn(*fragments: str) -> Warn:
    return Warn(fragments)


def _half(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _hidden(n: int, d: int = D_MODEL):
    def change(state):
        return {
            "hidden.weight": torch.zeros(n, d),
            "hidden.bias": torch.zeros(n),
            "output.weight": torch.zeros(1, 16),
            "output.bias": torch.zeros(1),
        }

    return change


def _normalize_digit(directory: Path) -> None:
    """Make "5" two tokens: a normalizer turns every "5" into "5 5"."""
    path = directory / "tokenizer.json"
    spec = json.loads(path.read_text())
    spec["normalizer"] = {"type": "Replace", "pattern": {"String": "5"}, "content": "5 5"}
    path.write_text(json.dumps(spec))


LONG_TEXT = " ".join(["the cat sat on the mat"] * 40)  # far more than 64 tokens

CASES = [
    # --- the path itself
    Case("path_missing", lambda r: Moved(r / "no-such-run"), err("no-such-run", "does not exist")),
    Case("path_is_a_file", lambda r: Moved(config_path(r)), err("config.json", "expected a run directory")),
    # --- config.json
    Case(
        "config_missing",
        unlink(config_path),
        err("no model directory found", "models/neuron_l1_n31_s0/best_model: no config.json"),
    ),
    Case("config_empty", config_bytes(b""), err("config.json", "empty", "expected a JSON object")),
    Case("config_truncated", config_bytes(_half), err("config.json", "not valid JSON", "line")),
    Case("config_not_json", config_bytes(b"head_type = regression\n"), err("config.json", "not valid JSON")),
    Case("config_json_list", config_bytes(b"[1, 2, 3]"), err("config.json", "expected a JSON object", "list")),
    Case("config_not_utf8", config_bytes(lambda b: b"\xff\xfe" + b), err("config.json", "not UTF-8")),
    Case(
        "config_deeply_nested",
        config_bytes(b'{"head_config": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
        err("config.json", "not valid JSON"),
    ),
    Case(
        "config_huge_integer",
        config_bytes(lambda b: b.replace(b'"target_layer": 1', b'"target_layer": ' + b"9" * 5000)),
        err("config.json", "not valid JSON", "digits"),
    ),
    Case(
        "head_type_missing",
        config(head_type=DELETE),
        err("config.json", "[head_type]", "missing", "regression, classification, token"),
    ),
    Case(
        "head_type_unknown",
        config(head_type="regresion"),
        err("config.json", "[head_type]", "'regresion'", "regression, classification, token"),
    ),
    Case("head_type_number", config(head_type=3), err("config.json", "[head_type]", "regression")),
    Case("target_layer_string", config(target_layer="8"), err("config.json", "[target_layer]", "integer", "'8'")),
    Case("target_layer_float", config(target_layer=1.0), err("config.json", "[target_layer]", "integer", "1.0")),
    Case("target_neuron_negative", config(target_neuron=-1), err("config.json", "[target_neuron]", ">= 0")),
    Case(
        "target_neuron_alone",
        config(target_layer=DELETE),
        err("config.json", "[target_layer]", "target_layer and target_neuron"),
    ),
    Case(
        "prepend_bos_string", config(prepend_bos="yes"), err("config.json", "[prepend_bos]", "true or false", "'yes'")
    ),
    Case("token_pos_float", config(token_pos=1.5), err("config.json", "[token_pos]", "'last' or an integer", "1.5")),
    Case("token_pos_word", config(token_pos="first"), err("config.json", "[token_pos]", "'last' or an integer")),
    Case("head_config_empty_list", config(head_config=[]), err("config.json", "[head_config]", "object", "[]")),
    Case("head_config_list", config(head_config=[16, 0.1]), err("config.json", "[head_config]", "object", "[16, 0.1]")),
    Case("layer_type_number", config(layer_type=7), err("config.json", "[layer_type]", "string")),
    Case(
        "layer_type_unknown",
        config(layer_type="neurons"),
        err("config.json", "[layer_type]", "blocks.1.hook_neurons", "TransformerLens hook"),
    ),
    Case("processing_false", config(processing=False), err("config.json", "[processing]", "compat, raw", "False")),
    Case("processing_unknown", config(processing="fast"), err("config.json", "[processing]", "compat, raw", "'fast'")),
    Case("feature_layer_string", config(feature_layer="last"), err("config.json", "[feature_layer]", "integer")),
    Case("feature_layer_huge", config(feature_layer=10**30), err("config.json", "[feature_layer]", "out of range")),
    Case("feature_layer_too_low", config(feature_layer=-3), err("config.json", "[feature_layer]", "[-2, 2)")),
    Case(
        "feature_hook_not_a_vector",
        config(feature_hook="blocks.1.attn.hook_q"),
        err("config.json", "[feature_hook]", "blocks.1.attn.hook_q", "one vector per token position", "[4, 8]"),
    ),
    Case(
        "layer_type_not_a_vector",
        config(layer_type="blocks.1.attn.hook_pattern"),
        err("config.json", "[layer_type]", "blocks.1.attn.hook_pattern", "one vector per token position"),
    ),
    Case(
        "feature_hook_never_runs",
        config(feature_hook="blocks.1.attn.qkv.hook_in"),
        err("config.json", "[feature_hook]", "blocks.1.attn.qkv.hook_in", "does not run"),
    ),
    Case(
        "layer_type_hook_disabled",
        config(layer_type="blocks.1.hook_attn_in"),
        err("config.json", "[layer_type]", "blocks.1.hook_attn_in", "one vector per token position", "use_attn_in"),
    ),
    Case(
        "feature_hook_absent",
        config(feature_hook="blocks.7.hook_resid_post"),
        err("config.json", "[feature_hook]", "blocks.7.hook_resid_post", "hook"),
    ),
    Case(
        "base_model_path_missing",
        config(base_model_path="elsewhere"),
        err("elsewhere", "[base_model_path]", "config.json"),
    ),
    Case(
        "no_base_model_at_all",
        both(config(base_model_path=DELETE, base_model_name=DELETE), unlink(lambda r: model_dir(r) / "base_model")),
        err("config.json", "[base_model_name]", "base_model_path"),
    ),
    # --- bins (a classification head over the regression head's one output)
    Case(
        "bin_edges_strings",
        config(head_type="classification", bin_edges=["0", "0.5", "1"]),
        err("config.json", "[bin_edges]", "list of at least 2 numbers", "'0'"),
    ),
    Case(
        "bin_edges_unsorted",
        config(head_type="classification", bin_edges=[0.0, 1.0, 0.5]),
        err("config.json", "[bin_edges]", "strictly increasing", "[0.0, 1.0, 0.5]"),
    ),
    Case(
        "bin_edges_too_few",
        config(head_type="classification", bin_edges=[0.5]),
        err("config.json", "[bin_edges]", "at least 2"),
    ),
    Case(
        "bin_edges_nan",
        config_bytes(
            lambda b: b.replace(b'"head_type": "regression"', b'"head_type": "classification", "bin_edges": [0, NaN]')
        ),
        err("config.json", "[bin_edges]", "finite"),
    ),
    Case(
        "bin_edges_huge_integer",
        config(head_type="classification", bin_edges=[0, 10**400]),
        err("config.json", "[bin_edges]", "finite"),
    ),
    Case(
        "bin_edges_on_regression_head",
        config(bin_edges=[0.0, 0.5, 1.0]),
        warn("config.json", "bin_edges ignored", "'regression'"),
    ),
    Case(
        "bins_vs_head_outputs",
        config(head_type="classification", bin_edges=[0.0, 0.5, 1.0]),
        err("head.safetensors", "[output.weight]", "2 bins", "1 classes"),
    ),
    # --- head file
    Case(
        "head_missing",
        unlink(lambda r: model_dir(r) / "head.safetensors"),
        err("best_model", "no head file", "head.safetensors, head.pt"),
    ),
    Case("head_zero_bytes", head_bytes(b""), err("head.safetensors", "empty")),
    Case("head_truncated", head_bytes(_half), err("head.safetensors", "truncated or corrupt")),
    Case("head_pt_truncated", head_pt_bytes(_half), err("head.pt", "truncated or corrupt")),
    Case(
        "head_int_tensor",
        head(_retype("output.weight", torch.int64)),
        err("head.safetensors", "[output.weight]", "int64", "floating-point"),
    ),
    Case(
        "head_bool_tensor",
        head(_retype("output.bias", torch.bool), fmt="pt"),
        err("head.pt", "[output.bias]", "bool", "floating-point"),
    ),
    Case("head_over_size_limit", sparse(head_path, 2 * 2**30 + 1), err("head.safetensors", "over the limit of 2 GiB")),
    Case("config_over_size_limit", sparse(config_path, 16 * 2**20 + 1), err("config.json", "over the limit of 16 MiB")),
    Case(
        "dataset_over_size_limit",
        sparse(dataset_path, 2**30 + 1),
        err("neuron_l1_n31_s0.csv", "over the limit of 1 GiB"),
    ),
    Case(
        "dataset_symlink_dev_zero",
        symlink_to(dataset_path, "/dev/zero"),
        err("neuron_l1_n31_s0.csv", "not a regular file"),
    ),
    Case("config_symlink_dev_zero", symlink_to(config_path, "/dev/zero"), err("config.json")),
    Case(
        "head_pt_garbage",
        head_bytes(b"this is not a torch file\n" * 10, "head.pt"),
        err("head.pt", "truncated or corrupt"),
    ),
    Case(
        "head_pt_pickle_os_system",
        pickle_head(_SystemPayload),
        err("head.pt", "refused to load", "expected a state dict of tensors", "GLOBAL", ".system"),
    ),
    Case(
        "head_pt_pickle_open",
        pickle_head(_OpenPayload),
        err("head.pt", "refused to load", "expected a state dict of tensors", "GLOBAL io.open"),
    ),
    Case("head_pt_legacy_pickle", pickle_head(_SystemPayload, legacy=True), err("head.pt", "refused to load")),
    Case(
        "head_pt_not_tensors",
        both(
            unlink(lambda r: model_dir(r) / "head.safetensors"),
            lambda r: torch.save({"output.weight": [[0.0] * D_MODEL], "output.bias": [0.0]}, model_dir(r) / "head.pt"),
        ),
        err("head.pt", "expected a state dict mapping names to tensors"),
    ),
    Case(
        "head_both_formats",
        lambda r: torch.save(head_state(r), model_dir(r) / "head.pt"),
        err("best_model", "both head.pt and head.safetensors"),
    ),
    Case(
        "head_not_d_model",
        head(lambda s: {"output.weight": torch.zeros(1, 16), "output.bias": torch.zeros(1)}),
        err("head.safetensors", "[output.weight]", "16", f"d_model={D_MODEL}"),
    ),
    Case(
        "head_hidden_not_d_model",
        head(_hidden(16, d=24), fmt="pt"),
        err("head.pt", "[hidden.weight]", f"d_model={D_MODEL}", "[16, 24]"),
    ),
    Case(
        "head_missing_bias",
        head(lambda s: {"output.weight": s["output.weight"]}),
        err("head.safetensors", "[output.bias]", "missing tensor"),
    ),
    Case(
        "head_two_outputs",
        head(lambda s: {"output.weight": torch.zeros(2, D_MODEL), "output.bias": torch.zeros(2)}),
        err("head.safetensors", "[output.weight]", "regression head has one output"),
    ),
    Case(
        "head_nan",
        head(lambda s: {**s, "output.bias": torch.tensor([float("nan")])}),
        err("head.safetensors", "[output.bias]", "NaN"),
    ),
    # --- token heads: digit tokens
    Case(
        "digit_tokens_out_of_vocab",
        config(head_type="token", head_config={"digit_tokens": list(range(300, 310))}),
        err("config.json", "[head_config.digit_tokens]", "outside the vocabulary", f"size {VOCAB}"),
    ),
    Case(
        "digit_tokens_too_few",
        config(head_type="token", head_config={"digit_tokens": [1, 2, 3]}),
        err("config.json", "[head_config.digit_tokens]", "list of 10 token ids"),
    ),
    Case(
        "digit_tokens_strings",
        config(head_type="token", head_config={"digit_tokens": list("0123456789")}),
        err("config.json", "[head_config.digit_tokens]", "list of 10 token ids"),
    ),
    Case(
        "feature_hook_on_token_head",
        config(head_type="token", feature_hook="blocks.0.hook_resid_post"),
        warn("config.json", "feature_hook ignored for a token head", "blocks.1.hook_resid_post"),
    ),
    Case(
        "digit_not_a_token",
        both(config(head_type="token"), real_base_model(_normalize_digit)),
        err("config.json", "[head_config.digit_tokens]", "digit 5 is not a single token"),
    ),
    # --- layer / neuron
    Case(
        "layer_out_of_range",
        retarget(2, 31),
        err("config.json", "[target_layer]", "out of range", f"{N_LAYERS} layers"),
    ),
    Case(
        "neuron_out_of_range",
        retarget(1, D_MLP),
        err("config.json", "[target_neuron]", "out of range", f"width {D_MLP}"),
    ),
    Case(
        "resid_neuron_out_of_range",
        retarget(1, 40, layer_type="resid_post"),
        err("config.json", "[target_neuron]", "blocks.1.hook_resid_post", f"width {D_MODEL}"),
    ),
    Case(
        "config_vs_directory_name",
        config(target_neuron=30),
        err("config.json", "[target_layer]", "disagree", "N30", "neuron_l1_n31"),
    ),
    Case(
        "summary_disagrees",
        lambda r: (r / "introspection_summary.json").write_text(json.dumps({"target_layer": 1, "target_neuron": 7})),
        err("introspection_summary.json", "disagree", "N7"),
    ),
    Case(
        "summary_not_json",
        lambda r: (r / "introspection_summary.json").write_text("{oops"),
        err("introspection_summary.json", "not valid JSON"),
    ),
    Case(
        "summary_fractional",
        lambda r: (r / "introspection_summary.json").write_text(json.dumps({"target_layer": 1.5, "target_neuron": 31})),
        err("introspection_summary.json", "[target_layer]", "integers >= 0", "1.5"),
    ),
    Case(
        "summary_infinite",
        lambda r: (r / "introspection_summary.json").write_text('{"target_layer": 1, "target_neuron": Infinity}'),
        err("introspection_summary.json", "[target_neuron]", "integers >= 0", "inf"),
    ),
    Case(
        "summary_is_a_directory",
        lambda r: (r / "run_introspection_summary.json").mkdir(),
        err("run_introspection_summary.json", "not a readable file", "expected a JSON object"),
    ),
    Case(
        "summary_bad_types",
        lambda r: (r / "introspection_summary.json").write_text(
            json.dumps({"target_layer": "one", "target_neuron": 31})
        ),
        err("introspection_summary.json", "[target_layer]", "integers >= 0", "'one'"),
    ),
    Case(
        "several_model_dirs",
        lambda r: shutil.copytree(model_dir(r).parent, r / "models" / "neuron_l1_n31_s1", symlinks=True),
        err("several candidate model directories", "neuron_l1_n31_s0", "neuron_l1_n31_s1"),
    ),
    Case("no_model_dir", unlink(lambda r: r / "models"), err("no model directory found", "best_model")),
    # --- dataset
    Case("dataset_missing", unlink(dataset_path), err("no dataset", "neuron_l1_n31", "dataset_path")),
    Case(
        "dataset_path_missing",
        both(unlink(dataset_path), config(dataset_path="data.csv")),
        err("config.json", "[dataset_path]", "data.csv", "not found"),
    ),
    Case(
        "dataset_is_a_directory",
        both(unlink(dataset_path), lambda r: (r / "datasets" / "neuron_l1_n31_s0.csv").mkdir()),
        err("neuron_l1_n31_s0.csv", "not a readable file", "expected a CSV"),
    ),
    Case("dataset_empty", dataset_bytes(b""), err("neuron_l1_n31_s0.csv", "empty", "text, activation")),
    Case("dataset_header_only", dataset_bytes(b"text,activation,split\n"), err("neuron_l1_n31_s0.csv", "no rows")),
    Case(
        "dataset_truncated_quote",
        dataset_bytes(lambda b: b + b'"an unterminated, quote,0.1,test\n'),
        err("neuron_l1_n31_s0.csv", "not a readable CSV"),
    ),
    Case(
        "dataset_no_activation",
        dataset(lambda f: f.rename(columns={"activation": "act"})),
        err("neuron_l1_n31_s0.csv", "[activation]", "missing column", "act"),
    ),
    Case(
        "dataset_no_text",
        dataset(lambda f: f.rename(columns={"text": "prompt"})),
        err("neuron_l1_n31_s0.csv", "[text]", "missing column", "prompt"),
    ),
    Case(
        "activation_not_numeric",
        set_cell(3, "activation", "high"),
        err("neuron_l1_n31_s0.csv", "[activation]", "finite number", "line(s) 5", "'high'"),
    ),
    Case(
        "activation_nan",
        set_cell(0, "activation", "nan"),
        err("neuron_l1_n31_s0.csv", "[activation]", "finite number", "line(s) 2"),
    ),
    Case(
        "activation_inf",
        set_cell(7, "activation", "-inf"),
        err("neuron_l1_n31_s0.csv", "[activation]", "finite number", "line(s) 9", "(e.g. -inf)"),
    ),
    Case(
        "activation_blank",
        set_cell(1, "activation", ""),
        err("neuron_l1_n31_s0.csv", "[activation]", "finite number", "line(s) 3"),
    ),
    Case(
        "dataset_not_utf8",
        dataset_bytes(lambda b: b.replace(b"the", b"th\xe9", 1)),
        err("neuron_l1_n31_s0.csv", "not UTF-8", "line"),
    ),
    Case("split_unknown", set_cell(2, "split", "holdout"), err("neuron_l1_n31_s0.csv", "[split]", "'holdout'")),
    Case("text_empty", set_cell(4, "text", ""), err("neuron_l1_n31_s0.csv", "[text]", "empty text", "line(s) 6")),
    Case(
        "duplicate_texts",
        dataset(lambda f: pd.concat([f, f.iloc[:3]], ignore_index=True)),
        warn("neuron_l1_n31_s0.csv", "3 duplicate text(s)", "analysed as given"),
    ),
    Case(
        "activations_not_from_this_model",
        dataset(lambda f: f.assign(activation=f["activation"][::-1].to_numpy())),
        warn("live activations do not match the dataset", "prepend_bos"),
    ),
    Case(
        "text_longer_than_context",
        add_test_row(LONG_TEXT),
        warn("neuron_l1_n31_s0.csv", "longer than the model's context", f"first {N_CTX} tokens"),
    ),
    Case(
        "text_of_megabytes",  # cut before tokenising: no gigabytes of token ids
        add_test_row("the cat sat on the mat " * 200_000),
        warn("neuron_l1_n31_s0.csv", "longer than the model's context", f"first {N_CTX} tokens"),
    ),
    Case(
        "token_pos_beyond_text",
        config(token_pos=40),
        err("config.json", "[token_pos]", "token_pos 40 is outside text", "tokens", "too short"),
    ),
    Case("token_pos_huge", config(token_pos=10**30), err("config.json", "[token_pos]", "is outside text")),
    Case(
        "token_pos_negative_beyond_text",
        both(config(token_pos=-3), add_test_row("hi")),
        err("config.json", "[token_pos]", "token_pos -3 is outside text", "'hi'"),
    ),
    # --- the base model
    Case(
        "base_model_empty_dir",
        real_base_model(lambda d: [p.unlink() for p in d.iterdir()]),
        err("base_model", "[base_model_path]", "no config.json"),
    ),
    Case(
        "base_model_config_garbage",
        real_base_model(lambda d: (d / "config.json").write_text("not json")),
        err("base_model", "[base_model_path]", "could not load base model"),
    ),
    Case(
        "base_model_config_wrong_type",
        real_base_model(lambda d: (d / "config.json").write_text(json.dumps({"model_type": "no-such-architecture"}))),
        err("base_model", "[base_model_path]", "could not load base model"),
    ),
    Case(
        "base_model_weights_truncated",
        real_base_model(lambda d: (d / "model.safetensors").write_bytes(_half((d / "model.safetensors").read_bytes()))),
        err("base_model", "[base_model_path]", "could not load base model"),
    ),
]


# --------------------------------------------------------------------------------------- the matrix


def test_matrix_is_large_and_ids_are_unique() -> None:
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))
    assert len(CASES) >= 30


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, regression_run: Path, tmp_path: Path) -> None:
    root = copy_run(regression_run, tmp_path)
    out = case.mutate(root)
    path = out.path if isinstance(out, Moved) else root
    if isinstance(case.expect, Err):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with pytest.raises(Exception) as info:
                analyse(path)
        error = info.value
        assert type(error) is NeuronProbeError, f"{type(error).__name__}: {error}"
        assert error.__cause__ is None, "chained traceback (raise ... from exc)"
        assert error.__context__ is None or error.__suppress_context__, "chained traceback (during handling)"
        raised_in = Path(str(info.traceback[-1].path)).resolve()
        assert PACKAGE_DIR in raised_in.parents, f"raised from {raised_in}"
        message = str(error)
        missing = [f for f in case.expect.fragments if f not in message]
        assert not missing, f"{missing} not in: {message}"
        assert error.path is not None, message
    else:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = analyse(path)
        assert result.n > 0
        messages = [str(w.message) for w in caught]
        assert any(all(f in m for f in case.expect.fragments) for m in messages), messages
    assert not (tmp_path / MARKER).exists(), "a pickle payload in the head file was executed"


def test_pickle_payload_is_live(tmp_path: Path) -> None:
    """The payloads above really would write the marker if unpickled (so their rows prove something)."""
    for payload in (_SystemPayload, _OpenPayload):
        marker = tmp_path / f"{payload.__name__}.marker"
        result = pickle.loads(pickle.dumps({"x": payload(marker)}))
        if hasattr(result["x"], "close"):
            result["x"].close()
        assert marker.exists()


# ---------------------------------------------------------------------------- numbers that cannot lie


@pytest.fixture(scope="module")
def constant_run(regression_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The regression run with every ground-truth activation equal."""
    root = copy_run(regression_run, tmp_path_factory.mktemp("constant"))
    set_all = dataset(lambda f: f.assign(activation="0.25"))
    set_all(root)
    return root


def test_constant_ground_truth_is_undefined_everywhere(constant_run: Path) -> None:
    probe = open_probe(load_run(constant_run), "cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # live != dataset, by construction
        projection = analyze_projection(probe, ProjectionOptions(n_resamples=50, null_directions=20))
    for name in NAMES:
        corr = projection[name]
        assert not corr.defined, name
        assert isinstance(corr.r, Undefined)
        assert corr.reason.startswith("constant"), (name, corr.reason)
        for field in ("r", "r_squared", "p_value", "spearman", "ci_low", "ci_high"):
            value = getattr(corr, field)
            assert not (value > 0.5) and not (value < 0.5) and not (value == value), (name, field)  # noqa: PLR0124 - NaN-like
    assert (projection.head.r > 0.5) is False
    assert (projection.head.r < 0.5) is False
    assert "constant" in repr(projection.head.r)
    patching = analyze_patching(probe, PatchingOptions(n_resamples=20, factors=[0, 1, 2]))
    summary = build_summary(probe, projection, patching)
    text = json.dumps(summary, allow_nan=False)
    back = json.loads(text)
    for name in NAMES:
        entry = back["projections"][name]
        assert entry["correlation"] is None and entry["r_squared"] is None and entry["ci_low"] is None, entry
        assert entry["n"] == projection.n


def _no_nan_anywhere(obj, where="$"):
    if isinstance(obj, float):
        assert math.isfinite(obj), where
    elif isinstance(obj, dict):
        for k, v in obj.items():
            _no_nan_anywhere(v, f"{where}.{k}")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _no_nan_anywhere(v, f"{where}[{i}]")


@pytest.mark.parametrize("degenerate", ["two_rows", "zero_head"])
def test_degenerate_inputs_are_undefined_with_reason(degenerate: str, regression_run: Path, tmp_path: Path) -> None:
    root = copy_run(regression_run, tmp_path)
    if degenerate == "two_rows":
        dataset(lambda f: f[f["split"] == "test"].iloc[:2])(root)
        names, reason = NAMES, "fewer than 3 points"
    else:
        head(lambda s: {k: torch.zeros_like(v) for k, v in s.items()})(root)
        names, reason = ("prediction", "head"), "constant"
    probe = open_probe(load_run(root), "cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        projection = analyze_projection(probe, ProjectionOptions(n_resamples=50, null_directions=20))
    for name in names:
        assert not projection[name].defined and reason in projection[name].reason, (name, projection[name].reason)
        assert not projection[name].r > 0.5 and not projection[name].r < 0.5
    summary = build_summary(probe, projection)
    _no_nan_anywhere(json.loads(json.dumps(summary, allow_nan=False)))


# ----------------------------------------------------------------------------------------- determinism


def test_same_run_twice_gives_identical_numbers(regression_run: Path) -> None:
    options = dict(n_resamples=200, null_directions=50, seed=3)
    first_probe = open_probe(load_run(regression_run), "cpu")
    first = analyze_projection(first_probe, ProjectionOptions(**options))
    again = analyze_projection(first_probe, ProjectionOptions(**options))
    fresh = analyze_projection(open_probe(load_run(regression_run), "cpu"), ProjectionOptions(**options))
    assert first.as_dict() == again.as_dict() == fresh.as_dict()
    assert first.head.ci_low == fresh.head.ci_low and isinstance(first.head.ci_low, float)
    assert first.null is not None and first.null.as_dict() == fresh.null.as_dict()
    np.testing.assert_array_equal(first.direction, fresh.direction)
    patch_options = dict(n_resamples=100, factors=[0, 0.5, 1, 2], seed=3)
    fresh_probe = open_probe(load_run(regression_run), "cpu")
    assert (
        analyze_patching(first_probe, PatchingOptions(**patch_options)).as_dict()
        == analyze_patching(fresh_probe, PatchingOptions(**patch_options)).as_dict()
    )
    other_seed = analyze_projection(first_probe, ProjectionOptions(**{**options, "seed": 4}))
    assert other_seed.head.r == first.head.r and other_seed.head.ci_low != first.head.ci_low


# --------------------------------------------------------------------------------------- atomic writes


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


@pytest.mark.parametrize("fail_at", ["json.dumps", "write", "fsync", "os.replace", "KeyboardInterrupt"])
def test_interrupted_write_keeps_previous_file(fail_at: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "summary.json"
    write_json_atomic(path, {"version": 1})
    before = path.read_bytes()
    boom = KeyboardInterrupt if fail_at == "KeyboardInterrupt" else OSError

    def fail(*args, **kwargs):
        raise boom(f"interrupted at {fail_at}")

    if fail_at == "json.dumps":
        monkeypatch.setattr(atomic.json, "dumps", fail)
    elif fail_at == "write":
        real_fdopen = os.fdopen

        class Half:
            def __init__(self, fh):
                self.fh = fh

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                self.fh.close()

            def write(self, data):
                self.fh.write(data[: len(data) // 2])
                self.fh.flush()
                raise OSError("disk full")

        monkeypatch.setattr(atomic.os, "fdopen", lambda fd, mode: Half(real_fdopen(fd, mode)))
    elif fail_at == "fsync":
        monkeypatch.setattr(atomic.os, "fsync", fail)
    else:
        monkeypatch.setattr(atomic.os, "replace", fail)
    with pytest.raises(boom):
        write_json_atomic(path, {"version": 2, "payload": list(range(1000))})
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert json.loads(path.read_text()) == {"version": 1}
    assert _leftovers(tmp_path) == []


def test_non_finite_json_is_refused_and_previous_file_kept(tmp_path: Path) -> None:
    path = tmp_path / "summary.json"
    write_json_atomic(path, {"ok": True})
    with pytest.raises(ValueError, match=r"\$\.projections\.head\.correlation"):
        write_json_atomic(path, {"projections": {"head": {"correlation": float("nan")}}})
    assert json.loads(path.read_text()) == {"ok": True}
    assert _leftovers(tmp_path) == []


def test_atomic_text_and_bytes_replace_whole_files(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    write_text_atomic(path, "old\n" * 100)
    write_text_atomic(path, "new\n")
    assert path.read_text() == "new\n"
    write_bytes_atomic(path, b"\x00" * 3)
    assert path.read_bytes() == b"\x00" * 3
    assert _leftovers(tmp_path) == []


def test_a_huge_text_reads_as_its_first_tokens(regression_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_neuronprobe.core import tokens
    from pytest_neuronprobe.core.models import load_model

    model = load_model(str(load_run(regression_run).base_model))
    huge, short = "the cat sat on the mat " * 50_000, "the cat sat on the mat " * 40
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert tokens.encode(model, [huge], prepend_bos=False) == tokens.encode(model, [short], prepend_bos=False)
        monkeypatch.setattr(tokens, "CHARS_PER_TOKEN", 1)  # 64 characters cannot hold 64 tokens of these words
        with pytest.raises(NeuronProbeError, match=r"text 0 has 1,150,000 characters but its first 64 give only"):
            tokens.encode(model, [huge], prepend_bos=False, source="data.csv")


@pytest.mark.parametrize("how", ["absolute", "relative_outside"])
def test_a_base_model_outside_the_run_is_said_and_recorded(
    how: str, regression_run: Path, tiny_lm_dir: Path, tmp_path: Path
) -> None:
    from pytest_neuronprobe.pytest.options import Settings
    from pytest_neuronprobe.pytest.session import NeuronSession

    root = copy_run(regression_run, tmp_path / "copy")
    written = str(tiny_lm_dir) if how == "absolute" else os.path.relpath(tiny_lm_dir, model_dir(root))
    config(base_model_path=written)(root)
    run = load_run(root)
    assert run.base_model_outside == written and run.base_model == str(tiny_lm_dir.resolve())
    said: list[str] = []
    session = NeuronSession(Settings(runs=(str(root),), cache_dir=None), log=said.append)
    (label,) = session.labels
    provenance = build_summary(session.probe(label), None, None)["provenance"]
    assert provenance["base_model_path"] == written and provenance["base_model_outside_run"] is True
    assert any(f"base_model_path {written!r} is outside the run directory" in line for line in said), said


def test_a_base_model_inside_the_run_is_not_outside(regression_run: Path, tmp_path: Path) -> None:
    root = copy_run(regression_run, tmp_path / "copy")
    assert load_run(root).base_model_outside is None


def test_size_limits_are_configurable(regression_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEURONPROBE_MAX_DATASET_BYTES", "100")
    with pytest.raises(
        NeuronProbeError, match=r"over the limit of 100 bytes \(100 bytes; NEURONPROBE_MAX_DATASET_BYTES"
    ):
        load_run(regression_run)
    monkeypatch.setenv("NEURONPROBE_MAX_DATASET_BYTES", "lots")
    with pytest.raises(
        NeuronProbeError, match=r"NEURONPROBE_MAX_DATASET_BYTES.*whole number of bytes >= 1, got 'lots'"
    ):
        load_run(regression_run)
    monkeypatch.setenv("NEURONPROBE_MAX_DATASET_BYTES", str(2**40))
    assert load_run(regression_run).data.shape[0] > 0
