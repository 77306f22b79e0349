"""Claims on a run's numbers: the metric names, the expression language, claims files.

Metric names
------------
:func:`flatten` turns a summary.json dict (SPEC §5) into named :class:`Metric` values. The
names follow the attribute paths of the Python result objects:

- ``projection.<name>.r | r_squared | p_value | spearman | n`` for ``<name>`` in
  ``prediction, head, input, output, neuron_dir, live`` (``r`` carries the bootstrap 95%
  interval);
- ``projection.weights.head_input | head_output | input_output``;
- ``projection.null.random.<field>`` and ``projection.null.neurons.<field>`` for
  ``observed, p_value, percentile_95, selectivity, n_null``;
- ``patching.slope`` (with its 95% interval), ``patching.intercept``, ``patching.r_squared``,
  ``patching.baseline_correlation``, ``patching.direct_slope``, ``patching.direct_fraction``,
  ``patching.n_texts``;
- ``dataset_size``.

Expressions
-----------
::

    >= 0.8          > 0.8          <= 0.05          < 0.05          == 500
    1.0 +- 0.2      (also 1.0 ± 0.2, 1.0 +/- 0.2; the range is inclusive)
    between 0.5 and 1.5            (inclusive)
    >= baseline - 0.05             >= baseline * 0.9          baseline +- 0.1

Numbers may be negative and use exponents (``1e-3``). ``baseline`` is the same metric's
estimate in the baseline summary, optionally combined with one number by ``+ - * /``.
Nothing is evaluated as Python.

How a claim is judged
---------------------
A value that is undefined (JSON ``null``) fails every claim, with its reason. On a metric with
an interval (``projection.*.r``, ``patching.slope``) a claim is judged by default
(``judge: bound``) on the interval: ``>=``/``>`` on ``ci_low``, ``<=``/``<`` on ``ci_high``,
``+-``/``between`` need the whole interval inside the range (the estimate must satisfy the claim
too). ``judge: estimate`` judges the estimate alone. ``==`` always compares the estimate
(meant for counts such as ``n`` and ``dataset_size``). If the interval is undefined while
judging on the bound, the claim fails and says so.

Claims files
------------
A YAML file (named ``neuron_claims*.yaml``, ``neuron_claims*.yml`` or ``*.neuron.yaml``) whose
top level maps metric names to expressions. YAML reads a bare ``>`` as a folded block scalar,
so quote expressions that start with ``>``::

    options:                      # optional, not a claim
      judge: estimate             # default judge for this file (bound | estimate); default bound
      run: "*l8_n481*"            # only check runs whose name matches this glob

    projection.head.r: ">= 0.8"
    projection.live.r: [">= 0.99", "<= 1"]
    projection.input.p_value: <= 0.05
    patching.slope:
      expect: "1.0 +- 0.2"        # an expression or a list of them
      judge: estimate             # this claim only
    patching.r_squared:
      expect: ">= baseline - 0.05"
      run: "gpt2_*"               # this claim only
"""

from __future__ import annotations

import difflib
import fnmatch
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import yaml

from pytest_neuronprobe.core.errors import NeuronProbeError

__all__ = [
    "CLAIM_FILE_PATTERNS",
    "JUDGES",
    "KNOWN_METRICS",
    "PROJECTION_NAMES",
    "Claim",
    "Expr",
    "Metric",
    "Operand",
    "Range",
    "Verdict",
    "evaluate",
    "evaluate_all",
    "flatten",
    "load_claims",
    "parse_claim",
    "parse_expr",
]

CLAIM_FILE_PATTERNS = ("neuron_claims*.yaml", "neuron_claims*.yml", "*.neuron.yaml")
JUDGES = ("bound", "estimate")
PROJECTION_NAMES = ("prediction", "head", "input", "output", "neuron_dir", "live")

_CORRELATION_FIELDS = (("r", "correlation"), ("r_squared", "r_squared"), ("p_value", "p_value"),
                       ("spearman", "spearman"), ("n", "n"))
