"""Fuzzing the loaders: a mutated config or dataset loads, or raises NeuronProbeError, never anything else.

Each test copies the session's regression run once (its base model linked, so it is booted once), then
hypothesis rewrites config.json or the dataset CSV in place for every example. For a subset the whole
chain `load_run -> open_probe -> analyze_projection` runs, since some inputs are only found bad there
(a token position beyond a text, a hook the model lacks).

Each test counts the examples it ran and asserts that it reached `max_examples`; the count is printed
(`pytest -s`) and recorded as the `fuzz_examples` property (JUnit XML).
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from run_copies import config_path, copy_run, dataset_path

from pytest_neuronprobe.analyses.options import ProjectionOptions
from pytest_neuronprobe.analyses.projection import analyze_projection
from pytest_neuronprobe.core.errors import NeuronProbeError
from pytest_neuronprobe.core.probe import open_probe
from pytest_neuronprobe.core.runs import load_run

MAX_EXAMPLES = 150
FUZZ = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

CONFIG_KEYS = [
    "head_type",
    "base_model_name",
    "target_layer",
    "target_neuron",
    "layer_type",
    "head_config",
    "bin_edges",
    "feature_layer",
    "feature_hook",
    "token_pos",
    "prepend_bos",
    "processing",
    "base_model_path",
    "dataset_path",
]

#: Random JSON: any value a config key could be given.
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=8,
)

#: Values that mean something to some key, so that many examples get past validation.
PLAUSIBLE = st.sampled_from(
    [
        "regression",
        "classification",
        "token",
        "last",
        "post",
        "pre",
        "mlp_out",
        "resid_post",
        "attn_out",
        "blocks.1.mlp.hook_post",
        "blocks.0.hook_resid_post",
        "compat",
        "raw",
        "base_model",
        True,
        False,
        None,
        -1,
        0,
        1,
        2,
        3,
        31,
        127,
        128,
        -65,
        63,
        64,
        [0.0, 0.5],
        [0.0, 0.5, 1.0],
        [1.0, 0.0],
        {"hidden_dim": 16},
        {"digit_tokens": list(range(10))},
        {"digit_tokens": list(range(295, 305))},
        "",
        "8",
        1.5,
        [],
        {},
        10**30,
        -(10**30),
        1e308,
        -1e-308,
        "blocks.1.attn.hook_q",
        "blocks.1.ln2.hook_scale",
        "hook_embed",
        "blocks.1.attn.hook_pattern",
        "blocks.1.attn.qkv.hook_in",
        "blocks.1.hook_attn_in",
        "embed.hook_in",
        ".",
        "..",
        "/",
        "base_model/",
        "../../../datasets/neuron_l1_n31_s0.csv",
    ]
)


def _swap_type(value: Any) -> Any:
    """The same value in another JSON type."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        return str(value) if isinstance(value, int) else int(value) if math.isfinite(value) else [value]
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return {str(i): v for i, v in enumerate(value)}
    if isinstance(value, dict):
        return list(value.values())
    return 0


def _op(keys: list[str], values: st.SearchStrategy) -> st.SearchStrategy:
    key = st.sampled_from(keys)
    return st.one_of(
        st.tuples(st.just("delete"), key),
        st.tuples(st.just("set"), key, values),
        st.tuples(st.just("swap"), key),
        st.tuples(st.just("extra"), st.text(max_size=12), JSON),
    )


def apply_ops(cfg: dict[str, Any], ops: list[tuple]) -> dict[str, Any]:
    cfg = dict(cfg)
    for op, key, *value in ops:
        if op == "delete":
            cfg.pop(key, None)
        elif op == "swap":
            cfg[key] = _swap_type(cfg.get(key))
        else:
            cfg[key] = value[0]
    return cfg


CONFIG_OPS = st.lists(_op(CONFIG_KEYS, JSON | PLAUSIBLE), min_size=1, max_size=5)
NEAR_VALID_OPS = st.lists(_op(CONFIG_KEYS, PLAUSIBLE | JSON), min_size=1, max_size=2)


