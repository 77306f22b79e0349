"""Baseline summaries: loading a summary.json file or a report directory, and pairing them with runs.

Each side of a comparison is a summary.json file, a run's report directory holding
``summary.json``, or a report directory holding ``<run>/summary.json`` per run. Runs are keyed
by ``summary["run"]["name"]``.

A run pairs with one baseline summary by (:meth:`Pairing.pair`):

1. ``--neuron-baseline-run NAME|GLOB``, when given: the one summary whose run name matches;
2. else the same run name;
3. else the same neuron (:class:`NeuronIdentity`: base model, layer, neuron, layer type, head
   type), when exactly one baseline summary has it (several: ambiguous, an error);
4. else a baseline holding a single summary pairs with every run.

A pair analysed differently (split, n, analysis options, processing, base-model digest, package
version) lists the :func:`differences`.
"""

from __future__ import annotations

import fnmatch
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_neuronprobe.core.errors import NeuronProbeError

if TYPE_CHECKING:  # pragma: no cover
    from pytest_neuronprobe.core.runs import Run

__all__ = [
    "BaselinePair",
    "NeuronIdentity",
    "Pairing",
    "Summary",
    "check_summary",
    "differences",
    "load_summaries",
    "load_summary",
]

#: A summary.json dict (SPEC §5), as read from JSON.
Summary = dict[str, Any]


#: The most digits an integer in a summary may have: a float holds at most about 1.8e308.
_MAX_DIGITS = 308


class _TooLarge(ValueError):
    """A JSON number too large to be a metric (an integer past a float's range, a float literal past it)."""


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > _MAX_DIGITS:
        raise _TooLarge(f"an integer of {len(text.lstrip('-'))} digits")
    return int(text)


def _parse_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise _TooLarge(f"{text[:40]}{'…' if len(text) > 40 else ''} overflows to infinity")
    return value


def _decode(path: Path) -> object:
    """The JSON value in ``path``; whatever it holds, a failure is a NeuronProbeError naming it and why."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise NeuronProbeError(f"cannot read summary: {exc.strerror or exc}", path=path) from None
    except UnicodeDecodeError:
        why = "not UTF-8 text (a binary file, or UTF-16?); expected a summary.json as neuronprobe writes it"
        raise NeuronProbeError(why, path=path) from None
    try:
        return json.loads(text, parse_int=_parse_int, parse_float=_parse_float)
    except json.JSONDecodeError as exc:
        why = f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
    except RecursionError:
        why = "its JSON is nested too deeply to be a summary.json"
    except _TooLarge as exc:
        why = f"a number in it is too large to read ({exc})"
    except (ValueError, OverflowError) as exc:
        why = f"cannot read it as a summary.json: {exc}"
    raise NeuronProbeError(why, path=path)


def _read_json(path: Path) -> Summary:
    """The summary in ``path``, its metrics checked readable (:func:`check_summary`)."""
    data = _decode(path)
    if not isinstance(data, dict):
        raise NeuronProbeError(f"expected a JSON object (a summary.json), got {type(data).__name__}", path=path)
    if "projections" not in data and "patching" not in data:
        raise NeuronProbeError("not a neuronprobe summary.json (no 'projections' or 'patching' key)", path=path)
    check_summary(data, path)
    return data


def check_summary(summary: Mapping[str, object], path: Path | str | None = None) -> None:
    """Raise NeuronProbeError (naming ``path``) unless every metric of ``summary`` reads as a number or null."""
    from pytest_neuronprobe.claims.metrics import flatten

    try:
        flatten(summary)
    except NeuronProbeError as exc:
        raise NeuronProbeError(f"not a usable summary.json: {exc}", path=path) from None
    except (ValueError, OverflowError, RecursionError) as exc:
        raise NeuronProbeError(f"a value is not a usable number ({exc})", path=path) from None


def _run_name(summary: Mapping[str, object], path: Path) -> str:
    run = summary.get("run")
    name = run.get("name") if isinstance(run, Mapping) else None
    if not isinstance(name, str) or not name:
        raise NeuronProbeError("expected run.name (a non-empty string)", path=path, key="run.name")
    return name


def load_summaries(path: str | Path) -> dict[str, Summary]:
    """Summaries keyed by run name, from a summary.json file or a report directory.

    A directory is read as ``<dir>/summary.json`` if present, else ``<dir>/*/summary.json``.
    """
    path = Path(path)
    if path.is_dir():
        own = path / "summary.json"
        files = [own] if own.is_file() else sorted(path.glob("*/summary.json"))
        if not files:
            raise NeuronProbeError(
                "no summary.json in this directory or its run subdirectories "
                "(expected <dir>/summary.json or <dir>/<run>/summary.json)",
                path=path,
            )
    elif path.exists():
        files = [path]
    else:
        raise NeuronProbeError("no such file or directory", path=path)
    out: dict[str, Summary] = {}
    where: dict[str, Path] = {}
    for file in files:
        summary = _read_json(file)
        name = _run_name(summary, file)
        if name in out:
            raise NeuronProbeError(f"run {name!r} appears twice (also in {where[name]})", path=file)
        out[name], where[name] = summary, file
    return out