_WEIGHT_FIELDS = ("head_input", "head_output", "input_output")
_NULL_FIELDS = ("observed", "p_value", "percentile_95", "selectivity", "n_null")
_PATCHING_FIELDS = ("slope", "intercept", "r_squared", "baseline_correlation", "direct_slope",
                    "direct_fraction", "n_texts")

#: Every name :func:`flatten` can produce (a summary may hold fewer).
KNOWN_METRICS: tuple[str, ...] = (
    *(f"projection.{p}.{f}" for p in PROJECTION_NAMES for f, _ in _CORRELATION_FIELDS),
    *(f"projection.weights.{w}" for w in _WEIGHT_FIELDS),
    *(f"projection.null.{k}.{f}" for k in ("random", "neurons") for f in _NULL_FIELDS),
    *(f"patching.{f}" for f in _PATCHING_FIELDS),
    "dataset_size",
)

_FORMS = ("'>= 0.8', '> 0.8', '<= 0.05', '< 0.05', '== 3', '1.0 +- 0.2', 'between 0.5 and 1.5', "
          "'>= baseline - 0.05', '>= baseline * 0.9', 'baseline +- 0.1'")


# ---------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------


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

    @property
    def defined(self) -> bool:
        """True when the value exists."""
        return self.value is not None


def _number(x: Any, key: str) -> float | None:
    """A finite float, ``None`` for null/NaN/inf; anything else is bad input."""
    if x is None:
        return None
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise NeuronProbeError(f"expected a number or null, got {x!r}", key=key)
    v = float(x)
    return v if math.isfinite(v) else None


def _section(d: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any] | None:
    value = d.get(key)
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise NeuronProbeError(f"expected an object or null, got {type(value).__name__}",
                               key=f"{where}{key}")
    return value


def flatten(summary: Mapping[str, Any]) -> dict[str, Metric]:
    """Named metrics of one summary.json dict; sections absent from it give no metrics."""
    if not isinstance(summary, Mapping):
        raise NeuronProbeError(f"a summary must be a JSON object, got {type(summary).__name__}")
    out: dict[str, Metric] = {}

    def add(name: str, entry: Mapping[str, Any], key: str, where: str, *, lo: str | None = None,
            hi: str | None = None, reason: str | None = None) -> None:
        value = _number(entry.get(key), f"{where}.{key}")
        ci_low = _number(entry.get(lo), f"{where}.{lo}") if lo else None
        ci_high = _number(entry.get(hi), f"{where}.{hi}") if hi else None
        why = None if value is not None else (reason or "undefined")
        out[name] = Metric(name, value, ci_low, ci_high, why, has_interval=lo is not None)

    projections = _section(summary, "projections", "") or {}
    ran_projection = False
    for p in PROJECTION_NAMES:
        entry = _section(projections, p, "projections.")
        if not entry:  # {}: the projection analysis did not run
            continue
        ran_projection = True
        reason = entry.get("reason")
        reason = str(reason) if reason else None
        for field_name, key in _CORRELATION_FIELDS:
            interval = ("ci_low", "ci_high") if field_name == "r" else (None, None)
            add(f"projection.{p}.{field_name}", entry, key, f"projections.{p}",
                lo=interval[0], hi=interval[1], reason=reason)

    weights = _section(summary, "weight_similarities", "")
    if weights is not None and (ran_projection or any(weights.get(w) is not None for w in _WEIGHT_FIELDS)):
        for w in _WEIGHT_FIELDS:
            if w in weights:
                add(f"projection.weights.{w}", weights, w, "weight_similarities")

    null = _section(summary, "null", "")
    if null is not None:
        for kind in ("random", "neurons"):
            entry = _section(null, kind, "null.")
            if entry is None:
                continue
            reason = entry.get("reason")
            for f in _NULL_FIELDS:
                if f in entry:
                    add(f"projection.null.{kind}.{f}", entry, f, f"null.{kind}",
                        reason=str(reason) if reason else None)

    patching = _section(summary, "patching", "")
    if patching is not None:
        reason = patching.get("reason")
        reason = str(reason) if reason else None
        for f in _PATCHING_FIELDS:
            if f == "slope":
                add("patching.slope", patching, "slope", "patching", lo="slope_ci_low",
                    hi="slope_ci_high", reason=reason)
            elif f in patching:
                add(f"patching.{f}", patching, f, "patching", reason=reason)

    if "dataset_size" in summary:
        add("dataset_size", summary, "dataset_size", "summary")
    return out


