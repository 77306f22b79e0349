"""Build small GPT-2-architecture language models locally (no hub access).

The saved directories hold a ``transformers`` GPT-2 model and a byte-level BPE tokenizer, so they
load with ``AutoTokenizer`` / ``GPT2LMHeadModel`` and boot in TransformerLens'
``TransformerBridge.boot_transformers``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerBase, PreTrainedTokenizerFast

from pytest_neuronprobe.build.corpus import DIGITS, generate_corpus
from pytest_neuronprobe.build.log import log
from pytest_neuronprobe.core.atomic import atomic_dir
from pytest_neuronprobe.core.digests import texts_digest
from pytest_neuronprobe.core.models import quiet_transformers

__all__ = [
    "DEMO_LM_PARAMS",
    "ENDOFTEXT",
    "STAMP_FILE",
    "TINY_LM_PARAMS",
    "build_lm",
    "corpus_loss",
    "demo_lm",
    "tiny_lm",
    "train_tokenizer",
]

ENDOFTEXT = "<|endoftext|>"
STAMP_FILE = "neuronprobe_lm.json"
_STAMP_FORMAT = 1
_BYTE_SPACE = "Ġ"  # how ByteLevel spells a leading space

DEMO_LM_PARAMS: dict[str, Any] = {
    "n_layer": 4,
    "n_embd": 128,
    "n_head": 4,
    "n_positions": 64,
    "vocab_size": 1024,
    "train_steps": 600,
    "seed": 0,
    "batch_size": 32,
    "lr": 3e-3,
    "n_texts": 6000,
}
TINY_LM_PARAMS: dict[str, Any] = {
    "n_layer": 2,
    "n_embd": 32,
    "n_head": 4,
    "n_positions": 64,
    "vocab_size": 300,
    "train_steps": 20,
    "batch_size": 16,
    "lr": 3e-3,
    "n_texts": 400,
}


def _ensure_digit_tokens(tok: Tokenizer) -> Tokenizer:
    """Make "0".."9" and " 0".." 9" single tokens without growing the vocabulary.

    Missing " d" merges replace the lowest-priority learned merges.
    """
    spec = json.loads(tok.to_str())
    model = spec["model"]
    vocab: dict[str, int] = model["vocab"]
    merges: list[Any] = model["merges"]
    missing = [d for d in DIGITS if _BYTE_SPACE + d not in vocab]
    if not missing:
        return tok
    digit_tokens = {_BYTE_SPACE + d for d in DIGITS}

    def result(merge: Any) -> str:
        return "".join(merge) if isinstance(merge, list) else merge.replace(" ", "")

    # Walk back from the end: everything after a dropped merge is either dropped too or a
    # " d" merge, which consumes only byte tokens, so no kept merge loses its input.
    drop: set[int] = set()
    for i in range(len(merges) - 1, -1, -1):
        if len(drop) == len(missing):
            break
        if result(merges[i]) not in digit_tokens:
            drop.add(i)
    if len(drop) < len(missing):
        raise ValueError("vocab_size too small to hold single-token ' 0'..' 9'")
    dropped_tokens = {result(merges[i]) for i in drop}
    merges = [m for i, m in enumerate(merges) if i not in drop]
    kept = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1]) if t not in dropped_tokens]
    kept += [_BYTE_SPACE + d for d in missing]
    model["vocab"] = {t: i for i, t in enumerate(kept)}
    as_lists = not merges or isinstance(merges[0], list)
    new = [[_BYTE_SPACE, d] if as_lists else f"{_BYTE_SPACE} {d}" for d in missing]
    model["merges"] = new + merges
    for added in spec.get("added_tokens", []):
        added["id"] = model["vocab"][added["content"]]
    return Tokenizer.from_str(json.dumps(spec))


def train_tokenizer(texts: Sequence[str], vocab_size: int = 512) -> PreTrainedTokenizerFast:
    """Train a deterministic GPT-2-style byte-level BPE tokenizer on ``texts``.

    ``<|endoftext|>`` is bos/eos/unk/pad; encoding adds no special tokens (as GPT-2), and every
    digit, with or without a leading space, is one token.
    """
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    if vocab_size < len(alphabet) + 1 + len(DIGITS):
        raise ValueError(f"vocab_size must be >= {len(alphabet) + 1 + len(DIGITS)}, got {vocab_size}")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[ENDOFTEXT],
        initial_alphabet=alphabet,
        show_progress=False,
    )
    tok.train_from_iterator(list(texts), trainer=trainer)
    tok = _ensure_digit_tokens(tok)
    return PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]  # transformers leaves it unannotated
        tokenizer_object=tok,
        bos_token=ENDOFTEXT,
        eos_token=ENDOFTEXT,
        unk_token=ENDOFTEXT,
        pad_token=ENDOFTEXT,
    )


def _eot_id(tokenizer: PreTrainedTokenizerBase) -> int:
    eot = tokenizer.convert_tokens_to_ids(ENDOFTEXT)
    assert isinstance(eot, int)
    return eot


def _encode(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], max_len: int) -> list[list[int]]:
    """Each text as ``<eot> text <eot>``, the way the model is trained and evaluated."""
    eot = _eot_id(tokenizer)
    encoded = tokenizer(list(texts), add_special_tokens=False, verbose=False)["input_ids"]
    return [[eot, *ids, eot][:max_len] for ids in encoded]


def _batch(seqs: Sequence[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad into input ids and an attention mask."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, s in enumerate(seqs):
        ids[row, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[row, : len(s)] = 1
    return ids, mask


def _lm_loss(model: GPT2LMHeadModel, ids: torch.Tensor, mask: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Next-token cross-entropy over the unpadded positions."""
    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]
    target = ids[:, 1:].masked_fill(mask[:, 1:] == 0, -100)
    return torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=-100, reduction=reduction
    )