def expect_clean(action: Callable[[], Any]) -> Any:
    """Run `action`; a NeuronProbeError is fine (returned), anything else fails the example."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return action()
        except NeuronProbeError as exc:
            assert type(exc) is NeuronProbeError
            assert exc.path is not None or exc.key is not None, str(exc)
            return exc


def whole_chain(path: Path) -> Any:
    def chain():
        run = load_run(path)
        return analyze_projection(open_probe(run, "cpu"), ProjectionOptions(n_resamples=0, null_directions=0))

    return expect_clean(chain)


def report(record_property: Callable[[str, Any], None], name: str, count: int) -> None:
    print(f"\n{name}: {count} hypothesis examples")
    record_property("fuzz_examples", count)
    assert count >= MAX_EXAMPLES


@pytest.fixture
def run_copy(regression_run: Path, tmp_path: Path) -> Path:
    return copy_run(regression_run, tmp_path)


# ---------------------------------------------------------------------------------------- config.json


def test_fuzz_config_keys(run_copy: Path, record_property) -> None:
    """Random key deletions, type swaps, random JSON values and extra keys: load_run is clean."""
    path = config_path(run_copy)
    original = json.loads(path.read_text())
    count = 0

    @FUZZ
    @given(ops=CONFIG_OPS)
    def check(ops):
        nonlocal count
        count += 1
        path.write_text(json.dumps(apply_ops(original, ops)))
        expect_clean(lambda: load_run(run_copy))

    check()
    report(record_property, "config keys", count)


def test_fuzz_config_through_analysis(run_copy: Path, record_property) -> None:
    """Near-valid configs (one or two changes) through open_probe and the projection analysis."""
    path = config_path(run_copy)
    original = json.loads(path.read_text())
    count = 0

    @FUZZ
    @given(ops=NEAR_VALID_OPS)
    def check(ops):
        nonlocal count
        count += 1
        path.write_text(json.dumps(apply_ops(original, ops)))
        whole_chain(run_copy)

    check()
    report(record_property, "config through analysis", count)


def test_fuzz_config_bytes(run_copy: Path, record_property) -> None:
    """config.json truncated, with random bytes appended, or one byte replaced."""
    path = config_path(run_copy)
    original = path.read_bytes()
    count = 0

    @FUZZ
    @given(
        cut=st.integers(0, len(original)),
        tail=st.binary(max_size=16),
        flip=st.integers(0, len(original) - 1),
        byte=st.integers(0, 255),
        how=st.sampled_from(["truncate", "append", "flip"]),
    )
    def check(cut, tail, flip, byte, how):
        nonlocal count
        count += 1
        data = {
            "truncate": original[:cut],
            "append": original + tail,
            "flip": original[:flip] + bytes([byte]) + original[flip + 1 :],
        }[how]
        path.write_bytes(data)
        expect_clean(lambda: load_run(run_copy))

    check()
    report(record_property, "config bytes", count)


def test_fuzz_introspection_summary(run_copy: Path, record_property) -> None:
    """The introspection summary's target_layer/target_neuron given random JSON values, or deleted."""
    path = run_copy / "introspection_summary.json"
    original = json.loads(path.read_text())
    count = 0

    @FUZZ
    @given(ops=st.lists(_op(["target_layer", "target_neuron"], JSON | PLAUSIBLE), min_size=1, max_size=3))
    def check(ops):
        nonlocal count
        count += 1
        path.write_text(json.dumps(apply_ops(original, ops)))
        expect_clean(lambda: load_run(run_copy))

    check()
    report(record_property, "introspection summary", count)