# ---------------------------------------------------------------------------------------------
# Expressions
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Operand:
    """A number, or the baseline value optionally combined with one number."""

    value: float = 0.0
    baseline: bool = False
    op: str | None = None  # '+', '-', '*', '/' applied to the baseline

    def resolve(self, base: float | None) -> float:
        """The number this operand stands for, given the baseline value."""
        if not self.baseline:
            return self.value
        if base is None:
            raise ValueError("this operand refers to the baseline")
        if self.op is None:
            return base
        return {"+": base + self.value, "-": base - self.value, "*": base * self.value,
                "/": base / self.value if self.value else math.nan}[self.op]

    def __str__(self) -> str:
        if not self.baseline:
            return _fmt_plain(self.value)
        return "baseline" if self.op is None else f"baseline {self.op} {_fmt_plain(self.value)}"


@dataclass(frozen=True)
class Range:
    """The values an expression accepts: from ``low`` to ``high``, ends open or closed."""

    low: float
    high: float
    low_open: bool = False
    high_open: bool = False

    def contains(self, x: float) -> bool:
        """True when ``x`` satisfies the expression (NaN never does)."""
        above = x > self.low if self.low_open else x >= self.low
        below = x < self.high if self.high_open else x <= self.high
        return bool(above and below)

    def __str__(self) -> str:
        lo = "(" if self.low_open else "["
        hi = ")" if self.high_open else "]"
        return f"{lo}{_fmt(self.low)}, {_fmt(self.high)}{hi}"


@dataclass(frozen=True)
class Expr:
    """A parsed expression: ``op`` is one of ``>= > <= < == +- between``."""

    op: str
    a: Operand
    b: Operand | None = None  # the tolerance of '+-', the upper end of 'between'
    text: str = ""

    @property
    def uses_baseline(self) -> bool:
        """True when the expression refers to the baseline."""
        return self.a.baseline or (self.b is not None and self.b.baseline)

    @property
    def kind(self) -> str:
        """``lower`` (>=, >), ``upper`` (<=, <), ``equal`` (==) or ``range`` (+-, between)."""
        return {">=": "lower", ">": "lower", "<=": "upper", "<": "upper", "==": "equal"}.get(
            self.op, "range")

    def range(self, base: float | None = None) -> Range:
        """The accepted values, with baseline references resolved against ``base``."""
        a = self.a.resolve(base)
        if self.op == ">=":
            return Range(a, math.inf)
        if self.op == ">":
            return Range(a, math.inf, low_open=True)
        if self.op == "<=":
            return Range(-math.inf, a)
        if self.op == "<":
            return Range(-math.inf, a, high_open=True)
        if self.op == "==":
            return Range(a, a)
        assert self.b is not None
        b = self.b.resolve(base)
        if self.op == "+-":
            return Range(a - b, a + b)
        return Range(min(a, b), max(a, b))

    def holds(self, value: float | None, base: float | None = None) -> bool:
        """True when ``value`` satisfies the expression; an undefined value never does."""
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return False
        return self.range(base).contains(value)

    def __str__(self) -> str:
        if self.op == "+-":
            return f"{self.a} +- {self.b}"
        if self.op == "between":
            return f"between {self.a} and {self.b}"
        return f"{self.op} {self.a}"


