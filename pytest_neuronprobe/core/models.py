"""The base model through TransformerLens 4's TransformerBridge: loading and batched hook reads."""

from __future__ import annotations

import contextlib
import re
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias, cast

import numpy as np
import numpy.typing as npt
import torch

from pytest_neuronprobe.core.errors import NeuronProbeError

if TYPE_CHECKING:  # pragma: no cover
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import PreTrainedTokenizerBase

#: fn(hook value, rows, positions) -> the edited value.
PatchFn: TypeAlias = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
#: (hook name, how to edit it).
Patch: TypeAlias = tuple[str, PatchFn]

SHORT_HOOKS = {
    "pre": "blocks.{L}.mlp.hook_pre",
    "post": "blocks.{L}.mlp.hook_post",
    "mlp_out": "blocks.{L}.hook_mlp_out",
    "attn_out": "blocks.{L}.hook_attn_out",
    "resid_pre": "blocks.{L}.hook_resid_pre",
    "resid_mid": "blocks.{L}.hook_resid_mid",
    "resid_post": "blocks.{L}.hook_resid_post",
}
_BLOCK_RE = re.compile(r"^blocks\.(\d+)\.")


@dataclass
class LoadedModel:
    """A booted bridge with its own tokenizer, on one device, in eval mode."""

    bridge: TransformerBridge
    tokenizer: PreTrainedTokenizerBase
    source: str
    processing: str
    device: torch.device

    @property
    def n_layers(self) -> int:
        return int(self.bridge.cfg.n_layers)

    @property
    def d_model(self) -> int:
        return int(self.bridge.cfg.d_model)

    @property
    def d_mlp(self) -> int:
        d_mlp = self.bridge.cfg.d_mlp
        if d_mlp is None:
            raise NeuronProbeError("the model has no MLP layers (d_mlp is not set)", key="d_mlp")
        return int(d_mlp)

    @property
    def n_ctx(self) -> int:
        return int(self.bridge.cfg.n_ctx)

    @property
    def pad_id(self) -> int:
        tok = self.tokenizer
        for candidate in (tok.pad_token_id, tok.eos_token_id, tok.bos_token_id):
            if candidate is not None:
                return int(candidate)
        return 0

    def has_hook(self, name: str) -> bool:
        return name in self.bridge.hook_dict

    def W_in(self, layer: int) -> torch.Tensor:
        """`[d_model, d_mlp]` input weights of layer `layer` under this processing."""
        return cast(torch.Tensor, self.bridge.blocks[layer].mlp.W_in.detach())

    def b_in(self, layer: int) -> torch.Tensor:
        return cast(torch.Tensor, self.bridge.blocks[layer].mlp.b_in.detach())

    def W_out(self, layer: int) -> torch.Tensor:
        """`[d_mlp, d_model]` output weights of layer `layer` under this processing."""
        return cast(torch.Tensor, self.bridge.blocks[layer].mlp.W_out.detach())

    def unembed_final(self, resid: torch.Tensor) -> torch.Tensor:
        """Logits from final-layer residual vectors: `unembed(ln_final(resid))`, differentiable."""
        return cast(torch.Tensor, self.bridge.unembed(self.bridge.ln_final(resid)))


#: Booted models by (content, processing, device): runs that share a base model by content share one model,
#: wherever their copies of it lie. `_SOURCES` remembers each path's current key, to drop a stale model.
_MODELS: dict[tuple[str, str, str], LoadedModel] = {}
_SOURCES: dict[tuple[str, str, str], tuple[str, str, str]] = {}


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """`auto` picks cuda, then mps, then cpu; an unavailable device is a clear error."""
    name = str(device or "auto")
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise NeuronProbeError(f"unknown device {name!r}; expected cpu, cuda, mps or auto", key="device") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise NeuronProbeError("device 'cuda' requested but CUDA is not available", key="device")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise NeuronProbeError("device 'mps' requested but MPS is not available", key="device")
    return dev


def load_model(source: str, processing: str = "compat", device: str | torch.device | None = "cpu") -> LoadedModel:
    """Boot `source` (a local HF directory or a hub name, cached offline) once per process per key."""
    dev = resolve_device(device)
    key = (_content_key(source), processing, str(dev))
    if key in _MODELS:
        _remember(source, key)
        return _MODELS[key]
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import AutoTokenizer

    local = Path(source).is_dir()
    if local and not (Path(source) / "config.json").is_file():
        raise NeuronProbeError(
            "not a Hugging Face model directory (no config.json)", path=source, key="base_model_path"
        )
    try:
        with warnings.catch_warnings(), quiet_transformers():
            warnings.simplefilter("ignore")
            bridge = TransformerBridge.boot_transformers(source, device=str(dev))
            tokenizer = AutoTokenizer.from_pretrained(source)
            bridge.enable_compatibility_mode(disable_warnings=True, no_processing=(processing == "raw"))
    except NeuronProbeError:
        raise
    except Exception as exc:  # noqa: BLE001 - any loader failure becomes one clear message
        where = "local model directory" if local else "model name (hub cache; no network here)"
        raise NeuronProbeError(
            f"could not load base model as a {where}: {type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}",
            path=source if local else None,
            key="base_model_path" if local else "base_model_name",
        ) from None
    bridge.eval()
    for p in bridge.parameters():
        p.requires_grad_(False)
    model = LoadedModel(bridge=bridge, tokenizer=tokenizer, source=source, processing=processing, device=dev)
    _MODELS[key] = model
    _remember(source, key)
    return model


