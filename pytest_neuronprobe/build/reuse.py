"""Run names and the build stamp: what a build asked for, and finding an existing run built that way."""

from __future__ import annotations

import glob
import json
import os
import string
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from pytest_neuronprobe.core.digests import texts_digest, tree_digest
from pytest_neuronprobe.core.errors import NeuronProbeError

__all__ = ["BUILD_STAMP", "DEFAULT_NAME", "build_stamp", "check_name", "find_reusable", "format_name"]

BUILD_STAMP = "neuronprobe_build.json"
DEFAULT_NAME = "{head_type}-neuron_l{layer}_n{neuron}-seed{seed}"
_STAMP_FORMAT = 1


def format_name(template: str, head_type: str, layer: int, neuron: int | str, seed: int) -> str:
    """The run directory name: `template` with {head_type}, {layer}, {neuron}, {seed} filled in.

    Parsed with `string.Formatter` and filled by plain lookup: only the four bare field names are
    accepted (no attribute or index access, conversions or format specs), so a name cannot reach
    into Python objects.
    """
    values = {"head_type": head_type, "layer": layer, "neuron": neuron, "seed": seed}
    fields = "the fields are {head_type}, {layer}, {neuron}, {seed}"
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise NeuronProbeError(f"bad name template {template!r} ({exc}); {fields}", key="name") from None
    out = []
    for literal, field, spec, conversion in parts:
        out.append(literal)
        if field is None:
            continue
        if field not in values or spec or conversion:
            shown = "{" + field + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
            raise NeuronProbeError(
                f"bad name template {template!r}: field {shown} is not allowed; {fields}", key="name"
            )
        out.append(str(values[field]))
    return "".join(out)


def check_name(name: str) -> None:
    """Raise unless `name` is a plain directory name."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or name.startswith("."):
        raise NeuronProbeError(f"run name must be a plain directory name, got {name!r}", key="name")


def build_stamp(*, base_model: str | os.PathLike[str], texts: Sequence[str], **params: object) -> dict[str, object]:
    """What a build asked for: parameters, a digest of the texts and of a local base model's files."""
    base = os.fspath(base_model)
    local = Path(base).expanduser().is_dir()
    return {
        "format": _STAMP_FORMAT,
        "request": {"base_model": base, **{k: params[k] for k in sorted(params)}},
        "texts_sha256": texts_digest(texts),
        "n_texts": len(texts),
        "base_model_sha256": tree_digest(Path(base).expanduser()) if local else None,
        "torch": torch.__version__,
    }


def _stamp_matches(run_dir: Path, stamp: Mapping[str, object]) -> bool:
    try:
        found = json.loads((run_dir / BUILD_STAMP).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(found, dict) or any(found.get(k) != v for k, v in stamp.items()):
        return False
    try:
        from pytest_neuronprobe.core.runs import load_run

        load_run(run_dir)
    except NeuronProbeError:
        return False
    return True


def find_reusable(
    out_root: Path,
    template: str,
    head_type: str,
    layer: int,
    neuron: int | None,
    seed: int,
    stamp: Mapping[str, object],
) -> Path | None:
    """An existing run that this exact request built, found without reading any activations."""
    if neuron is not None or "{neuron" not in template:
        target = out_root / format_name(template, head_type, layer, -1 if neuron is None else neuron, seed)
        return target if _stamp_matches(target, stamp) else None
    if out_root.is_dir():  # neuron=None: any run whose name fits the template
        pattern = glob.escape(format_name(template, head_type, layer, "\0", seed)).replace("\0", "*")
        for candidate in sorted(out_root.glob(pattern)):
            if _stamp_matches(candidate, stamp):
                return candidate
    return None
