"""Dataset CSVs (SPEC §1): reading and validating one, and which split the analyses use."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from pytest_neuronprobe.core.errors import NeuronProbeError

SPLIT_ORDER = ("test", "val")


def read_dataset(path: Path) -> pd.DataFrame:
    """Read and validate a dataset CSV: `text` (str), `activation` (finite float), optional `split`."""
    try:
        raw = path.read_bytes()
        raw.decode("utf-8")
    except OSError as exc:
        raise NeuronProbeError(
            f"not a readable file ({exc.strerror or exc}); expected a CSV with columns text, activation", path=path
        ) from None
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise NeuronProbeError(f"not UTF-8 text (invalid byte at line {line})", path=path) from None
    if not raw.strip():
        raise NeuronProbeError("dataset is empty; expected a CSV with columns text, activation", path=path)
    try:
        # keep_default_na=False: a text such as "NA" or "null" is a text, not a missing value.
        data = pd.read_csv(
            path, dtype={"text": str, "split": str}, keep_default_na=False, na_values=[], encoding="utf-8"
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        raise NeuronProbeError(f"not a readable CSV: {str(exc).splitlines()[0]}", path=path) from None
    missing = [c for c in ("text", "activation") if c not in data.columns]
    if missing:
        raise NeuronProbeError(
            f"missing column(s) {', '.join(missing)}; found {', '.join(map(str, data.columns))}",
            path=path,
            key=missing[0],
        )
    if len(data) == 0:
        raise NeuronProbeError("dataset has no rows", path=path)
    activation = pd.to_numeric(data["activation"].replace("", np.nan), errors="coerce").astype(float)
    bad = np.flatnonzero(~np.isfinite(activation.to_numpy()))
    if len(bad):
        rows = ", ".join(str(i + 2) for i in bad[:5])
        raise NeuronProbeError(
            f"activation must be a finite number; bad value(s) on CSV line(s) {rows}"
            f"{' …' if len(bad) > 5 else ''} (e.g. {data['activation'].tolist()[bad[0]]!r})",
            path=path,
            key="activation",
        )
    data = data.assign(activation=activation, text=data["text"].astype(str))
    empty = np.flatnonzero(data["text"].to_numpy() == "")
    if len(empty):
        raise NeuronProbeError(
            f"empty text on CSV line(s) {', '.join(str(i + 2) for i in empty[:5])}", path=path, key="text"
        )
    if "split" in data.columns:
        values = set(data["split"].unique()) - {"train", "val", "test"}
        if values:
            raise NeuronProbeError(
                f"split must be train, val or test; found {sorted(values)!r}", path=path, key="split"
            )
    duplicated = int(data["text"].duplicated().sum())
    if duplicated:
        warnings.warn(f"{path}: {duplicated} duplicate text(s); each row is analysed as given", stacklevel=2)
    result: pd.DataFrame = data.reset_index(drop=True)
    return result


def choose_split(data: pd.DataFrame) -> str:
    """`test` rows if any, else `val`, else all rows (SPEC §1)."""
    if "split" in data.columns:
        present = set(data["split"])
        for name in SPLIT_ORDER:
            if name in present:
                return name
    return "all"