def _content_key(source: str) -> str:
    """`local:<sha256 of every file>` for a local directory (memoised per file), else the hub name."""
    if Path(source).is_dir():
        from pytest_neuronprobe.core.digests import tree_digest

        try:
            return "local:" + tree_digest(source)
        except OSError as exc:
            raise NeuronProbeError(
                f"cannot read the base model's files: {exc}", path=source, key="base_model_path"
            ) from None
    return "name:" + source


def _remember(source: str, key: tuple[str, str, str]) -> None:
    """Point `source` at `key`; a model no path points at any more (rebuilt in place) is dropped."""
    at = (str(Path(source).resolve()) if Path(source).is_dir() else source, key[1], key[2])
    old = _SOURCES.get(at)
    _SOURCES[at] = key
    if old is not None and old != key and old not in _SOURCES.values():
        _MODELS.pop(old, None)


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' progress bars and info logs (while booting, saving or loading a model)."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:  # pragma: no cover
        yield
        return
    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]  # untyped in transformers
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()  # type: ignore[no-untyped-call]


def hook_name(layer_type: str, layer: int) -> str:
    """TransformerLens hook name of a `layer_type` (short like `post`, or full) at `layer`."""
    if "." in layer_type:
        return layer_type
    short = layer_type.removeprefix("hook_")
    if short in SHORT_HOOKS:
        return SHORT_HOOKS[short].format(L=layer)
    return f"blocks.{layer}.hook_{short}"


def hook_layer(name: str) -> int | None:
    m = _BLOCK_RE.match(name)
    return int(m.group(1)) if m else None


@dataclass(frozen=True)
class Batch:
    """Right-padded texts of similar length; `rows` index into the caller's text list."""

    rows: np.ndarray
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    pos: torch.Tensor


def batches(
    token_lists: Sequence[Sequence[int]],
    pos: np.ndarray,
    *,
    batch_size: int,
    pad_id: int,
    device: torch.device,
    max_tokens: int | None = None,
) -> Iterator[Batch]:
    """Batches sorted by length (stable), right padding, so no text sees padding before its own tokens.

    `max_tokens`: a batch also ends before its padded size (texts x its longest text) would pass it.
    """
    order = np.argsort([len(t) for t in token_lists], kind="stable")
    start = 0
    while start < len(order):
        end = start + 1
        while end < len(order) and end - start < batch_size:
            if max_tokens is not None and (end - start + 1) * len(token_lists[order[end]]) > max_tokens:
                break
            end += 1
        rows, start = order[start:end], end
        width = max(len(token_lists[i]) for i in rows)
        ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for j, i in enumerate(rows):
            ids[j, : len(token_lists[i])] = torch.tensor(token_lists[i], dtype=torch.long)
            mask[j, : len(token_lists[i])] = 1
        yield Batch(
            rows=rows,
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            pos=torch.as_tensor(pos[rows], dtype=torch.long, device=device),
        )


class _Stop(Exception):
    """Raised inside the deepest hook we need, to skip the rest of the forward pass."""


def stop_hook_for(hooks: Sequence[str]) -> str | None:
    """The hook after which nothing we read is computed: `blocks.{max layer}.hook_resid_post`."""
    layers = [hook_layer(h) for h in hooks]
    known = [layer for layer in layers if layer is not None]
    if len(known) < len(layers):
        return None
    return f"blocks.{max(known)}.hook_resid_post"


