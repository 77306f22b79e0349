"""Run directories (SPEC §1): discovery, the validated config, the dataset's location."""

from __future__ import annotations

import itertools
import json
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pytest_neuronprobe.core.datasets import choose_split, read_dataset
from pytest_neuronprobe.core.errors import NeuronProbeError
from pytest_neuronprobe.core.files import check_input_file

HEAD_FILES = ("head.safetensors", "head.pt")
HEAD_TYPES = ("regression", "classification", "token")
PROCESSING = ("compat", "raw")
NEURON_RE = re.compile(r"neuron_l(\d+)_n(\d+)(?!\d)")


@dataclass(frozen=True)
class RunConfig:
    """`config.json` with SPEC §1 defaults applied; `raw` keeps the file's own dict."""

    head_type: str
    base_model_name: str | None
    target_layer: int | None
    target_neuron: int | None
    layer_type: str = "post"
    head_config: dict[str, Any] = field(default_factory=dict)
    bin_edges: tuple[float, ...] | None = None
    feature_layer: int = -1
    feature_hook: str | None = None
    token_pos: str | int = "last"
    prepend_bos: bool = False
    processing: str = "compat"
    base_model_path: str | None = None
    dataset_path: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def digit_tokens(self) -> list[int] | None:
        return self.head_config.get("digit_tokens")


@dataclass(frozen=True)
class Run:
    """One probe-training run, located and validated, ready to be analysed."""

    path: Path
    name: str
    model_dir: Path
    config_path: Path
    head_path: Path
    dataset_path: Path
    config: RunConfig
    layer: int
    neuron: int
    data: pd.DataFrame = field(repr=False, compare=False)
    split: str = "all"

    @property
    def head_type(self) -> str:
        return self.config.head_type

    @property
    def base_model(self) -> str:
        """What the model loader boots: a local HF directory, else the hub name."""
        if self.config.base_model_path:
            return str((self.model_dir / self.config.base_model_path).resolve())
        return str(self.config.base_model_name)

    @property
    def base_model_is_local(self) -> bool:
        return bool(self.config.base_model_path)

    @property
    def base_model_outside(self) -> str | None:
        """The config's `base_model_path` when it is absolute or leads out of the run directory (the run is
        then not self-contained: said when loading, and recorded in provenance), else None."""
        written = self.config.base_model_path
        if not written:
            return None
        # by the path as written (a link inside the run, e.g. to a shared copy, stays inside)
        local = Path(os.path.normpath(os.path.abspath(self.model_dir / written)))
        if Path(written).is_absolute() or not local.is_relative_to(os.path.abspath(self.path)):
            return written
        return None

    def analysed(self) -> pd.DataFrame:
        """The rows the analyses use: the `split` rule of SPEC §1, in file order."""
        if self.split == "all":
            return self.data
        rows: pd.DataFrame = self.data[self.data["split"] == self.split]
        return rows

    def __repr__(self) -> str:
        return f"Run({self.name!r}, L{self.layer} N{self.neuron}, {self.head_type}, split={self.split})"


def load_run(path: str | Path) -> Run:
    """Locate and validate a run directory (SPEC §1); raise NeuronProbeError on bad input."""
    given = Path(path).expanduser()
    if not given.exists():
        raise NeuronProbeError("run directory does not exist", path=given)
    if not given.is_dir():
        raise NeuronProbeError("expected a run directory, got a file", path=given)
    given = given.resolve()
    model_dir = find_model_dir(given)
    root = _run_root(given, model_dir)
    config_path = model_dir / "config.json"
    head_path = _head_file(model_dir)
    config = parse_config(_read_json(config_path), config_path, model_dir)
    layer, neuron = _layer_and_neuron(config, config_path, root, model_dir)
    dataset_path = find_dataset(root, model_dir, config, layer, neuron)
    check_input_file(dataset_path, "dataset", expected="a CSV with columns text, activation")
    data = read_dataset(dataset_path)
    split = choose_split(data)
    return Run(
        path=root,
        name=root.name,
        model_dir=model_dir,
        config_path=config_path,
        head_path=head_path,
        dataset_path=dataset_path,
        config=config,
        layer=layer,
        neuron=neuron,
        data=data,
        split=split,
    )