def _lr_factor(step: int, total: int) -> float:
    warmup = max(1, min(100, total // 10))
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress))


def _train(
    model: GPT2LMHeadModel,
    seqs: list[list[int]],
    *,
    pad_id: int,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    progress: bool,
) -> tuple[float, float]:
    """Next-token training; returns (first-step loss, mean loss over the last 10% of steps).

    Batches are contiguous windows of the texts sorted by length (ties shuffled), so padding
    stays small: the texts span 5-40 tokens and padding to the batch maximum would double the
    compute per step.
    """
    gen = torch.Generator().manual_seed(seed)
    shuffled = torch.randperm(len(seqs), generator=gen).tolist()
    by_length = sorted(shuffled, key=lambda i: len(seqs[i]))
    batch_size = min(batch_size, len(seqs))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_factor(s, steps))
    every = max(1, steps // 10)
    tail = max(1, steps // 10)
    losses: list[float] = []
    start = time.perf_counter()
    model.train()
    for step in range(steps):
        first = int(torch.randint(len(seqs) - batch_size + 1, (1,), generator=gen))
        batch = [seqs[i] for i in by_length[first : first + batch_size]]
        loss = _lm_loss(model, *_batch(batch, pad_id))
        opt.zero_grad(set_to_none=True)
        torch.autograd.backward(loss)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        if progress and ((step + 1) % every == 0 or step + 1 == steps):
            recent = sum(losses[-every:]) / len(losses[-every:])
            elapsed = time.perf_counter() - start
            log(f"step {step + 1}/{steps} loss {recent:.3f} ({elapsed:.1f}s)")
    model.train(False)
    return losses[0], sum(losses[-tail:]) / len(losses[-tail:])


@contextlib.contextmanager
def _torch_threads(n: int | None) -> Iterator[None]:
    """Run with ``n`` torch intra-op threads (``None``: unchanged), restoring the count after."""
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def build_lm(
    out_dir: str | os.PathLike[str],
    *,
    texts: Sequence[str] | None = None,
    n_layer: int = 2,
    n_embd: int = 64,
    n_head: int = 4,
    n_positions: int = 64,
    vocab_size: int = 512,
    train_steps: int = 0,
    seed: int = 0,
    batch_size: int = 32,
    lr: float = 3e-3,
    progress: bool = False,
    num_threads: int | None = 1,
) -> Path:
    """Build (and optionally train) a GPT-2-architecture LM and save it atomically to ``out_dir``.

    ``texts`` (default ``generate_corpus(2000, seed)``) train both the tokenizer and the model.
    The directory also gets ``neuronprobe_lm.json`` recording the build parameters. Same seed and
    same machine give the same weights. ``num_threads`` sets torch's intra-op threads for the
    build (restored afterwards; ``None`` leaves them alone): for models this small one thread is
    nearly as fast as two, and it cannot stall when other processes (pytest-xdist workers) hold
    the cores, which makes multi-threaded OpenMP many times slower.
    """
    out = Path(out_dir)
    start = time.perf_counter()
    texts = list(generate_corpus(2000, seed) if texts is None else texts)
    if not texts:
        raise ValueError("texts must not be empty")
    tokenizer = train_tokenizer(texts, vocab_size=vocab_size)
    config = _gpt2_config(tokenizer, n_positions=n_positions, n_embd=n_embd, n_layer=n_layer, n_head=n_head)
    with _torch_threads(num_threads):
        model, losses = _new_model(
            config, tokenizer, texts, steps=train_steps, batch_size=batch_size, lr=lr, seed=seed, progress=progress
        )
    stamp = {
        "format": _STAMP_FORMAT,
        "n_layer": n_layer,
        "n_embd": n_embd,
        "n_head": n_head,
        "n_positions": n_positions,
        "vocab_size": vocab_size,
        "train_steps": train_steps,
        "seed": seed,
        "batch_size": batch_size,
        "lr": lr,
        "num_threads": num_threads,
        "texts_sha256": texts_digest(texts),
        "n_texts": len(texts),
        "torch": torch.__version__,
        "start_loss": losses[0],
        "end_loss": losses[1],
    }
    tokenizer.model_max_length = n_positions
    _save(out, model, tokenizer, stamp)
    if progress:
        log(f"saved {out} ({time.perf_counter() - start:.1f}s)")
    return out


def _new_model(
    config: GPT2Config,
    tokenizer: PreTrainedTokenizerFast,
    texts: list[str],
    *,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    progress: bool,
) -> tuple[GPT2LMHeadModel, tuple[float | None, float | None]]:
    """A model seeded with ``seed``, trained for ``steps`` (if > 0) on ``texts`` framed as ``<eot> text <eot>``.

    Returns the model and its (first-step loss, final loss), ``(None, None)`` untrained.
    """
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(config)
    model.train(False)
    if steps <= 0:
        return model, (None, None)
    seqs = _encode(tokenizer, texts, model.config.n_positions)
    if progress:
        n_params = sum(p.numel() for p in model.parameters())
        log(f"training {n_params / 1e6:.2f}M params, {steps} steps on {len(texts)} texts")
    start_loss, end_loss = _train(
        model, seqs, pad_id=_eot_id(tokenizer), steps=steps, batch_size=batch_size, lr=lr, seed=seed, progress=progress
    )
    if progress:
        log(f"loss {start_loss:.3f} -> {end_loss:.3f}")
    return model, (start_loss, end_loss)


def _save(out: Path, model: GPT2LMHeadModel, tokenizer: PreTrainedTokenizerFast, stamp: dict[str, Any]) -> None:
    """Save the model, the tokenizer and the stamp into ``out`` atomically."""
    with atomic_dir(out) as tmp, quiet_transformers():
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / STAMP_FILE).write_text(json.dumps(stamp, indent=2, sort_keys=True) + "\n")


def _gpt2_config(
    tokenizer: PreTrainedTokenizerFast, *, n_positions: int, n_embd: int, n_layer: int, n_head: int
) -> GPT2Config:
    eot = _eot_id(tokenizer)
    return GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=n_positions,
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=n_head,
        activation_function="gelu_new",
        # No dropout: the models train for a few hundred steps, far from overfitting.
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=eot,
        eos_token_id=eot,
        pad_token_id=eot,
    )


