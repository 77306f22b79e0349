"""Invariance as a property (hypothesis): batch size, text order and padding leave every reported number of the
projection and patching analyses within 1e-5.

Text order: the bootstrap intervals resample rows (texts) by position, so a reordered dataset draws other
resamples; every other number is compared. Batch size moves the float32 forward pass by rounding (~1e-7),
which the bootstrap's tail resamples amplify at the tiny runs' 12 texts: interval bounds are
held to 1e-4 there (README, "What the numbers mean"). Few examples, derandomized, deadline-bounded.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from run_copies import copy_run, dataset_path

from pytest_neuronprobe.analyses.options import PatchingOptions, ProjectionOptions
from pytest_neuronprobe.analyses.patching import analyze_patching
from pytest_neuronprobe.analyses.projection import analyze_projection
from pytest_neuronprobe.core.probe import Probe, open_probe
from pytest_neuronprobe.core.runs import load_run

#: A warning (e.g. a text truncated to the model's context) would mean the texts were not only padded.
pytestmark = pytest.mark.filterwarnings("error::UserWarning")
TOL = 1e-5
INTERVAL_TOL = 1e-4
PROPERTY = settings(
    max_examples=3,
    derandomize=True,
    database=None,
    deadline=timedelta(seconds=30),
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
PROJECTION = {"n_resamples": 200, "null_directions": 20}
PATCHING = {"n_resamples": 200, "factors": (0.0, 1.0, 2.0)}
#: Interval bounds: they depend on which rows the seeded resamples draw, i.e. on the row order.
INTERVAL_KEYS = {"ci_low", "ci_high", "slope_ci_low", "slope_ci_high"}


def _numbers(tree: Any, path: str = "", skip: frozenset[str] = frozenset()) -> Iterator[tuple[str, float | None]]:
    """Every number of an ``as_dict()`` tree by its path (options and texts left out)."""
    if isinstance(tree, dict):
        for key, value in tree.items():
            if key not in skip and key != "options":
                yield from _numbers(value, f"{path}.{key}", skip)
    elif isinstance(tree, list):
        for i, value in enumerate(tree):
            yield from _numbers(value, f"{path}[{i}]", skip)
    elif tree is None or (isinstance(tree, (int, float)) and not isinstance(tree, bool)):
        yield path, None if tree is None else float(tree)


def _assert_close(a: Any, b: Any, skip: frozenset[str] = frozenset()) -> None:
    left, right = dict(_numbers(a, skip=skip)), dict(_numbers(b, skip=skip))
    assert left.keys() == right.keys()
    assert len(left) > 20  # the comparison covers the analysis, not an empty tree

    def close(key: str, v: float | None, w: float | None) -> bool:
        tol = INTERVAL_TOL if key.rsplit(".", 1)[-1] in INTERVAL_KEYS else TOL
        return (v is None) == (w is None) and (v is None or w is None or math.isclose(v, w, abs_tol=tol))

    bad = {k: (v, right[k]) for k, v in left.items() if not close(k, v, right[k])}
    assert not bad


@pytest.fixture(scope="module", params=["regression_run", "hidden_run"])
def probe(request: pytest.FixtureRequest) -> Probe:
    return open_probe(load_run(request.getfixturevalue(request.param)), "cpu")


def test_batch_size_changes_no_number(probe: Probe) -> None:
    projection = analyze_projection(probe, ProjectionOptions(**PROJECTION)).as_dict()
    patching = analyze_patching(probe, PatchingOptions(**PATCHING)).as_dict()

    @PROPERTY
    @given(batch=st.integers(1, 13))
    def check(batch: int) -> None:
        _assert_close(
            analyze_projection(probe, ProjectionOptions(**PROJECTION, batch_size=batch)).as_dict(), projection
        )
        _assert_close(analyze_patching(probe, PatchingOptions(**PATCHING, batch_size=batch)).as_dict(), patching)

    check()


def _per_text(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["text"]: row for row in result["per_input"]}


def test_text_order_and_padding_change_no_patching_number(probe: Probe) -> None:
    texts = list(analyze_patching(probe, PatchingOptions(**PATCHING)).arrays["texts"])
    reference = analyze_patching(probe, PatchingOptions(**PATCHING, texts=tuple(texts))).as_dict()
    long_text = f"{max(texts, key=len)} {min(texts, key=len)}"  # in a batch, it pads the others to its length

    @PROPERTY
    @given(order=st.permutations(range(len(texts))), pad=st.booleans(), batch=st.sampled_from([2, 5, 32]))
    def check(order: list[int], pad: bool, batch: int) -> None:
        shuffled = [texts[i] for i in order] + ([long_text] if pad else [])
        result = analyze_patching(probe, PatchingOptions(**PATCHING, texts=tuple(shuffled), batch_size=batch)).as_dict()
        own = _per_text(result)
        for text, row in _per_text(reference).items():  # each text's own numbers, padded or not
            _assert_close({"r": row, "pad": list(range(20))}, {"r": own[text], "pad": list(range(20))})
        if not pad:  # the pooled numbers (per-factor means, fits) do not depend on the order
            reordered = {**result, "per_input": sorted(result["per_input"], key=lambda r: texts.index(r["text"]))}
            _assert_close(reordered, reference, skip=frozenset(INTERVAL_KEYS))

    check()


def test_row_order_changes_no_projection_number(probe: Probe, tmp_path_factory: pytest.TempPathFactory) -> None:
    reference = analyze_projection(probe, ProjectionOptions(**PROJECTION)).as_dict()
    copy = copy_run(Path(probe.run.path), tmp_path_factory.mktemp("order"))
    csv = dataset_path(copy)
    rows = pd.read_csv(csv, keep_default_na=False)

    @PROPERTY
    @given(seed=st.integers(0, 2**16))
    def check(seed: int) -> None:
        rows.iloc[np.random.default_rng(seed).permutation(len(rows))].to_csv(csv, index=False)
        result = analyze_projection(open_probe(load_run(copy), "cpu"), ProjectionOptions(**PROJECTION)).as_dict()
        _assert_close(result, reference, skip=frozenset(INTERVAL_KEYS))

    check()