def find_model_dir(path: Path) -> Path:
    """Discovery: the path itself, else `models/*neuron_lL_nN*/best_model` (then the dir), else any `best_model/`."""
    if (path / "config.json").is_file() and _has_head(path):
        return path
    if (path / "config.json").is_file():
        raise NeuronProbeError(
            f"config.json found but no head file (expected one of {', '.join(HEAD_FILES)})", path=path
        )
    models = path / "models"
    candidates: list[Path] = []
    if models.is_dir():
        for sub in sorted(p for p in models.iterdir() if p.is_dir() and NEURON_RE.search(p.name)):
            best = sub / "best_model"
            if (best / "config.json").is_file():
                candidates.append(best)
            elif (sub / "config.json").is_file():
                candidates.append(sub)
    if not candidates:
        candidates = sorted(p for p in path.rglob("best_model") if p.is_dir() and (p / "config.json").is_file())
    if len(candidates) > 1:
        listed = ", ".join(str(c.relative_to(path)) for c in candidates)
        raise NeuronProbeError(
            f"several candidate model directories ({listed}); pass one of them as the run path", path=path
        )
    if not candidates:
        lacking = sorted(str(p.relative_to(path)) for p in path.rglob("best_model") if p.is_dir())
        raise NeuronProbeError(
            "no model directory found: expected config.json + head file here, "
            "models/neuron_l{L}_n{N}*/best_model/, or a best_model/ below"
            + (f" ({', '.join(lacking)}: no config.json)" if lacking else ""),
            path=path,
        )
    model_dir = candidates[0]
    if not _has_head(model_dir):
        raise NeuronProbeError(f"no head file (expected one of {', '.join(HEAD_FILES)})", path=model_dir)
    return model_dir


def _has_head(d: Path) -> bool:
    return any((d / f).is_file() for f in HEAD_FILES)


def _head_file(d: Path) -> Path:
    found = [d / f for f in HEAD_FILES if (d / f).is_file()]
    if len(found) > 1:
        raise NeuronProbeError("both head.pt and head.safetensors present; keep one", path=d)
    return found[0]


def _run_root(given: Path, model_dir: Path) -> Path:
    """The run root: the given path, or when that is the model dir, the ancestor holding `datasets/`."""
    if given != model_dir:
        return given
    for parent in list(model_dir.parents)[:3]:
        if (parent / "datasets").is_dir():
            return parent
    return model_dir


def _read_json(path: Path) -> dict[str, Any]:
    check_input_file(path, "config", expected="a JSON object")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise NeuronProbeError(
            f"not a readable file ({exc.strerror or exc}); expected a JSON object", path=path
        ) from None
    except UnicodeDecodeError as exc:
        raise NeuronProbeError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", path=path) from None
    if not text.strip():
        raise NeuronProbeError("file is empty; expected a JSON object", path=path)
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise NeuronProbeError(
            f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})", path=path
        ) from None
    except (ValueError, RecursionError) as exc:  # e.g. an integer of over 4300 digits, or nesting too deep
        raise NeuronProbeError(f"not valid JSON: {type(exc).__name__}: {str(exc)[:120]}", path=path) from None
    if not isinstance(obj, dict):
        raise NeuronProbeError(f"expected a JSON object, got {type(obj).__name__}", path=path)
    return obj


def _int(cfg: dict[str, Any], key: str, path: Path, *, minimum: int | None = None) -> int | None:
    value = cfg.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise NeuronProbeError(f"expected an integer, got {value!r}", path=path, key=key)
    if minimum is not None and value < minimum:
        raise NeuronProbeError(f"expected an integer >= {minimum}, got {value}", path=path, key=key)
    return value


def _str(cfg: dict[str, Any], key: str, path: Path) -> str | None:
    value = cfg.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise NeuronProbeError(f"expected a non-empty string, got {value!r}", path=path, key=key)
    return value