def _stamp_matches(path: Path, expected: dict[str, Any]) -> bool:
    try:
        stamp = json.loads((path / STAMP_FILE).read_text())
    except (OSError, ValueError):
        return False
    if not (path / "config.json").is_file() or not (path / "model.safetensors").is_file():
        return False
    return all(stamp.get(k) == v for k, v in expected.items())


@contextlib.contextmanager
def _build_lock(path: Path) -> Iterator[None]:
    """Serialise builds of one cache dir across processes (pytest-xdist workers)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - non-POSIX
        yield
        return
    with open(path.parent / f".{path.name}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _cached_build(out_dir: str | os.PathLike[str], params: dict[str, Any], progress: bool) -> Path:
    path = Path(out_dir)
    kwargs = {k: v for k, v in params.items() if k != "n_texts"}
    texts = generate_corpus(params["n_texts"], params["seed"])
    expected = {
        **kwargs,
        "format": _STAMP_FORMAT,
        "texts_sha256": texts_digest(texts),
        "torch": torch.__version__,
    }
    if _stamp_matches(path, expected):
        return path
    with _build_lock(path):
        if not _stamp_matches(path, expected):
            build_lm(path, texts=texts, progress=progress, **kwargs)
    return path


def demo_lm(cache_dir: str | os.PathLike[str], *, progress: bool = False) -> Path:
    """The demo model (4 layers, d=128, vocab 1024, briefly trained), built once into ``cache_dir``.

    An existing build is reused when its ``neuronprobe_lm.json`` matches ``DEMO_LM_PARAMS``.
    """
    return _cached_build(cache_dir, DEMO_LM_PARAMS, progress)


def tiny_lm(out_dir: str | os.PathLike[str], seed: int = 0) -> Path:
    """A very small, barely trained model for tests (2 layers, d=32, vocab 300); built in < 1 s."""
    return _cached_build(out_dir, {**TINY_LM_PARAMS, "seed": seed}, False)


def corpus_loss(model_dir: str | os.PathLike[str], texts: Sequence[str], *, batch_size: int = 64) -> float:
    """Mean next-token cross-entropy of the saved model on ``texts`` (framed as in training)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    with quiet_transformers():
        model = GPT2LMHeadModel.from_pretrained(str(model_dir))
    model.train(False)
    eot = _eot_id(tokenizer)
    seqs = _encode(tokenizer, texts, model.config.n_positions)
    total, count = 0.0, 0
    with torch.no_grad(), _torch_threads(1):
        for i in range(0, len(seqs), batch_size):
            ids, mask = _batch(seqs[i : i + batch_size], eot)
            total += float(_lm_loss(model, ids, mask, reduction="sum"))
            count += int(mask[:, 1:].sum())
    return total / count