def forward_read(
    model: LoadedModel,
    ids: torch.Tensor,
    mask: torch.Tensor,
    pos: torch.Tensor,
    read: Sequence[str],
    patch: Patch | Sequence[Patch] | None = None,
    *,
    inject: tuple[str, torch.Tensor] | None = None,
    slots: int = 1,
    **kwargs: Any,
) -> dict[str, torch.Tensor]:
    """One forward pass; returns each `read` hook's value at each row's `pos`, `[rows, d]`.

    `inject` = (hook name, `[rows, d]`) overwrites that hook's value at `pos` first; `patch` = (hook name,
    fn(value, rows, pos) -> value), or a list of them (applied in order), then edits a hook's value before it
    is read. Stops after the deepest hook involved. `kwargs` go to the bridge (e.g. a KV cache).
    `slots` > 1: `ids` is `[B, slots]`, and every hook, patch and read sees its positions as `slots * B` rows
    of one position, slot-major (slot f of row b at f*B + b), `pos` all zero.
    """
    out: dict[str, torch.Tensor] = {}
    rows = torch.arange(len(pos), device=ids.device)
    one = bool(patch) and isinstance(patch[0], str)  # type: ignore[index]
    patches: list[Patch] = [cast(Patch, patch)] if one else list(cast(Sequence[Patch], patch or []))
    edited = [h for h in (inject[0] if inject else None, *(p[0] for p in patches)) if h]
    stop = stop_hook_for([*read, *edited])

    def make(name: str) -> Callable[[torch.Tensor, object], torch.Tensor]:
        def hook(value: torch.Tensor, hook: object) -> torch.Tensor:
            if slots > 1:  # [B, slots, ...] -> [slots * B, 1, ...] and back
                rest = value.shape[2:]
                flat = edit(value.transpose(0, 1).reshape(-1, 1, *rest))
                return flat.reshape(slots, -1, *rest).transpose(0, 1).contiguous()
            return edit(value)

        def edit(value: torch.Tensor) -> torch.Tensor:
            if inject is not None and name == inject[0]:
                value = value.clone()
                value[rows, pos] = inject[1].to(value.dtype)
            for hook_of, fn in patches:
                if name == hook_of:
                    value = fn(value, rows, pos)
            if name in read:
                out[name] = value[rows, pos].detach().clone()
            if name == stop:
                raise _Stop
            return value

        return hook

    names = list(dict.fromkeys([*edited, *read, *([stop] if stop else [])]))
    with contextlib.suppress(_Stop):
        model.bridge.run_with_hooks(ids, attention_mask=mask, fwd_hooks=[(n, make(n)) for n in names], **kwargs)
    return out


@contextlib.contextmanager
def blocks_from(model: LoadedModel, layer: int) -> Iterator[bool]:
    """Temporarily run only blocks `layer`.. (the caller injects `blocks.{layer}.hook_resid_pre`).

    Yields False, changing nothing, where the model's block list cannot be found.
    """
    first = model.bridge.blocks[0]
    for module in model.bridge.original_model.modules():
        for name, child in module.named_children():
            if isinstance(child, torch.nn.ModuleList) and len(child) == model.n_layers and child[0] is first:
                setattr(module, name, torch.nn.ModuleList(list(child)[layer:]))
                try:
                    yield True
                finally:
                    setattr(module, name, child)
                return
    yield False


def run_batch(
    model: LoadedModel, batch: Batch, read: Sequence[str], patch: Patch | Sequence[Patch] | None = None, **kwargs: Any
) -> dict[str, torch.Tensor]:
    """`forward_read` on a padded batch at its rows' positions."""
    return forward_read(model, batch.input_ids, batch.attention_mask, batch.pos, read, patch, **kwargs)


def stream(
    model: LoadedModel,
    token_lists: Sequence[Sequence[int]],
    pos: np.ndarray,
    read: Sequence[str],
    *,
    batch_size: int = 32,
    patch: Patch | None = None,
    progress: Callable[[int, int], None] | None = None,
    max_tokens: int | None = None,
) -> Iterator[tuple[npt.NDArray[np.intp], dict[str, torch.Tensor]]]:
    """Batched `run_batch` over all texts: (rows into the caller's text list, hook values `[rows, d]`) per batch.

    Nothing is kept between batches, so a consumer that reduces each batch needs memory for one batch only.
    `progress(texts done, texts in all)` is called after each batch has been consumed.
    """
    done = 0
    for batch in batches(
        token_lists, pos, batch_size=batch_size, pad_id=model.pad_id, device=model.device, max_tokens=max_tokens
    ):
        with torch.inference_mode():  # not held across the yield: the consumer runs in its own grad mode
            values = run_batch(model, batch, read, patch)
        yield batch.rows, values
        done += len(batch.rows)
        if progress:
            progress(done, len(token_lists))


def collect(
    model: LoadedModel,
    token_lists: Sequence[Sequence[int]],
    pos: np.ndarray,
    read: Sequence[str],
    *,
    batch_size: int = 32,
    patch: Patch | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, torch.Tensor]:
    """`stream`, gathered: each hook's values for all texts, `[texts, d]`, in the caller's text order."""
    n = len(token_lists)
    result: dict[str, torch.Tensor] = {}
    for rows, values in stream(model, token_lists, pos, read, batch_size=batch_size, patch=patch, progress=progress):
        for name, v in values.items():
            if name not in result:
                result[name] = torch.empty((n, *v.shape[1:]), dtype=v.dtype, device=v.device)
            result[name][torch.as_tensor(rows, device=v.device)] = v
    return result