def parse_config(cfg: dict[str, Any], path: Path, model_dir: Path) -> RunConfig:
    """Validate `config.json` against SPEC §1 and apply its defaults."""
    head_type = cfg.get("head_type")
    if head_type is None:
        raise NeuronProbeError(
            f"missing required key; expected one of {', '.join(HEAD_TYPES)}", path=path, key="head_type"
        )
    if head_type not in HEAD_TYPES:
        raise NeuronProbeError(
            f"unknown head_type {head_type!r}; expected one of {', '.join(HEAD_TYPES)}", path=path, key="head_type"
        )
    base_model_name, base_model_path = _base_model(cfg, path, model_dir)
    head_config = _head_config(cfg, path)
    layer_type = _str(cfg, "layer_type", path) or "post"
    token_pos = cfg.get("token_pos", "last")
    if token_pos is None:
        token_pos = "last"
    if not (token_pos == "last" or (isinstance(token_pos, int) and not isinstance(token_pos, bool))):
        raise NeuronProbeError(f"expected 'last' or an integer position, got {token_pos!r}", path=path, key="token_pos")
    prepend_bos = cfg.get("prepend_bos", False)
    if prepend_bos is None:
        prepend_bos = False
    if not isinstance(prepend_bos, bool):
        raise NeuronProbeError(f"expected true or false, got {prepend_bos!r}", path=path, key="prepend_bos")
    processing = cfg.get("processing")
    if processing is None:
        processing = "compat"
    if processing not in PROCESSING:
        raise NeuronProbeError(
            f"expected one of {', '.join(PROCESSING)}, got {processing!r}", path=path, key="processing"
        )
    feature_layer = _int(cfg, "feature_layer", path)
    return RunConfig(
        head_type=head_type,
        base_model_name=base_model_name,
        target_layer=_int(cfg, "target_layer", path, minimum=0),
        target_neuron=_int(cfg, "target_neuron", path, minimum=0),
        layer_type=layer_type,
        head_config=head_config,
        bin_edges=_bin_edges(cfg.get("bin_edges"), path, head_type),
        feature_layer=-1 if feature_layer is None else feature_layer,
        feature_hook=_str(cfg, "feature_hook", path),
        token_pos=token_pos,
        prepend_bos=prepend_bos,
        processing=processing,
        base_model_path=base_model_path,
        dataset_path=_str(cfg, "dataset_path", path),
        raw=dict(cfg),
    )


def _head_config(cfg: dict[str, Any], path: Path) -> dict[str, Any]:
    """A copy of `head_config` (default empty), its `digit_tokens` checked."""
    head_config = cfg.get("head_config")
    if head_config is None:
        head_config = {}
    if not isinstance(head_config, dict):
        raise NeuronProbeError(f"expected an object, got {head_config!r}", path=path, key="head_config")
    digits = head_config.get("digit_tokens")
    if digits is not None and (
        not isinstance(digits, list)
        or len(digits) != 10
        or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in digits)
    ):
        raise NeuronProbeError(
            f"expected a list of 10 token ids (for '0'..'9'), got {digits!r}", path=path, key="head_config.digit_tokens"
        )
    return dict(head_config)


def _base_model(cfg: dict[str, Any], path: Path, model_dir: Path) -> tuple[str | None, str | None]:
    """(base_model_name, base_model_path): at least one; a path (or a base_model/ directory) is a HF model dir."""
    base_model_name = _str(cfg, "base_model_name", path)
    base_model_path = _str(cfg, "base_model_path", path)
    if base_model_path is None and (model_dir / "base_model").is_dir():
        base_model_path = "base_model"
    if base_model_path is not None:
        local = model_dir / base_model_path
        if not (local / "config.json").is_file():
            raise NeuronProbeError(
                "not a Hugging Face model directory (no config.json)", path=local, key="base_model_path"
            )
    if base_model_name is None and base_model_path is None:
        raise NeuronProbeError(
            "missing: give base_model_name, base_model_path, or a base_model/ directory",
            path=path,
            key="base_model_name",
        )
    return base_model_name, base_model_path


def _bin_edges(value: Any, path: Path, head_type: str) -> tuple[float, ...] | None:
    if value is None:
        return None
    if (
        not isinstance(value, list)
        or len(value) < 2
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    ):
        raise NeuronProbeError(f"expected a list of at least 2 numbers, got {value!r}", path=path, key="bin_edges")
    try:
        edges = tuple(float(v) for v in value)
    except OverflowError:  # an integer too large for a float
        edges = (np.inf,)
    if not all(np.isfinite(edges)):
        raise NeuronProbeError("bin edges must be finite numbers", path=path, key="bin_edges")
    if any(b <= a for a, b in itertools.pairwise(edges)):
        raise NeuronProbeError(f"bin edges must be strictly increasing, got {list(value)}", path=path, key="bin_edges")
    if head_type != "classification":
        warnings.warn(f"{path}: bin_edges ignored for head_type {head_type!r}", stacklevel=3)
    return edges


