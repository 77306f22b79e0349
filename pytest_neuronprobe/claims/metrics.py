"""Metric names: a summary.json dict (SPEC §5) as named :class:`Metric` values.

The names follow the attribute paths of the Python result objects:

- ``projection.<name>.r | r_squared | p_value | spearman | n`` for ``<name>`` in
  ``prediction, head, input, output, neuron_dir, live`` (``r`` carries the bootstrap 95%
  interval);
- ``projection.weights.head_input | head_output | input_output``;
- ``projection.null.random.<field>`` and ``projection.null.neurons.<field>`` for
  ``observed, p_value, percentile_95, selectivity, n_null``;
- ``patching.slope`` (with its 95% interval), ``patching.intercept``, ``patching.r_squared``,
  ``patching.baseline_correlation``, ``patching.direct_slope``, ``patching.direct_fraction``,
  ``patching.n_texts``;
- ``projection.control.r | r_sd | r_min | r_max | head_r | selectivity | n_shuffles | n_train`` (the
  control task) and ``projection.input_probe.r | r_squared | p_value | spearman | n`` (``r`` with its
  interval), present when the control analysis ran (:func:`needs_control`);
- ``attribution.target.rank | rank_estimate | share | effect | estimate | direct`` (``effect`` with its 95%
  interval), ``attribution.spearman``, ``attribution.trustworthy`` (1 or 0), ``attribution.n_units``,
  ``attribution.n_texts``, and ``attribution.top[i]``: the i-th verified unit by exact effect, whose value is
  that effect (with its interval) and whose name (``L2.N470``) a claim ``"== L2.N470"`` compares;
- ``dataset_size``;
- ``baseline.comparable`` (the pytest plugin only): 1 when the run and its paired baseline were
  analysed alike (split, n, options, processing, base model, package version), else 0.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import cast

from pytest_neuronprobe.analyses.options import NAMES as PROJECTION_NAMES
from pytest_neuronprobe.core.errors import NeuronProbeError

__all__ = [
    "HEADLINE_METRICS",
    "KNOWN_METRICS",
    "PAIR_METRICS",
    "Metric",
    "as_metrics",
    "claim_needs",
    "flatten",
    "is_known_metric",
    "needs_attribution",
    "needs_control",
]

_CORRELATION_FIELDS = (
    ("r", "correlation"),
    ("r_squared", "r_squared"),
    ("p_value", "p_value"),
    ("spearman", "spearman"),
    ("n", "n"),
)
_WEIGHT_FIELDS = ("head_input", "head_output", "input_output")
_NULL_FIELDS = ("observed", "p_value", "percentile_95", "selectivity", "n_null")
_CONTROL_FIELDS = ("r", "r_sd", "r_min", "r_max", "head_r", "selectivity", "n_shuffles", "n_train")
#: The prefixes of the metrics the control analysis fills (analyses/control.py).
CONTROL_PREFIXES = ("projection.control.", "projection.input_probe.")
_PATCHING_FIELDS = (
    "slope",
    "intercept",
    "r_squared",
    "baseline_correlation",
    "direct_slope",
    "direct_fraction",
    "n_texts",
)

#: Every name :func:`flatten` can produce (a summary may hold fewer).
KNOWN_METRICS: tuple[str, ...] = (
    *(f"projection.{p}.{f}" for p in PROJECTION_NAMES for f, _ in _CORRELATION_FIELDS),
    *(f"projection.weights.{w}" for w in _WEIGHT_FIELDS),
    *(f"projection.null.{k}.{f}" for k in ("random", "neurons") for f in _NULL_FIELDS),
    *(f"patching.{f}" for f in _PATCHING_FIELDS),
    "dataset_size",
    *(f"projection.control.{f}" for f in _CONTROL_FIELDS),
    *(f"projection.input_probe.{f}" for f, _ in _CORRELATION_FIELDS),
    *(f"attribution.target.{f}" for f in ("rank", "rank_estimate", "share", "effect", "estimate", "direct")),
    *(f"attribution.{f}" for f in ("spearman", "trustworthy", "n_units", "n_texts")),
    "attribution.top[0]",
)

#: Metrics of a run's pairing with its baseline, not of a summary (the pytest plugin judges them).
PAIR_METRICS: tuple[str, ...] = ("baseline.comparable",)

_KNOWN = frozenset((*KNOWN_METRICS, *PAIR_METRICS))

#: The key metrics of a run: the default rows of a comparison table.
HEADLINE_METRICS: tuple[str, ...] = (
    "projection.prediction.r",
    "projection.head.r",
    "projection.input.r",
    "projection.output.r",
    "projection.neuron_dir.r",
    "projection.live.r",
    "projection.weights.head_input",
    "projection.weights.head_output",
    "projection.weights.input_output",
    "projection.null.random.selectivity",
    "projection.null.neurons.selectivity",
    "patching.slope",
    "patching.intercept",
    "patching.r_squared",
    "patching.baseline_correlation",
    "patching.direct_slope",
    "projection.control.r",
    "projection.control.selectivity",
    "projection.input_probe.r",
)


@dataclass(frozen=True)
class Metric:
    """One named number of a run; ``value is None`` means undefined, with ``reason``."""

    name: str
    value: float | None
    ci_low: float | None = None
    ci_high: float | None = None
    reason: str | None = None
    #: The metric has a 95% interval (even when the interval itself is undefined).
    has_interval: bool = False
    #: A name the metric stands for besides its value (``attribution.top[0]``: the unit, e.g. ``L2.N470``).
    text: str | None = None

    @property
    def defined(self) -> bool:
        """True when the value exists."""
        return self.value is not None


def is_known_metric(name: str) -> bool:
    """Whether a claim may name ``name``: a metric :func:`flatten` can produce, or one of :data:`PAIR_METRICS`."""
    return name in _KNOWN or re.fullmatch(r"attribution\.top\[\d+\]", name) is not None


def claim_needs(metrics: Iterable[str]) -> tuple[bool, bool]:
    """Which analyses (projection, patching) the named metrics need."""
    names = list(metrics)
    pair = any(m in PAIR_METRICS for m in names)  # comparability looks at both analyses' options
    projection = pair or any(m.startswith("projection.") or m == "dataset_size" for m in names)
    patching = pair or any(m.startswith("patching.") for m in names)
    return projection, patching


def needs_control(metrics: Iterable[str]) -> bool:
    """Whether the named metrics need the control analysis (the control task, the input probe)."""
    return any(m.startswith(CONTROL_PREFIXES) for m in metrics)


def needs_attribution(metrics: Iterable[str]) -> bool:
    """Whether the named metrics need the attribution sweep (which no session computes unless asked)."""
    return any(m.startswith("attribution.") for m in metrics)


def _number(x: object, key: str) -> float | None:
    """A finite float, ``None`` for null/NaN/inf; anything else is bad input."""
    if x is None:
        return None
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise NeuronProbeError(f"expected a number or null, got {x!r}", key=key)
    try:
        v = float(x)
    except OverflowError:  # an integer past a float's range (never str(x): it may exceed the int-string limit)
        digits = int(abs(int(x)).bit_length() * math.log10(2)) + 1
        raise NeuronProbeError(f"expected a number or null, got an integer of about {digits} digits", key=key) from None
    return v if math.isfinite(v) else None


def _section(d: Mapping[str, object], key: str, where: str) -> Mapping[str, object] | None:
    value = d.get(key)
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise NeuronProbeError(f"expected an object or null, got {type(value).__name__}", key=f"{where}{key}")
    return value


def _reason(entry: Mapping[str, object]) -> str | None:
    reason = entry.get("reason")
    return str(reason) if reason else None


class _Flattener:
    """The metrics of one summary, collected section by section."""

    def __init__(self) -> None:
        self.out: dict[str, Metric] = {}

    def add(
        self,
        name: str,
        entry: Mapping[str, object],
        key: str,
        where: str,
        *,
        lo: str | None = None,
        hi: str | None = None,
        reason: str | None = None,
        text: str | None = None,
    ) -> None:
        value = _number(entry.get(key), f"{where}.{key}")
        ci_low = _number(entry.get(lo), f"{where}.{lo}") if lo else None
        ci_high = _number(entry.get(hi), f"{where}.{hi}") if hi else None
        own = entry.get(f"{key}_reason")  # the number's own reason (summary.json `<name>_reason`) comes first
        why = None if value is not None else (str(own) if own else reason or "undefined")
        self.out[name] = Metric(name, value, ci_low, ci_high, why, has_interval=lo is not None, text=text)


def _projections(out: _Flattener, summary: Mapping[str, object]) -> bool:
    """Add the correlations; True when the projection analysis ran."""
    projections = _section(summary, "projections", "") or {}
    ran = False
    for p in PROJECTION_NAMES:
        entry = _section(projections, p, "projections.")
        if not entry:  # {}: the projection analysis did not run
            continue
        ran = True
        _correlation(out, f"projection.{p}", entry, f"projections.{p}")
    return ran


def _correlation(out: _Flattener, name: str, entry: Mapping[str, object], where: str) -> None:
    reason = _reason(entry)
    for field_name, key in _CORRELATION_FIELDS:
        interval = ("ci_low", "ci_high") if field_name == "r" else (None, None)
        out.add(f"{name}.{field_name}", entry, key, where, lo=interval[0], hi=interval[1], reason=reason)


def _control(out: _Flattener, summary: Mapping[str, object]) -> None:
    """The control task (`control`: undefined numbers have a sibling `<name>_reason`) and the input probe."""
    control = _section(summary, "control", "")
    if control is not None:
        for name in _CONTROL_FIELDS:
            if name in control:
                why = control.get(f"{name}_reason")
                out.add(f"projection.control.{name}", control, name, "control", reason=str(why) if why else None)
    probe = _section(summary, "input_probe", "")
    if probe:
        _correlation(out, "projection.input_probe", probe, "input_probe")


def _weights(out: _Flattener, summary: Mapping[str, object], ran_projection: bool) -> None:
    weights = _section(summary, "weight_similarities", "")
    if weights is None:
        return
    if ran_projection or any(weights.get(w) is not None for w in _WEIGHT_FIELDS):
        for w in _WEIGHT_FIELDS:
            if w in weights:
                out.add(f"projection.weights.{w}", weights, w, "weight_similarities")


def _null(out: _Flattener, summary: Mapping[str, object]) -> None:
    null = _section(summary, "null", "")
    if null is None:
        return
    for kind in ("random", "neurons"):
        entry = _section(null, kind, "null.")
        if entry is None:
            continue
        reason = _reason(entry)
        for name in _NULL_FIELDS:
            if name in entry:
                out.add(f"projection.null.{kind}.{name}", entry, name, f"null.{kind}", reason=reason)


def _patching(out: _Flattener, summary: Mapping[str, object]) -> None:
    patching = _section(summary, "patching", "")
    if patching is None:
        return
    reason = _reason(patching)
    for name in _PATCHING_FIELDS:
        if name == "slope":
            out.add(
                "patching.slope", patching, "slope", "patching", lo="slope_ci_low", hi="slope_ci_high", reason=reason
            )
        elif name in patching:
            out.add(f"patching.{name}", patching, name, "patching", reason=reason)


def _attribution(out: _Flattener, summary: Mapping[str, object]) -> None:
    section = _section(summary, "attribution", "")
    if section is None:
        return
    target = _section(section, "target", "attribution.") or {}
    for name in ("rank", "rank_estimate", "share", "effect", "estimate", "direct"):
        lo, hi = ("ci_low", "ci_high") if name == "effect" else (None, None)
        out.add(f"attribution.target.{name}", target, name, "attribution.target", lo=lo, hi=hi)
    for name in ("spearman", "n_units", "n_texts"):
        out.add(f"attribution.{name}", section, name, "attribution")
    trust = section.get("trustworthy")
    out.out["attribution.trustworthy"] = Metric("attribution.trustworthy", 1.0 if trust is True else 0.0)
    verified = section.get("verified")
    for i, unit in enumerate(verified if isinstance(verified, list) else []):
        if isinstance(unit, Mapping):
            where = f"attribution.verified[{i}]"
            out.add(
                f"attribution.top[{i}]", unit, "effect", where, lo="ci_low", hi="ci_high", text=str(unit.get("unit"))
            )


def flatten(summary: Mapping[str, object]) -> dict[str, Metric]:
    """Named metrics of one summary.json dict; sections absent from it give no metrics."""
    if not isinstance(summary, Mapping):
        raise NeuronProbeError(f"a summary must be a JSON object, got {type(summary).__name__}")
    f = _Flattener()
    ran_projection = _projections(f, summary)
    _weights(f, summary, ran_projection)
    _null(f, summary)
    _patching(f, summary)
    _control(f, summary)
    _attribution(f, summary)
    if "dataset_size" in summary:
        f.add("dataset_size", summary, "dataset_size", "summary")
    return f.out


def as_metrics(d: Mapping[str, object]) -> Mapping[str, Metric]:
    """``d`` itself when it already maps names to :class:`Metric`, else :func:`flatten` of it."""
    if d and all(isinstance(v, Metric) for v in d.values()):
        return cast("Mapping[str, Metric]", d)
    return flatten(d)
