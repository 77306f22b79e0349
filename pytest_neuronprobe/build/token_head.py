"""Token heads: fine-tune the base model's last blocks so its digit logits give the neuron's decile."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F

from pytest_neuronprobe.build.log import log
from pytest_neuronprobe.build.train import FloatArray, Mask, TrainedHead
from pytest_neuronprobe.core.errors import NeuronProbeError
from pytest_neuronprobe.core.models import quiet_transformers

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = ["TOKEN_STEPS", "save_finetuned", "train_token_head"]

TOKEN_STEPS = 80
_TOKEN_LR = 4e-3
_TOKEN_BATCH = 64
_EVAL_BATCH = 64

Rows = npt.NDArray[np.intp]
Logits = Callable[[Rows], torch.Tensor]


class _GPT2Body(Protocol):
    """What a token head uses of a GPT-2 body (`model.base_model`)."""

    h: torch.nn.ModuleList
    ln_f: torch.nn.Module

    def __call__(self, **kwargs: object) -> Any: ...  # a transformers ModelOutput


@contextlib.contextmanager
def _quiet_hf() -> Iterator[None]:
    """`quiet_transformers`, and no Python warnings while transformers loads or saves the model."""
    with quiet_transformers(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def digit_ids(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """The token ids of "0".."9"; raises unless each digit is one token."""
    ids = []
    for d in range(10):
        enc = tokenizer.encode(str(d), add_special_tokens=False)
        if len(enc) != 1:
            raise NeuronProbeError(
                f"digit {d!r} is not a single token for this tokenizer ({enc}); a token head needs single-token digits",
                key="head_type",
            )
        ids.append(int(enc[0]))
    return ids


def _load_for_finetuning(base: str, local: bool) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = str(Path(base).expanduser().resolve()) if local else base
    with _quiet_hf():
        try:
            tokenizer = AutoTokenizer.from_pretrained(source)
            model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
        except Exception as exc:  # noqa: BLE001 - loader failures become one message
            raise NeuronProbeError(
                f"could not load the base model for fine-tuning: {type(exc).__name__}: "
                f"{(str(exc).splitlines() or [''])[0]}",
                key="base_model",
            ) from None
    body = model.base_model
    if not (hasattr(body, "h") and hasattr(body, "ln_f")):
        raise NeuronProbeError(
            f"token heads fine-tune GPT-2-style models (transformer.h, transformer.ln_f); got {type(model).__name__}",
            key="head_type",
        )
    return model, tokenizer


class _DigitLogits:
    """Digit logits at each text's position, from the whole model or from cached lower-block states.

    The frozen lower blocks give the same values at every step: they run once and the input of the first
    fine-tuned block is kept per text. The fine-tuned blocks then run alone under a causal mask, which is
    exact for right padding (no real token attends to a later padding token).
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        digits: list[int],
        toks: list[list[int]],
        pos: npt.NDArray[np.integer[Any]],
        finetune_layers: int,
    ) -> None:
        self.body = cast(_GPT2Body, model.base_model)
        self.toks, self.pos = toks, pos
        self.first = len(self.body.h) - finetune_layers
        self.top: list[torch.nn.Module] = list(self.body.h[self.first :])
        self.params = [p for module in [*self.top, self.body.ln_f] for p in module.parameters()]
        self.unembed: Any = model.get_output_embeddings()  # type: ignore[no-untyped-call]
        self.digit_idx = torch.tensor(digits, dtype=torch.long)
        self.pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
        self.cached: list[torch.Tensor] = []

    def padded(self, rows: Rows) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        toks = self.toks
        width = max(len(toks[i]) for i in rows)
        ids = torch.full((len(rows), width), int(self.pad), dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for j, i in enumerate(rows):
            ids[j, : len(toks[i])] = torch.tensor(toks[i], dtype=torch.long)
            mask[j, : len(toks[i])] = 1
        return ids, mask, torch.as_tensor(self.pos[rows], dtype=torch.long)

    def to_digits(self, final: torch.Tensor) -> torch.Tensor:
        unembed = self.unembed
        bias = unembed.bias[self.digit_idx] if getattr(unembed, "bias", None) is not None else None
        return F.linear(final, unembed.weight[self.digit_idx], bias)

    def full(self, rows: Rows) -> torch.Tensor:
        """Digit logits at each row's position from the whole model (right padding, attention mask)."""
        ids, mask, at = self.padded(rows)
        hidden = self.body(input_ids=ids, attention_mask=mask).last_hidden_state
        return self.to_digits(hidden[torch.arange(len(rows)), at])

    def cache_lower(self) -> None:
        with torch.no_grad():
            order = np.arange(len(self.toks))
            for start in range(0, len(order), _EVAL_BATCH):
                rows = order[start : start + _EVAL_BATCH]
                ids, mask, _ = self.padded(rows)
                states = self.body(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
                entry = states[self.first]
                self.cached.extend(entry[j, : len(self.toks[i])].clone() for j, i in enumerate(rows))

    def fast(self, rows: Rows) -> torch.Tensor:
        """Digit logits from the cached inputs of the fine-tuned blocks."""
        cached, toks = self.cached, self.toks
        width = max(len(toks[i]) for i in rows)
        hidden = torch.zeros((len(rows), width, cached[0].shape[-1]), dtype=cached[0].dtype)
        for j, i in enumerate(rows):
            hidden[j, : len(toks[i])] = cached[i]
        causal = torch.full((width, width), torch.finfo(hidden.dtype).min, dtype=hidden.dtype).triu(1)
        causal = causal[None, None].expand(len(rows), 1, width, width)
        for block in self.top:
            out = block(hidden, attention_mask=causal)
            hidden = out[0] if isinstance(out, tuple) else out
        hidden = self.body.ln_f(hidden)
        return self.to_digits(hidden[torch.arange(len(rows)), torch.as_tensor(self.pos[rows], dtype=torch.long)])

    def expected_digit(self) -> FloatArray:
        """The softmax-weighted digit on every text, from full forwards."""
        preds = []
        with torch.no_grad():
            everything = np.arange(len(self.toks))
            for start in range(0, len(everything), _EVAL_BATCH):
                probs = self.full(everything[start : start + _EVAL_BATCH]).softmax(-1)
                preds.append((probs * torch.arange(10, dtype=probs.dtype)).sum(-1))
        out: FloatArray = torch.cat(preds).double().numpy()
        return out


def _training_logits(logits: _DigitLogits, probe_rows: Rows, progress: bool) -> Logits:
    """The fast forward when it agrees with the full one on `probe_rows`, else the full forward."""
    logits.cache_lower()
    with torch.no_grad():
        fast_ok = bool(torch.allclose(logits.fast(probe_rows), logits.full(probe_rows), atol=1e-4, rtol=1e-4))
    if not fast_ok:
        log("token head: cached lower layers disagree with the full forward; training on full forwards", progress)
    return logits.fast if fast_ok else logits.full


def _fine_tune(
    params: list[torch.nn.Parameter],
    logits_of: Logits,
    labels: torch.Tensor,
    train_rows: Rows,
    *,
    batch: int,
    seed: int,
    steps: int,
    progress: bool,
) -> None:
    for p in params:
        p.requires_grad_(True)
    gen = np.random.default_rng(seed)
    opt = torch.optim.AdamW(params, lr=_TOKEN_LR, weight_decay=0.0)
    every = max(1, steps // 5)
    for step in range(steps):
        rows = np.sort(gen.choice(train_rows, size=batch, replace=False))
        loss = F.cross_entropy(logits_of(rows), labels[rows])
        opt.zero_grad(set_to_none=True)
        torch.autograd.backward(loss)
        opt.step()
        if (step + 1) % every == 0:
            log(f"  step {step + 1}/{steps} ce {loss.item():.4f}", progress)
    for p in params:
        p.requires_grad_(False)


def train_token_head(
    base: str,
    local: bool,
    toks: list[list[int]],
    pos: npt.NDArray[np.integer[Any]],
    activations: FloatArray,
    train: Mask,
    *,
    finetune_layers: int,
    seed: int,
    progress: bool,
    steps: int,
) -> TrainedHead:
    """Fine-tune the last blocks (+ final LayerNorm) so the digit logits at `token_pos` give the decile."""
    model, tokenizer = _load_for_finetuning(base, local)
    digits = digit_ids(tokenizer)
    edges = np.quantile(activations[train].astype(np.float64), np.linspace(0.1, 0.9, 9))
    labels = torch.as_tensor(np.searchsorted(edges, activations, side="right"), dtype=torch.long)
    model.train(False)  # dropout off: training stays deterministic
    for p in model.parameters():
        p.requires_grad_(False)
    logits = _DigitLogits(model, tokenizer, digits, toks, pos, finetune_layers)
    train_rows = np.flatnonzero(train)
    batch = min(_TOKEN_BATCH, len(train_rows))
    logits_of = _training_logits(logits, train_rows[:batch], progress)
    log(f"token head: fine-tuning {finetune_layers} block(s) + ln_f on {len(train_rows)} texts", progress)
    _fine_tune(logits.params, logits_of, labels, train_rows, batch=batch, seed=seed, steps=steps, progress=progress)
    head_config: dict[str, object] = {
        "digit_tokens": digits,
        "finetune_layers": finetune_layers,
        "decile_edges": [float(e) for e in edges],
    }
    return TrainedHead(
        state={}, predictions=logits.expected_digit(), head_config=head_config, model=model, tokenizer=tokenizer
    )


def save_finetuned(head: TrainedHead, path: Path) -> None:
    """Write a token head's fine-tuned model and tokenizer to `path` (a Hugging Face directory)."""
    assert head.model is not None and head.tokenizer is not None
    with _quiet_hf():
        head.model.save_pretrained(path)
        head.tokenizer.save_pretrained(path)