def _layer_and_neuron(config: RunConfig, config_path: Path, root: Path, model_dir: Path) -> tuple[int, int]:
    """Cross-check config, directory names and introspection summaries; disagreement is an error."""
    sources: list[tuple[str, tuple[int, int]]] = []
    if config.target_layer is not None or config.target_neuron is not None:
        if config.target_layer is None or config.target_neuron is None:
            missing = "target_layer" if config.target_layer is None else "target_neuron"
            raise NeuronProbeError(
                "target_layer and target_neuron must be given together", path=config_path, key=missing
            )
        sources.append((f"{config_path} (target_layer/target_neuron)", (config.target_layer, config.target_neuron)))
    names = [model_dir.name, *[p.name for p in model_dir.parents if p == root or root in p.parents]]
    for name in dict.fromkeys(names):
        m = NEURON_RE.search(name)
        if m:
            sources.append((f"directory name {name!r}", (int(m.group(1)), int(m.group(2)))))
    summaries = {*root.glob("*introspection_summary*.json"), *model_dir.glob("*introspection_summary*.json")}
    for summary in sorted(summaries):
        obj = _read_json(summary)
        if "target_layer" in obj or "target_neuron" in obj:
            layer, neuron = (_index(obj.get(key)) for key in ("target_layer", "target_neuron"))
            if layer is None or neuron is None:
                raise NeuronProbeError(
                    f"expected integers >= 0 for target_layer and target_neuron, got "
                    f"{obj.get('target_layer')!r} and {obj.get('target_neuron')!r}",
                    path=summary,
                    key="target_layer" if layer is None else "target_neuron",
                )
            sources.append((str(summary), (layer, neuron)))
    if not sources:
        raise NeuronProbeError(
            "cannot tell the target neuron: no target_layer/target_neuron in config.json, "
            "no neuron_l{L}_n{N} directory name, no introspection summary",
            path=config_path,
            key="target_layer",
        )
    first_where, first = sources[0]
    for where, value in sources[1:]:
        if value != first:
            raise NeuronProbeError(
                f"layer/neuron sources disagree: {first_where} says L{first[0]} N{first[1]}, "
                f"{where} says L{value[0]} N{value[1]}",
                path=config_path,
                key="target_layer",
            )
    return first


def _index(value: Any) -> int | None:
    """An introspection summary's layer/neuron: an integer >= 0, also written as 8.0 or "8"; else None."""
    if (isinstance(value, float) and value.is_integer()) or (
        isinstance(value, str) and re.fullmatch(r"[0-9]+", value.strip())
    ):
        value = int(value)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def find_dataset(root: Path, model_dir: Path, config: RunConfig, layer: int, neuron: int) -> Path:
    """`datasets/*.csv` naming the neuron (preferring the model dir's stamp), else config `dataset_path`."""
    pattern = re.compile(rf"neuron_l{layer}_n{neuron}(?!\d)")
    datasets = root / "datasets"
    matches = sorted(p for p in datasets.glob("*.csv") if pattern.search(p.name)) if datasets.is_dir() else []
    stamp = model_dir.parent.name if model_dir.name == "best_model" else model_dir.name
    exact = [p for p in matches if p.stem == stamp]
    if exact:
        return exact[0]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        listed = ", ".join(p.name for p in matches)
        raise NeuronProbeError(
            f"several datasets match neuron_l{layer}_n{neuron} ({listed}) and none is named "
            f"after the model directory {stamp!r}",
            path=datasets,
        )
    if config.dataset_path:
        candidate = model_dir / config.dataset_path
        if not candidate.is_file():
            raise NeuronProbeError(
                f"dataset file not found: {candidate}", path=model_dir / "config.json", key="dataset_path"
            )
        return candidate.resolve()
    raise NeuronProbeError(
        f"no dataset: expected datasets/*neuron_l{layer}_n{neuron}*.csv or dataset_path in config.json", path=root
    )
