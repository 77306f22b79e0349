"""Claims and how they are judged.

A value that is undefined (JSON ``null``) fails every claim, with its reason. On a metric with
an interval (``projection.*.r``, ``patching.slope``) a claim is judged by default
(``judge: bound``) on the interval: ``>=``/``>`` on ``ci_low``, ``<=``/``<`` on ``ci_high``,
``+-``/``between`` need the whole interval inside the range (the estimate must satisfy the claim
too). ``judge: estimate`` judges the estimate alone. ``==`` always compares the estimate
(meant for counts such as ``n`` and ``dataset_size``). If the interval is undefined while
judging on the bound, the claim fails and says so.
"""

from __future__ import annotations

import difflib
import fnmatch
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from pytest_neuronprobe.claims.expressions import Expr, Range, parse_expr
from pytest_neuronprobe.claims.metrics import KNOWN_METRICS, PAIR_METRICS, Metric, as_metrics, is_known_metric
from pytest_neuronprobe.core.errors import NeuronProbeError
from pytest_neuronprobe.core.formatting import format_distinct, format_short

__all__ = [
    "JUDGES",
    "Claim",
    "Verdict",
    "evaluate",
    "evaluate_all",
    "missing_message",
    "parse_claim",
    "suggest",
]

#: How a claim on a metric with an interval is judged: on the interval's bound, or the estimate.
JUDGES = ("bound", "estimate")


@dataclass(frozen=True)
class Claim:
    """An expression about one metric; ``text`` is the whole claim as written."""

    metric: str
    expr: Expr
    text: str
    source: str | None = None
    line: int | None = None
    judge: str = "bound"
    #: Glob over run names this claim applies to; ``None``: every run.
    run: str | None = None
    #: Why the claim is expected to fail (its items are strict xfail); ``None``: expected to hold.
    xfail: str | None = None
    #: Analysis options the claim is judged with (a claims file's ``options:``; checked by
    #: ``analyses.options.split_keywords``); empty: the session's.
    options: Mapping[str, object] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if self.judge not in JUDGES:
            raise NeuronProbeError(f"judge must be one of {', '.join(JUDGES)}, got {self.judge!r}", key=self.metric)

    @property
    def where(self) -> str:
        """``file:line`` when the claim came from a file, else ``""``."""
        if self.source is None:
            return ""
        return f"{self.source}:{self.line}" if self.line is not None else self.source

    def applies_to(self, run_name: str) -> bool:
        """True when the claim's run glob (if any) matches ``run_name``."""
        return self.run is None or fnmatch.fnmatchcase(run_name, self.run)


def parse_claim(
    text: str, *, judge: str = "bound", source: str | None = None, line: int | None = None, run: str | None = None
) -> Claim:
    """Parse ``"METRIC EXPR"`` (e.g. ``"projection.head.r >= 0.8"``) into a :class:`Claim`."""
    if not isinstance(text, str) or not text.strip():
        raise NeuronProbeError(f"expected a claim such as 'projection.head.r >= 0.8', got {text!r}")
    m = re.match(r"\s*([A-Za-z_](?:[\w.]|\[\d+\])*)\s*(.*)$", text, re.DOTALL)
    if m is None:
        raise NeuronProbeError(
            f"cannot parse claim {text!r}: expected a metric name such as 'projection.head.r' first, then an expression"
        )
    metric, rest = m.group(1), m.group(2)
    expr = parse_expr(rest, context=text.strip())
    return Claim(metric, expr, f"{metric} {expr.text}", source=source, line=line, judge=judge, run=run)


@dataclass(frozen=True)
class Verdict:
    """The outcome of one claim; ``values`` holds the numbers used."""

    passed: bool
    message: str
    judged_on: str  # "ci_low", "ci_high", "interval" or "estimate"
    values: dict[str, float | None] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return self.passed


def suggest(name: str, candidates: Iterable[str]) -> list[str]:
    """Up to four names close to ``name`` (by suffix, then spelling) among ``candidates``."""
    pool = sorted(set(candidates))
    tail = [c for c in pool if c.endswith("." + name)]
    close = difflib.get_close_matches(name, pool, n=3, cutoff=0.6)
    return list(dict.fromkeys(tail + close))[:4]