_TOKEN = re.compile(
    r"\s*(?:(?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)"
    r"|(?P<op>\+/-|\+-|±|>=|<=|==|≥|≤|>|<|\+|-|\*|/)"
    r"|(?P<word>[A-Za-z_][A-Za-z_0-9]*))"
)
_OP_ALIASES = {"±": "+-", "+/-": "+-", "≥": ">=", "≤": "<="}


class _Parser:
    """Recursive descent over the tiny grammar in the module docstring."""

    def __init__(self, text: str, context: str | None) -> None:
        self.text = text
        self.context = context if context is not None else text
        self.tokens: list[tuple[str, str, int]] = []
        pos = 0
        stripped = text.rstrip()
        while pos < len(stripped):
            m = _TOKEN.match(stripped, pos)
            if m is None:
                where = len(stripped) - len(stripped[pos:].lstrip())
                self.fail(f"an operator, a number or 'baseline', found {stripped[where]!r}", where)
            kind = m.lastgroup or ""
            value = m.group(kind)
            if kind == "op":
                value = _OP_ALIASES.get(value, value)
            elif kind == "word":
                value = value.lower()
            self.tokens.append((kind, value, m.start(kind)))
            pos = m.end()
        self.i = 0

    def fail(self, expected: str, pos: int | None = None) -> None:
        if pos is None:
            pos = self.tokens[self.i][2] if self.i < len(self.tokens) else len(self.text.rstrip())
        at = f"at position {pos}" if pos < len(self.text.rstrip()) else "at the end"
        raise NeuronProbeError(
            f"cannot parse claim {self.context!r}: expected {expected} {at} of {self.text!r} "
            f"(forms: {_FORMS})")

    def peek(self) -> tuple[str, str]:
        if self.i < len(self.tokens):
            kind, value, _ = self.tokens[self.i]
            return kind, value
        return "end", ""

    def take(self) -> tuple[str, str]:
        tok = self.peek()
        self.i += 1
        return tok

    def found(self) -> str:
        kind, value = self.peek()
        return "nothing" if kind == "end" else repr(value)

    def number(self, what: str = "a number") -> float:
        sign = 1.0
        kind, value = self.peek()
        if kind == "op" and value in ("-", "+"):
            self.take()
            sign = -1.0 if value == "-" else 1.0
            kind, value = self.peek()
        if kind != "num":
            self.fail(f"{what}, found {self.found()}")
        self.take()
        return sign * float(value)

    def operand(self) -> Operand:
        kind, value = self.peek()
        if kind == "word" and value == "baseline":
            self.take()
            kind, value = self.peek()
            if kind == "op" and value in ("+", "-", "*", "/"):
                self.take()
                arg = self.number(f"a number after 'baseline {value}'")
                if value == "/" and arg == 0:
                    self.fail("a non-zero divisor")
                return Operand(arg, baseline=True, op=value)
            return Operand(baseline=True)
        if kind == "word":
            self.fail(f"a number or 'baseline', found {value!r}")
        return Operand(self.number("a number or 'baseline'"))

    def expect_end(self) -> None:
        if self.peek()[0] != "end":
            self.fail(f"the end of the expression, found {self.found()}")

    def parse(self) -> Expr:
        kind, value = self.peek()
        if kind == "end":
            self.fail("an expression")
        if kind == "op" and value in (">=", ">", "<=", "<", "=="):
            self.take()
            a = self.operand()
            self.expect_end()
            return Expr(value, a, text=self.text.strip())
        if kind == "word" and value == "between":
            self.take()
            lo = self.operand()
            k, v = self.take()
            if (k, v) != ("word", "and"):
                self.i -= 1
                self.fail(f"'and' after 'between {lo}', found {self.found()}")
            hi = self.operand()
            self.expect_end()
            if not lo.baseline and not hi.baseline and lo.value > hi.value:
                self.fail(f"a lower bound first ('between {_fmt_plain(hi.value)} and "
                          f"{_fmt_plain(lo.value)}')", 0)
            return Expr("between", lo, hi, text=self.text.strip())
        if kind == "op" and value in ("+-", "*", "/"):
            self.fail(f"a number or 'baseline' before {value!r}")
        centre = self.operand()
        k, v = self.peek()
        if (k, v) != ("op", "+-"):
            if centre.baseline:
                self.fail(f"'+-' after '{centre}', found {self.found()}")
            self.fail(f"'+-' after {_fmt_plain(centre.value)} (or an operator such as '>=' "
                      f"before it), found {self.found()}")
        self.take()
        tol = self.number("a tolerance (a number)")
        if tol < 0:
            self.fail("a non-negative tolerance")
        self.expect_end()
        return Expr("+-", centre, Operand(tol), text=self.text.strip())