def load_summary(path: str | Path) -> Summary:
    """The one summary at ``path``; an error if ``path`` holds several runs."""
    summaries = load_summaries(path)
    if len(summaries) != 1:
        raise NeuronProbeError(
            f"holds {len(summaries)} runs ({', '.join(summaries)}); use load_summaries or pick one run", path=path
        )
    return next(iter(summaries.values()))


def _section(summary: Mapping[str, object], key: str) -> Mapping[str, object]:
    value = summary.get(key)
    return value if isinstance(value, Mapping) else {}


def _int(x: object) -> int | None:
    return x if isinstance(x, int) and not isinstance(x, bool) else None


def _str(x: object) -> str | None:
    return x if isinstance(x, str) and x else None


@dataclass(frozen=True)
class NeuronIdentity:
    """What makes two runs probes of the same neuron: the base model (its content digest when both sides
    have one, else its name), the target layer and neuron, the layer type (hook) and the head type."""

    base_model: str | None = None
    model_sha256: str | None = None
    layer: int | None = None
    neuron: int | None = None
    hook: str | None = None
    head_type: str | None = None

    @classmethod
    def of_summary(cls, summary: Mapping[str, object]) -> NeuronIdentity:
        run, prov = _section(summary, "run"), _section(summary, "provenance")
        return cls(
            base_model=_str(run.get("base_model")),
            model_sha256=_str(prov.get("model_sha256")),
            layer=_int(run.get("target_layer")),
            neuron=_int(run.get("target_neuron")),
            hook=_str(prov.get("neuron_hook")),
            head_type=_str(run.get("head_type")),
        )

    @classmethod
    def of_run(cls, run: Run, *, digest: bool = False) -> NeuronIdentity:
        """A run's identity from its files; ``digest``: hash the local base model too (memoised per file)."""
        from pytest_neuronprobe.core.digests import tree_digest
        from pytest_neuronprobe.core.models import hook_name

        sha = tree_digest(run.base_model) if digest and run.base_model_is_local else None
        return cls(
            base_model=run.config.base_model_name or run.base_model,
            model_sha256=sha,
            layer=run.layer,
            neuron=run.neuron,
            hook=hook_name(run.config.layer_type, run.layer),
            head_type=run.head_type,
        )

    @classmethod
    def of(cls, run: Run | Mapping[str, object], *, digest: bool = False) -> NeuronIdentity:
        return cls.of_summary(run) if isinstance(run, Mapping) else cls.of_run(run, digest=digest)

    def matches(self, other: NeuronIdentity) -> bool:
        """Same layer, neuron, head type and (where both know it) hook; the same base model by digest
        when both have one, else by name."""
        if self.layer is None or self.layer != other.layer or self.neuron != other.neuron:
            return False
        if self.head_type != other.head_type:
            return False
        if self.hook is not None and other.hook is not None and self.hook != other.hook:
            return False
        if self.model_sha256 is not None and other.model_sha256 is not None:
            return self.model_sha256 == other.model_sha256
        return self.base_model == other.base_model

    def to_json(self) -> dict[str, object]:
        return {
            "base_model": self.base_model,
            "model_sha256": self.model_sha256,
            "layer": self.layer,
            "neuron": self.neuron,
            "hook": self.hook,
            "head_type": self.head_type,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> NeuronIdentity:
        return cls(
            base_model=_str(data.get("base_model")),
            model_sha256=_str(data.get("model_sha256")),
            layer=_int(data.get("layer")),
            neuron=_int(data.get("neuron")),
            hook=_str(data.get("hook")),
            head_type=_str(data.get("head_type")),
        )

    def __str__(self) -> str:
        model = (self.base_model or "?").rstrip("/").rsplit("/", 1)[-1]
        hook = f" {self.hook}" if self.hook else ""
        return f"{model} layer {self.layer} neuron {self.neuron}{hook} {self.head_type}"


#: Option keys that do not change the numbers (left out of the comparison).
_NEUTRAL_OPTIONS = ("batch_size",)


def _short(x: object) -> str:
    if isinstance(x, str) and len(x) == 64 and all(ch in "0123456789abcdef" for ch in x):
        return x[:12] + "…"
    if isinstance(x, float):
        return f"{x:g}"
    return str(x)


def _options_difference(what: str, base: object, now: object) -> str | None:
    if not isinstance(base, Mapping) or not isinstance(now, Mapping):
        return None
    keys = [k for k in dict.fromkeys([*base, *now]) if k not in _NEUTRAL_OPTIONS]
    changed = [f"{k} {_short(base.get(k))} vs {_short(now.get(k))}" for k in keys if base.get(k) != now.get(k)]
    return f"{what}: {', '.join(changed)}" if changed else None


def differences(baseline: Mapping[str, object], current: Mapping[str, object]) -> tuple[str, ...]:
    """How two summaries were analysed differently, each as ``"<what>: <baseline> vs <current>"``
    (split, n, projection and patching options, processing, base-model digest, package version);
    what one side does not record is not compared. Empty: comparable."""
    out: list[str] = []

    def add(what: str, base: object, now: object) -> None:
        if base is not None and now is not None and base != now:
            out.append(f"{what}: {_short(base)} vs {_short(now)}")

    add("split", _section(baseline, "run").get("split"), _section(current, "run").get("split"))
    add("n", baseline.get("dataset_size"), current.get("dataset_size"))
    for what, base, now in (
        ("projection options", baseline.get("projection_options"), current.get("projection_options")),
        (
            "patching options",
            _section(baseline, "patching").get("options"),
            _section(current, "patching").get("options"),
        ),
    ):
        text = _options_difference(what, base, now)
        if text:
            out.append(text)
    bprov, cprov = _section(baseline, "provenance"), _section(current, "provenance")
    add("processing", bprov.get("processing"), cprov.get("processing"))
    add("base-model digest", bprov.get("model_sha256"), cprov.get("model_sha256"))
    add("pytest-neuronprobe", bprov.get("pytest_neuronprobe"), cprov.get("pytest_neuronprobe"))
    return tuple(out)


@dataclass(frozen=True)
class BaselinePair:
    """Which baseline summary a run is compared with, why, and how the two were analysed differently."""

    #: The current run's label, and the paired baseline run's name.
    label: str
    name: str
    #: Why these two pair: "same run name", "same neuron (<identity>)", "the baseline's only summary",
    #: or "--neuron-baseline-run <pattern>".
    reason: str
    summary: Summary
    #: Each way the pair was analysed differently ("split: all vs test", "n: 60 vs 24", ...); empty: comparable.
    differences: tuple[str, ...] = ()

    @property
    def comparable(self) -> bool:
        return not self.differences

    def compared_with(self, current: Mapping[str, object]) -> BaselinePair:
        """This pair with the :func:`differences` between the baseline and the run's own summary."""
        return replace(self, differences=differences(self.summary, current))


def _listing(names: Sequence[str]) -> str:
    return ", ".join(names) if names else "none"


@dataclass
class Pairing:
    """The baseline summaries of a session, and which one each run compares with (rules: module docstring)."""

    path: Path
    summaries: dict[str, Summary]
    #: Why there are no summaries (no baseline written yet), or None.
    missing: str | None = None
    #: --neuron-baseline-run NAME|GLOB, or None.
    force: str | None = None
    update: bool = False

    @classmethod
    def load(cls, path: Path, *, update: bool, force: str | None = None) -> Pairing:
        """Read the baseline at `path`; a baseline not written yet is empty, with the reason.
        A `force` pattern matching none or several of its runs is an error listing them."""
        if not path.exists():
            then = (
                "it will be written at the end of this session" if update else "create it with --neuron-update-baseline"
            )
            return cls(path, {}, f"no baseline at {path} yet; {then}", force, update)
        pairing = cls(path, load_summaries(path), None, force, update)
        if force is not None:
            pairing.forced()
        return pairing

    def forced(self) -> str:
        """The one baseline run --neuron-baseline-run names (its exact name, else its glob's one match)."""
        assert self.force is not None
        if self.force in self.summaries:
            return self.force
        hits = [name for name in self.summaries if fnmatch.fnmatchcase(name, self.force)]
        if len(hits) == 1:
            return hits[0]
        held = f"(it holds: {_listing(list(self.summaries))})"
        if not hits:
            found = f"none of the runs of baseline {self.path} {held}"
        else:
            found = f"{len(hits)} runs of baseline {self.path}: {_listing(hits)}; name one {held}"
        raise NeuronProbeError(f"--neuron-baseline-run {self.force!r} matches {found}")

    def pair(self, label: str, run: Run | Mapping[str, object] | None) -> tuple[BaselinePair | None, str]:
        """The baseline summary the run `label` compares with (`run`: its Run or its summary, for its name and
        neuron), or None with the reason; an ambiguous pairing raises NeuronProbeError listing the candidates."""
        if not self.summaries:
            return None, self.missing or f"baseline {self.path} holds no summaries"
        if self.force is not None:
            name = self.forced()
            return BaselinePair(label, name, f"--neuron-baseline-run {self.force}", self.summaries[name]), ""
        own = _own_name(run)
        for key in dict.fromkeys([label, *([own] if own else [])]):
            if key in self.summaries:
                return BaselinePair(label, key, "same run name", self.summaries[key]), ""
        identity = self._identity(run)
        if identity is not None:
            hits = [n for n, s in self.summaries.items() if identity.matches(NeuronIdentity.of_summary(s))]
            if len(hits) == 1:
                return BaselinePair(label, hits[0], f"same neuron ({identity})", self.summaries[hits[0]]), ""
            if hits:
                raise NeuronProbeError(
                    f"run {label!r} pairs ambiguously: {len(hits)} runs of baseline {self.path} probe the same "
                    f"neuron ({identity}): {_listing(hits)}; choose one with --neuron-baseline-run NAME|GLOB"
                )
        if len(self.summaries) == 1:
            name = next(iter(self.summaries))
            return BaselinePair(label, name, "the baseline's only summary", self.summaries[name]), ""
        neuron = f" or its neuron ({identity})" if identity is not None else ""
        then = "; it will be written at the end of this session" if self.update else ""
        return None, (
            f"baseline {self.path} has no summary for run {label!r} (it holds: {_listing(list(self.summaries))}; "
            f"none has its name{neuron}); choose one with --neuron-baseline-run NAME{then}"
        )

    def _identity(self, run: Run | Mapping[str, object] | None) -> NeuronIdentity | None:
        if run is None:
            return None
        digest = any(_section(s, "provenance").get("model_sha256") for s in self.summaries.values())
        return NeuronIdentity.of(run, digest=digest)


def _own_name(run: Run | Mapping[str, object] | None) -> str | None:
    if run is None:
        return None
    if isinstance(run, Mapping):
        return _str(_section(run, "run").get("name"))
    return run.name


def is_summary_file(path: Path) -> bool:
    """Whether ``path`` holds a neuronprobe summary (a JSON object with "projections" or "patching")."""
    try:
        with path.open("rb") as handle:
            data = json.loads(handle.read(64 * 1024 * 1024 + 1))
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(data, dict) and ("projections" in data or "patching" in data)