def missing_message(name: str, available: Mapping[str, Metric], side: str = "") -> str:
    """Why metric ``name`` is absent from a summary (``side``: e.g. ``"baseline "``)."""
    if name in PAIR_METRICS:
        return f"{name} is judged only by the pytest plugin, on a run paired with a --neuron-baseline"
    if is_known_metric(name):
        if name.startswith("attribution.top["):
            why = "the attribution sweep did not run, or verified fewer units"
        elif name.startswith("attribution."):
            why = "the attribution sweep did not run"
        elif name.startswith("patching."):
            why = "the patching analysis did not run"
        elif name.startswith("projection.null."):
            why = "the null baseline was not computed"
        elif name.startswith("projection."):
            why = "the projection analysis did not run"
        else:
            why = "the summary does not record it"
        return f"{name} is not in the {side}summary ({why})"
    hint = suggest(name, [*available, *KNOWN_METRICS])
    did = f"; did you mean {' or '.join(hint)}?" if hint else ""
    return (
        f"unknown metric {name!r}{did} (metric names look like projection.head.r, "
        f"patching.slope, projection.weights.head_input, dataset_size)"
    )


def _sibling_n(metric: str, metrics: Mapping[str, Metric]) -> tuple[str, float] | None:
    prefix = metric.rsplit(".", 1)[0] if "." in metric else ""
    for key in (f"{prefix}.n", f"{prefix}.n_texts"):
        m = metrics.get(key)
        if m is not None and m.value is not None and key != metric:
            return key.rsplit(".", 1)[1], m.value
    return None


@dataclass
class _Judging:
    """One claim being judged: what the messages need."""

    claim: Claim
    metric: Metric
    metrics: Mapping[str, Metric]
    rng: Range
    values: dict[str, float | None]
    base_note: str = ""

    @property
    def short(self) -> str:
        return self.claim.metric.rsplit(".", 1)[-1]

    @property
    def n_note(self) -> str:
        n = _sibling_n(self.claim.metric, self.metrics)
        return f"{n[0]}={format_short(n[1])}" if n else ""

    @property
    def edges(self) -> list[float]:
        return [e for e in (self.rng.low, self.rng.high) if math.isfinite(e)]

    @property
    def against(self) -> str:
        return f" against {self.rng}" if self.claim.expr.kind == "range" else ""

    def failed(self, message: str, judged_on: str = "estimate") -> Verdict:
        return _failed(self.claim, message, self.values, judged_on)


def _failed(claim: Claim, message: str, values: dict[str, float | None], judged_on: str = "estimate") -> Verdict:
    return Verdict(False, f"{claim.text} failed: {message}", judged_on, values)


#: Why a claim's reference value is missing when no metrics were given for it.
_NO_REFERENCE = {
    "baseline": "no baseline given (use --neuron-baseline)",
    "previous": "no history given (use --neuron-history DIR)",
    "best": "no history given (use --neuron-history DIR)",
}


def _reference_value(
    claim: Claim, references: Mapping[str, Mapping[str, Metric] | None], values: dict[str, float | None]
) -> tuple[float | None, str | None]:
    """The reference value (baseline, previous, best) the claim refers to (``None`` if it refers to
    none), or why there is none."""
    ref = claim.expr.ref
    if ref is None:
        return None, None
    source = references.get(ref)
    if source is None:
        return None, _NO_REFERENCE.get(ref, f"no {ref} given")
    bm = source.get(claim.metric)
    if bm is None:
        if ref != "baseline":
            return None, f"{claim.metric} is not in the {ref} history entry (only headline metrics are recorded)"
        return None, missing_message(claim.metric, source, side="baseline ")
    if bm.value is None:
        values[ref] = None
        return None, f"{ref} {claim.metric} is undefined: {bm.reason or 'undefined'}"
    values[ref] = bm.value
    return bm.value, None


def _record_range(j: _Judging, base: float | None) -> None:
    """Put the threshold (or range) into ``values``; note where it came from when a baseline did."""
    rng, values = j.rng, j.values
    if j.claim.expr.kind == "lower":
        values["threshold"] = rng.low
    elif j.claim.expr.kind in ("upper", "equal"):
        values["threshold"] = rng.high
    else:
        values.update(low=rng.low, high=rng.high)
    if base is not None:
        what = f"threshold {format_short(values['threshold'])}" if "threshold" in values else f"range {rng}"
        j.base_note = f"; {what} from {j.claim.expr} with {j.claim.expr.ref} {j.short}={format_short(base)}"


def _interval_text(metric: Metric) -> str | None:
    lo, hi = metric.ci_low, metric.ci_high
    if lo is None or hi is None:
        return None
    return f"interval [{format_short(lo)}, {format_short(hi)}]"


def _on_estimate(j: _Judging, est: float) -> Verdict:
    passed = j.rng.contains(est)
    extras = ", ".join(x for x in (_interval_text(j.metric), j.n_note) if x)
    verdict = "passed" if passed else "failed"
    msg = (
        f"{j.claim.text} {verdict}: judged on the estimate {j.short}={format_distinct(est, *j.edges)}"
        f"{j.against}" + (f" ({extras})" if extras else "") + j.base_note
    )
    return Verdict(passed, msg, "estimate", j.values)


