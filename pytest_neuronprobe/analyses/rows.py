"""Which dataset rows an analysis reads: the split rule (or a named split), then a seeded subsample."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pytest_neuronprobe.core.errors import NeuronProbeError
from pytest_neuronprobe.core.runs import Run


def analysed_rows(
    run: Run,
    *,
    max_samples: int | None,
    seed: int,
    split: str | None = None,
) -> tuple[pd.DataFrame, str]:
    """(the analysed rows, the split used): the run's split rule (or `split`), then `max_samples` drawn with `seed`."""
    if split is None or split == "auto":
        data, used = run.analysed(), run.split
    elif split == "all":
        data, used = run.data, "all"
    else:
        if "split" not in run.data.columns or not (run.data["split"] == split).any():
            raise NeuronProbeError(f"no rows with split == {split!r}", path=run.dataset_path, key="split")
        data, used = run.data[run.data["split"] == split], split
    if max_samples is not None and len(data) > max_samples:
        keep = np.sort(np.random.default_rng(seed).choice(len(data), size=max_samples, replace=False))
        data = data.iloc[keep]
    return data, used


def train_rows(run: Run, analysed: pd.DataFrame, *, max_samples: int | None, seed: int) -> pd.DataFrame:
    """The rows a control head or probe is fitted on: `split == "train"`, minus any analysed row, then
    `max_samples` drawn with `seed` (empty when the dataset has no such rows)."""
    if "split" not in run.data.columns:
        empty: pd.DataFrame = run.data.iloc[:0]
        return empty
    data: pd.DataFrame = run.data[(run.data["split"] == "train") & ~run.data.index.isin(analysed.index)]
    if max_samples is not None and len(data) > max_samples:
        keep = np.sort(np.random.default_rng(seed).choice(len(data), size=max_samples, replace=False))
        data = data.iloc[keep]
    return data