def parse_expr(text: str, *, context: str | None = None) -> Expr:
    """Parse an expression such as ``">= 0.8"`` or ``"baseline +- 0.1"``.

    Raises :class:`NeuronProbeError` naming ``context`` (default: ``text``) and what was expected.
    """
    if not isinstance(text, str):
        raise NeuronProbeError(f"expected an expression string such as '>= 0.8', got {text!r}")
    return _Parser(text, context).parse()


def parse_claim(text: str, *, judge: str = "bound", source: str | None = None,
                line: int | None = None, run: str | None = None) -> Claim:
    """Parse ``"METRIC EXPR"`` (e.g. ``"projection.head.r >= 0.8"``) into a :class:`Claim`."""
    if not isinstance(text, str) or not text.strip():
        raise NeuronProbeError(f"expected a claim such as 'projection.head.r >= 0.8', got {text!r}")
    m = re.match(r"\s*([A-Za-z_][\w.]*)\s*(.*)$", text, re.DOTALL)
    if m is None:
        raise NeuronProbeError(f"cannot parse claim {text!r}: expected a metric name such as "
                               "'projection.head.r' first, then an expression")
    metric, rest = m.group(1), m.group(2)
    expr = parse_expr(rest, context=text.strip())
    return Claim(metric, expr, f"{metric} {expr.text}", source=source, line=line, judge=judge,
                 run=run)


# ---------------------------------------------------------------------------------------------
# Claims and verdicts
# ---------------------------------------------------------------------------------------------


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

    def __post_init__(self) -> None:
        if self.judge not in JUDGES:
            raise NeuronProbeError(f"judge must be one of {', '.join(JUDGES)}, got {self.judge!r}",
                                   key=self.metric)

    @property
    def where(self) -> str:
        """``file:line`` when the claim came from a file, else ``""``."""
        if self.source is None:
            return ""
        return f"{self.source}:{self.line}" if self.line is not None else self.source

    def applies_to(self, run_name: str) -> bool:
        """True when the claim's run glob (if any) matches ``run_name``."""
        return self.run is None or fnmatch.fnmatchcase(run_name, self.run)


@dataclass(frozen=True)
class Verdict:
    """The outcome of one claim; ``values`` holds the numbers used."""

    passed: bool
    message: str
    judged_on: str  # "ci_low", "ci_high", "interval" or "estimate"
    values: dict[str, Any] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return self.passed


def _fmt_plain(x: float) -> str:
    """A number as the user would write it (for echoing expressions)."""
    return str(int(x)) if x == int(x) and abs(x) < 1e15 else repr(x)


