"""Texts to token ids with the model's own tokenizer, and the position each text is read at (SPEC §1)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pytest_neuronprobe.core.errors import NeuronProbeError
from pytest_neuronprobe.core.models import LoadedModel

__all__ = ["CHARS_PER_TOKEN", "encode", "positions"]

#: Characters per context token tokenised at most (see :func:`encode`): 32 x 1024 for GPT-2.
CHARS_PER_TOKEN = 32


def encode(
    model: LoadedModel,
    texts: Sequence[str],
    *,
    prepend_bos: bool,
    source: str | Path | None = None,
) -> list[list[int]]:
    """Token ids per text with the model's own tokenizer; BOS in front only when `prepend_bos`.

    Texts longer than the context keep their first `n_ctx` tokens, with a warning. A text over
    `n_ctx * CHARS_PER_TOKEN` characters is cut to that many before tokenising (its first `n_ctx` tokens
    are the same: the tokenizer splits words first), so a huge line costs no more than a long one.
    """
    tok = model.tokenizer
    bos = tok.bos_token_id
    if prepend_bos and bos is None:
        raise NeuronProbeError("prepend_bos is true but the tokenizer has no BOS token", path=source, key="prepend_bos")
    limit = model.n_ctx * CHARS_PER_TOKEN
    cut = [i for i, text in enumerate(texts) if len(text) > limit]
    ids = tok([text[:limit] for text in texts], add_special_tokens=True)["input_ids"]
    out: list[list[int]] = []
    truncated = []
    for i in cut:
        if len(ids[i]) <= model.n_ctx + 1:  # the last word may tokenise otherwise: only the tokens before it count
            raise NeuronProbeError(
                f"text {i} has {len(texts[i]):,} characters but its first {limit:,} give only {len(ids[i])} tokens "
                f"(the model reads {model.n_ctx}); shorten it",
                path=source,
                key="text",
            )
    for i, row in enumerate(ids):
        row = list(row)
        if prepend_bos and (not row or row[0] != bos):
            row = [int(bos), *row]
        if len(row) > model.n_ctx:
            truncated.append(i)
            row = row[: model.n_ctx]
        if not row:
            raise NeuronProbeError(f"text {i} ({texts[i]!r}) has no tokens", path=source, key="text")
        out.append(row)
    if truncated:
        warnings.warn(
            f"{source or 'texts'}: {len(truncated)} text(s) longer than the model's context "
            f"({model.n_ctx} tokens) were truncated to their first {model.n_ctx} tokens "
            f"(rows {truncated[:5]}{' …' if len(truncated) > 5 else ''})",
            stacklevel=2,
        )
    return out


def positions(
    token_lists: Sequence[Sequence[int]],
    token_pos: str | int,
    *,
    source: str | Path | None = None,
    texts: Sequence[str] | None = None,
) -> np.ndarray:
    """Per text, the index read at `token_pos`: its own last real token, or an integer (negative counts back).

    `texts` (the texts the token lists came from) only name the offending text in an error.
    """
    lengths = np.array([len(t) for t in token_lists])
    if token_pos == "last":
        return lengths - 1
    pos = int(token_pos)
    clipped = min(max(pos, -(2**62)), 2**62)  # beyond every text either way; keeps numpy in int64
    out = np.where(clipped < 0, lengths + clipped, clipped)
    bad = np.flatnonzero((out < 0) | (out >= lengths))
    if len(bad):
        i = int(bad[0])
        named = f" {texts[i][:80]!r}" if texts is not None else ""
        raise NeuronProbeError(
            f"token_pos {pos} is outside text {i}{named} ({lengths[i]} tokens); {len(bad)} text(s) too short",
            path=source,
            key="token_pos",
        )
    return out