def _on_bound(j: _Judging, est: float) -> Verdict:
    kind, rng, edges, short = j.claim.expr.kind, j.rng, j.edges, j.short
    needed = {"lower": ("ci_low",), "upper": ("ci_high",), "range": ("ci_low", "ci_high")}[kind]
    judged_on = needed[0] if len(needed) == 1 else "interval"
    lo, hi = j.metric.ci_low, j.metric.ci_high
    if (lo is None and "ci_low" in needed) or (hi is None and "ci_high" in needed):
        extras = ", ".join(x for x in (f"estimate {short}={format_short(est)}", j.n_note) if x)
        return j.failed(
            f"the 95% interval of {short} is undefined ({extras}); it is judged on the "
            f"interval bound by default: add 'judge: estimate' to judge on the estimate",
            judged_on,
        )
    interval = _interval_text(j.metric)
    if kind == "lower":
        assert lo is not None
        bound_ok = rng.contains(lo)
        how = f"the 95% interval's lower bound ci_low={format_distinct(lo, *edges)}"
    elif kind == "upper":
        assert hi is not None
        bound_ok = rng.contains(hi)
        how = f"the 95% interval's upper bound ci_high={format_distinct(hi, *edges)}"
    else:
        assert lo is not None and hi is not None
        bound_ok = rng.contains(lo) and rng.contains(hi)
        how = f"the whole 95% interval [{format_distinct(lo, *edges)}, {format_distinct(hi, *edges)}]{j.against}"
        interval = None
    est_ok = rng.contains(est)
    passed = bound_ok and est_ok
    verdict = "passed" if passed else "failed"
    extras = ", ".join(x for x in (f"estimate {short}={format_distinct(est, *edges)}", interval, j.n_note) if x)
    odd = "" if est_ok or not bound_ok else "; the estimate itself does not satisfy the claim"
    msg = f"{j.claim.text} {verdict}: judged on {how} ({extras}){odd}{j.base_note}"
    return Verdict(passed, msg, judged_on, j.values)


def _on_name(claim: Claim, metric: Metric, values: dict[str, float | None]) -> Verdict:
    """A claim on a metric's name (``attribution.top[0] == L2.N470``): equal names pass."""
    if metric.text is None:
        return _failed(claim, f"{claim.metric} is a number, not a name: compare it with a number", values)
    passed = metric.text == claim.expr.a.text
    values["estimate"] = metric.value
    value = "undefined" if metric.value is None else format_short(metric.value)
    msg = f"{claim.text} {'passed' if passed else 'failed'}: {claim.metric} is {metric.text} (value {value})"
    return Verdict(passed, msg, "estimate", values)


def evaluate(
    claim: Claim,
    metrics: Mapping[str, Metric],
    baseline: Mapping[str, Metric] | None = None,
    *,
    references: Mapping[str, Mapping[str, Metric] | None] | None = None,
) -> Verdict:
    """Judge ``claim`` on ``metrics`` (from :func:`flatten`), with an optional baseline and the
    ``previous``/``best`` metrics of the history (``references``, keyed by those words).

    Never passes on an undefined value, an undefined interval (when judging on the bound), an
    unknown metric or a missing reference value.
    """
    values: dict[str, float | None] = {}
    metric = metrics.get(claim.metric)
    if metric is None:
        return _failed(claim, missing_message(claim.metric, metrics), values)
    base, problem = _reference_value(claim, {**(references or {}), "baseline": baseline}, values)
    if problem is not None:
        return _failed(claim, problem, values)
    if claim.expr.a.text is not None:
        return _on_name(claim, metric, values)
    values.update(estimate=metric.value, ci_low=metric.ci_low, ci_high=metric.ci_high)
    j = _Judging(claim, metric, metrics, claim.expr.range(base), values)
    _record_range(j, base)
    if metric.value is None:
        return j.failed(f"{claim.metric} is undefined: {metric.reason or 'undefined'}")
    has_interval = metric.has_interval or metric.ci_low is not None or metric.ci_high is not None
    if claim.judge == "estimate" or claim.expr.kind == "equal" or not has_interval:
        return _on_estimate(j, metric.value)
    return _on_bound(j, metric.value)


def evaluate_all(
    claims: Iterable[Claim], summary: Mapping[str, object], baseline: Mapping[str, object] | None = None
) -> list[tuple[Claim, Verdict]]:
    """Judge the claims that apply to ``summary``'s run (by the claims' ``run`` globs).

    ``summary`` and ``baseline`` are summary.json dicts (or already flattened metric dicts).
    """
    metrics = as_metrics(summary)
    base = None if baseline is None else as_metrics(baseline)
    run = summary.get("run") if isinstance(summary, Mapping) else None
    name = str(run.get("name", "")) if isinstance(run, Mapping) else ""
    return [(c, evaluate(c, metrics, base)) for c in claims if c.applies_to(name)]