def _fmt(x: float | None, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "undefined"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if x == int(x) and abs(x) < 1e15:
        return str(int(x))
    if 1e-3 <= abs(x) < 1e5:
        return f"{x:.{digits}f}".rstrip("0").rstrip(".")
    return f"{x:.{digits}g}"


def _fmt_vs(x: float, *others: float) -> str:
    """``x`` with enough digits not to look equal to any of ``others`` it differs from."""
    for digits in range(3, 17):
        s = _fmt(x, digits)
        if all(o == x or s != _fmt(o, digits) for o in others if math.isfinite(o)):
            return s
    return repr(x)


def _suggest(name: str, candidates: Iterable[str]) -> list[str]:
    pool = sorted(set(candidates))
    tail = [c for c in pool if c.endswith("." + name)]
    close = difflib.get_close_matches(name, pool, n=3, cutoff=0.6)
    return list(dict.fromkeys(tail + close))[:4]


def _missing_message(name: str, available: Mapping[str, Metric], side: str = "") -> str:
    if name in KNOWN_METRICS:
        if name.startswith("patching."):
            why = "the patching analysis did not run"
        elif name.startswith("projection.null."):
            why = "the null baseline was not computed"
        elif name.startswith("projection."):
            why = "the projection analysis did not run"
        else:
            why = "the summary does not record it"
        return f"{name} is not in the {side}summary ({why})"
    hint = _suggest(name, [*available, *KNOWN_METRICS])
    did = f"; did you mean {' or '.join(hint)}?" if hint else ""
    return (f"unknown metric {name!r}{did} (metric names look like projection.head.r, "
            f"patching.slope, projection.weights.head_input, dataset_size)")


def _sibling_n(metric: str, metrics: Mapping[str, Metric]) -> tuple[str, float] | None:
    prefix = metric.rsplit(".", 1)[0] if "." in metric else ""
    for key in (f"{prefix}.n", f"{prefix}.n_texts"):
        m = metrics.get(key)
        if m is not None and m.value is not None and key != metric:
            return key.rsplit(".", 1)[1], m.value
    return None


def evaluate(claim: Claim, metrics: Mapping[str, Metric],
             baseline: Mapping[str, Metric] | None = None) -> Verdict:
    """Judge ``claim`` on ``metrics`` (from :func:`flatten`), with an optional baseline.

    Never passes on an undefined value, an undefined interval (when judging on the bound), an
    unknown metric or a missing baseline.
    """
    label = claim.text
    short = claim.metric.rsplit(".", 1)[-1]
    values: dict[str, Any] = {}

    def fail(message: str, judged_on: str = "estimate") -> Verdict:
        return Verdict(False, f"{label} failed: {message}", judged_on, values)

    metric = metrics.get(claim.metric)
    if metric is None:
        return fail(_missing_message(claim.metric, metrics))

    base: float | None = None
    base_note = ""
    if claim.expr.uses_baseline:
        if baseline is None:
            return fail("no baseline given (use --neuron-baseline)")
        bm = baseline.get(claim.metric)
        if bm is None:
            return fail(_missing_message(claim.metric, baseline, side="baseline "))
        if bm.value is None:
            values["baseline"] = None
            return fail(f"baseline {claim.metric} is undefined: {bm.reason or 'undefined'}")
        base = bm.value
        values["baseline"] = base

    values.update(estimate=metric.value, ci_low=metric.ci_low, ci_high=metric.ci_high)
    rng = claim.expr.range(base)
    if claim.expr.kind == "lower":
        values["threshold"] = rng.low
    elif claim.expr.kind in ("upper", "equal"):
        values["threshold"] = rng.high
    else:
        values.update(low=rng.low, high=rng.high)
    if base is not None:
        what = f"threshold {_fmt(values['threshold'])}" if "threshold" in values else f"range {rng}"
        base_note = f"; {what} from {claim.expr} with baseline {short}={_fmt(base)}"
    if metric.value is None:
        return fail(f"{claim.metric} is undefined: {metric.reason or 'undefined'}")

    est = metric.value
    n = _sibling_n(claim.metric, metrics)
    n_note = f"{n[0]}={_fmt(n[1])}" if n else ""
    lo, hi = metric.ci_low, metric.ci_high
    interval = f"interval [{_fmt(lo)}, {_fmt(hi)}]" if lo is not None and hi is not None else None
    has_interval = metric.has_interval or lo is not None or hi is not None
    kind = claim.expr.kind
    edges = [e for e in (rng.low, rng.high) if math.isfinite(e)]
    against = f" against {rng}" if kind == "range" else ""

    if claim.judge == "estimate" or kind == "equal" or not has_interval:
        passed = rng.contains(est)
        extras = ", ".join(x for x in (interval, n_note) if x)
        verdict = "passed" if passed else "failed"
        msg = (f"{label} {verdict}: judged on the estimate {short}={_fmt_vs(est, *edges)}{against}"
               + (f" ({extras})" if extras else "") + base_note)
        return Verdict(passed, msg, "estimate", values)

    needed = {"lower": ("ci_low",), "upper": ("ci_high",), "range": ("ci_low", "ci_high")}[kind]
    judged_on = needed[0] if len(needed) == 1 else "interval"
    if any(values[k] is None for k in needed):
        extras = ", ".join(x for x in (f"estimate {short}={_fmt(est)}", n_note) if x)
        return fail(f"the 95% interval of {short} is undefined ({extras}); it is judged on the "
                    f"interval bound by default: add 'judge: estimate' to judge on the estimate",
                    judged_on)

    est_ok = rng.contains(est)
    if kind == "lower":
        bound_ok = rng.contains(lo)
        how = f"the 95% interval's lower bound ci_low={_fmt_vs(lo, *edges)}"
    elif kind == "upper":
        bound_ok = rng.contains(hi)
        how = f"the 95% interval's upper bound ci_high={_fmt_vs(hi, *edges)}"
    else:
        bound_ok = rng.contains(lo) and rng.contains(hi)
        how = f"the whole 95% interval [{_fmt_vs(lo, *edges)}, {_fmt_vs(hi, *edges)}]{against}"
        interval = None
    passed = bound_ok and est_ok
    verdict = "passed" if passed else "failed"
    extras = ", ".join(x for x in (f"estimate {short}={_fmt_vs(est, *edges)}", interval, n_note) if x)
    odd = "" if est_ok or not bound_ok else "; the estimate itself does not satisfy the claim"
    msg = f"{label} {verdict}: judged on {how} ({extras}){odd}{base_note}"
    return Verdict(passed, msg, judged_on, values)


def evaluate_all(claims: Iterable[Claim], summary: Mapping[str, Any],
                 baseline: Mapping[str, Any] | None = None) -> list[tuple[Claim, Verdict]]:
    """Judge the claims that apply to ``summary``'s run (by the claims' ``run`` globs).

    ``summary`` and ``baseline`` are summary.json dicts (or already flattened metric dicts).
    """
    metrics = _as_metrics(summary)
    base = None if baseline is None else _as_metrics(baseline)
    run = summary.get("run") if isinstance(summary, Mapping) else None
    name = str(run.get("name", "")) if isinstance(run, Mapping) else ""
    return [(c, evaluate(c, metrics, base)) for c in claims if c.applies_to(name)]


def _as_metrics(d: Mapping[str, Any]) -> Mapping[str, Metric]:
    if d and all(isinstance(v, Metric) for v in d.values()):
        return d  # type: ignore[return-value]
    return flatten(d)


# ---------------------------------------------------------------------------------------------
# Claims files
# ---------------------------------------------------------------------------------------------

_STR_TAG = "tag:yaml.org,2002:str"
_OPTION_KEYS = ("judge", "run")
_CLAIM_KEYS = ("expect", "judge", "run")


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def _err(path: Path, node: yaml.Node | int, key: str | None, message: str) -> NeuronProbeError:
    line = node if isinstance(node, int) else _line(node)
    return NeuronProbeError(message, path=f"{path}:{line}", key=key)


def _scalar_str(node: yaml.Node, path: Path, key: str | None, what: str) -> str:
    if not isinstance(node, yaml.ScalarNode):
        kind = "a list" if isinstance(node, yaml.SequenceNode) else "a mapping"
        raise _err(path, node, key, f"expected {what}, got {kind}")
    if node.tag != _STR_TAG:
        if not node.value or node.tag.endswith(":null"):
            raise _err(path, node, key, f"expected {what}, got nothing")
        hint = ""
        if what.startswith("an expr") and node.tag.endswith((":int", ":float")):
            hint = (f" (a bare number is not a claim: write e.g. '== {node.value}' "
                    f"or '>= {node.value}')")
        raise _err(path, node, key, f"expected {what}, got {node.value!r}{hint}")
    return str(node.value)


def _pairs(node: yaml.MappingNode, path: Path,
           where: str | None) -> Iterator[tuple[str, yaml.Node, yaml.Node]]:
    seen: dict[str, int] = {}
    for k, v in node.value:
        key = _scalar_str(k, path, where, "a name as key")
        if key in seen:
            raise _err(path, k, key, f"duplicate key (first at line {seen[key]})")
        seen[key] = _line(k)
        yield key, k, v


def _judge(node: yaml.Node, path: Path, key: str) -> str:
    value = _scalar_str(node, path, key, "'bound' or 'estimate'")
    if value not in JUDGES:
        raise _err(path, node, key, f"judge must be one of {', '.join(JUDGES)}, got {value!r}")
    return value


def load_claims(path: str | Path) -> list[Claim]:
    """Read a claims file (format in the module docstring); claims in file order."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise NeuronProbeError(f"cannot read claims file: {exc.strerror or exc}", path=path) from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        problem = exc.problem or str(exc)
        hint = ""
        if ("block scalar" in (exc.context or "") or "chomping" in problem
                or "indentation indicator" in problem or "'>' that cannot start" in problem):
            hint = ("; quote expressions that start with '>' (YAML reads a bare '>' as a folded "
                    "text block), e.g. projection.head.r: \">= 0.8\"")
        raise _err(path, line, None, f"invalid YAML: {problem}{hint}") from None
    except yaml.YAMLError as exc:
        raise NeuronProbeError(f"invalid YAML: {exc}", path=path) from None
    if root is None:
        return []
    if not isinstance(root, yaml.MappingNode):
        raise _err(path, root, None, "expected a mapping of metric names to expressions at the top level, "
                                     "e.g. projection.head.r: \">= 0.8\"")

    judge, run = "bound", None
    for key, k, v in _pairs(root, path, None):
        if key != "options":
            continue
        if not isinstance(v, yaml.MappingNode):
            raise _err(path, v, "options", "expected a mapping such as {judge: estimate, run: '*_l8_*'}")
        for opt, ok, ov in _pairs(v, path, "options"):
            if opt == "judge":
                judge = _judge(ov, path, "options.judge")
            elif opt == "run":
                run = _scalar_str(ov, path, "options.run", "a glob over run names")
            else:
                raise _err(path, ok, f"options.{opt}",
                           f"unknown option; options are {', '.join(_OPTION_KEYS)}")

    claims: list[Claim] = []
    for metric, k, v in _pairs(root, path, None):
        if metric == "options":
            continue
        claim_judge, claim_run, exprs = judge, run, v
        if isinstance(v, yaml.MappingNode):
            exprs = None
            for key, kk, vv in _pairs(v, path, metric):
                if key == "expect":
                    exprs = vv
                elif key == "judge":
                    claim_judge = _judge(vv, path, f"{metric}.judge")
                elif key == "run":
                    claim_run = _scalar_str(vv, path, f"{metric}.run", "a glob over run names")
                else:
                    raise _err(path, kk, f"{metric}.{key}",
                               f"unknown key; a claim mapping has {', '.join(_CLAIM_KEYS)}")
            if exprs is None:
                raise _err(path, v, metric, "a claim mapping needs 'expect: <expression>'")
        items = exprs.value if isinstance(exprs, yaml.SequenceNode) else [exprs]
        if not items:
            raise _err(path, exprs, metric, "expected at least one expression, got an empty list")
        for item in items:
            expr_text = _scalar_str(item, path, metric, "an expression such as '>= 0.8'")
            try:
                expr = parse_expr(expr_text, context=f"{metric}: {expr_text}")
            except NeuronProbeError as exc:
                raise _err(path, item, metric, str(exc)) from None
            claims.append(Claim(metric, expr, f"{metric} {expr.text}", source=str(path),
                                line=_line(item), judge=claim_judge, run=claim_run))
    return claims
