"""The texts a run is built from: a texts file, the generated corpus, and the seeded train/test split."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd

from pytest_neuronprobe.core.errors import NeuronProbeError
from pytest_neuronprobe.core.models import LoadedModel

__all__ = ["DEFAULT_N_TEXTS", "read_texts_file", "resolve_texts", "train_test_split"]

DEFAULT_N_TEXTS = 600


def read_texts_file(path: str | os.PathLike[str]) -> list[str]:
    """Texts from a file: a CSV (`.csv`) with a `text` column, else one text per non-empty line."""
    p = Path(path).expanduser()
    if not p.exists():
        raise NeuronProbeError("texts file not found", path=p)
    if not p.is_file():
        raise NeuronProbeError("expected a regular texts file (not a directory or device)", path=p)
    if p.stat().st_size == 0:
        raise NeuronProbeError("texts file is empty", path=p)
    try:
        if p.suffix.lower() == ".csv":
            frame = pd.read_csv(p, dtype=str, keep_default_na=False, na_values=[], encoding="utf-8")
            if "text" not in frame.columns:
                raise NeuronProbeError(
                    f"CSV has no 'text' column; found {', '.join(map(str, frame.columns))}", path=p, key="text"
                )
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


def resolve_texts(
    model: LoadedModel, texts: Sequence[str] | None, seed: int, prepend_bos: bool, n_texts: int
) -> list[str]:
    """The given texts (validated), else the first `n_texts` generated texts that fit the model's context."""
    if texts is None:
        from pytest_neuronprobe.build.corpus import generate_corpus

        if isinstance(n_texts, bool) or not isinstance(n_texts, (int, np.integer)) or n_texts < 4:
            raise NeuronProbeError(f"expected n_texts >= 4, got {n_texts!r}", key="n_texts")
        pool = generate_corpus(int(n_texts * 1.25) + 20, seed)
        ids = model.tokenizer(pool, add_special_tokens=True)["input_ids"]
        limit = model.n_ctx - (1 if prepend_bos else 0)
        return [t for t, row in zip(pool, ids, strict=True) if len(row) <= limit][:n_texts]
    if isinstance(texts, str):
        raise NeuronProbeError("texts must be a sequence of strings, not one string", key="texts")
    out = list(texts)
    bad = [i for i, t in enumerate(out) if not isinstance(t, str) or not t]
    if bad:
        raise NeuronProbeError(f"texts must be non-empty strings; bad entries at {bad[:5]}", key="texts")
    if len(out) < 4:
        raise NeuronProbeError(f"need at least 4 texts to train and test a head, got {len(out)}", key="texts")
    return out


def train_test_split(n: int, test_fraction: float, seed: int) -> npt.NDArray[np.object_]:
    """`train`/`test` per row: the first round(n*test_fraction) of a seeded permutation are test."""
    n_test = round(n * float(test_fraction))
    if test_fraction > 0:
        n_test = max(1, n_test)
    n_test = min(n_test, n - 2)
    perm = np.random.default_rng(seed).permutation(n)
    split = np.full(n, "train", dtype=object)
    split[perm[:n_test]] = "test"
    return split