def test_fuzz_head_bytes(run_copy: Path, record_property) -> None:
    """head.safetensors truncated, extended or with bytes replaced: open_probe, a third through the analysis."""
    path = next(run_copy.glob("models/*/best_model/head.safetensors"))
    original = path.read_bytes()
    count = 0

    @FUZZ
    @given(
        cut=st.integers(0, len(original)),
        junk=st.binary(min_size=1, max_size=8),
        how=st.sampled_from(["truncate", "append", "replace"]),
        analyse=st.integers(0, 2),
    )
    def check(cut, junk, how, analyse):
        nonlocal count
        count += 1
        data = {
            "truncate": original[:cut],
            "append": original + junk,
            "replace": original[:cut] + junk + original[cut + len(junk) :],
        }[how]
        path.write_bytes(data)
        if analyse == 0:
            whole_chain(run_copy)
        else:
            expect_clean(lambda: open_probe(load_run(run_copy), "cpu"))

    check()
    report(record_property, "head bytes", count)


# -------------------------------------------------------------------------------------------- dataset


CELL = st.one_of(
    st.text(max_size=20),
    st.sampled_from(
        [
            "nan",
            "NaN",
            "inf",
            "-inf",
            "1e309",
            "",
            " ",
            "0x10",
            "1,5",
            "True",
            "NA",
            "null",
            "test",
            "val",
            "train",
            "\x00",
            "\r",
            "\n",
            '"',
            "1e-320",
        ]
    ),
    st.floats().map(repr),
)


def test_fuzz_dataset_cells_and_columns(run_copy: Path, record_property) -> None:
    """Random cells, column renames, dropped or duplicated rows; a third also run through the analysis."""
    path = dataset_path(run_copy)
    original = pd.read_csv(path, dtype=str, keep_default_na=False)
    columns = list(original.columns)
    count = 0
    cell = st.tuples(st.just("cell"), st.integers(0, len(original) - 1), st.sampled_from(columns), CELL)
    rename = st.tuples(st.just("rename"), st.sampled_from(columns), st.text(max_size=10) | st.sampled_from(columns))
    rows = st.tuples(st.just("rows"), st.integers(0, len(original)), st.integers(0, len(original)))
    drop = st.tuples(st.just("drop"), st.sampled_from(columns))

    @FUZZ
    @given(ops=st.lists(st.one_of(cell, rename, rows, drop), min_size=1, max_size=4), analyse=st.integers(0, 2))
    def check(ops, analyse):
        nonlocal count
        count += 1
        frame = original.copy()
        for op, a, *rest in ops:
            if op == "cell":
                if a < len(frame) and rest[0] in frame.columns:
                    frame.loc[frame.index[a], rest[0]] = rest[1]
            elif op == "rename":
                frame = frame.rename(columns={a: rest[0]})
            elif op == "drop":
                frame = frame.drop(columns=[a], errors="ignore")
            else:  # keep rows a..b, then repeat the first few
                frame = pd.concat([frame.iloc[min(a, rest[0]) : max(a, rest[0])], frame.iloc[:2]], ignore_index=True)
        frame.to_csv(path, index=False)
        if analyse == 0:
            whole_chain(run_copy)
        else:
            expect_clean(lambda: load_run(run_copy))

    check()
    report(record_property, "dataset cells and columns", count)


def test_fuzz_dataset_bytes(run_copy: Path, record_property) -> None:
    """The dataset CSV truncated, with random bytes appended, or with bytes inserted in the middle."""
    path = dataset_path(run_copy)
    original = path.read_bytes()
    count = 0

    @FUZZ
    @given(
        cut=st.integers(0, len(original)),
        junk=st.binary(min_size=1, max_size=24),
        how=st.sampled_from(["truncate", "append", "insert"]),
        analyse=st.integers(0, 2),
    )
    def check(cut, junk, how, analyse):
        nonlocal count
        count += 1
        data = {
            "truncate": original[:cut],
            "append": original + junk,
            "insert": original[:cut] + junk + original[cut:],
        }[how]
        path.write_bytes(data)
        if analyse == 0:
            whole_chain(run_copy)
        else:
            expect_clean(lambda: load_run(run_copy))

    check()
    report(record_property, "dataset bytes", count)
