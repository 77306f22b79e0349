"""Compare a run's numbers with an earlier run's: tables, expectations and regression conditions.

Used by ``neuronprobe compare BASELINE CURRENT`` (:mod:`pytest_neuronprobe.cli`) and by the
plugin's terminal summary, on summaries as :mod:`pytest_neuronprobe.baseline` loads them. Runs
are matched by ``summary["run"]["name"]``.

``--expect "METRIC EXPR"`` is a claim, written and judged as in a claims file
(:mod:`pytest_neuronprobe.claims.verdicts`; on the interval's bound by default, ``judge="estimate"``
for the estimate alone), e.g. ``--expect "projection.head.r >= baseline - 0.05"``: the comparison
fails (exit code 1) when an expectation does not hold, or its metric (or baseline) is undefined.

``--fail "METRIC OP RHS"`` is the older, reverse form: it describes the regression, and the
comparison fails when the condition holds for the current run's estimate, e.g.
``--fail "projection.head.r < baseline - 0.05"``. A condition whose metric (or baseline) is
undefined or absent counts as failed, and says so.

A metric that no summary has and that is not a known metric name is bad input
(:class:`NeuronProbeError`, exit code 2), with the closest names.
"""

from __future__ import annotations

import fnmatch
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TextIO

from pytest_neuronprobe.claims.metrics import (
    HEADLINE_METRICS,
    KNOWN_METRICS,
    PAIR_METRICS,
    Metric,
    as_metrics,
    flatten,
)
from pytest_neuronprobe.claims.verdicts import Claim, evaluate, missing_message, parse_claim, suggest
from pytest_neuronprobe.core.errors import NeuronProbeError
from pytest_neuronprobe.core.formatting import format_cell

__all__ = [
    "ExpectOutcome",
    "FailOutcome",
    "Row",
    "check_expect",
    "check_fail",
    "compare_summaries",
    "diff_rows",
    "format_table",
    "parse_expect",
    "parse_fail",
    "read_side",
    "run_compare",
]


# ---------------------------------------------------------------------------------------------
# Rows and tables
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One metric in both runs; ``None`` is undefined (or absent); ``delta = now - baseline``."""

    metric: str
    baseline: float | None
    now: float | None
    delta: float | None


def _select(patterns: Sequence[str], available: Sequence[str]) -> list[str]:
    """Metric names for ``patterns`` (exact names or globs), in the order asked."""
    chosen: list[str] = []
    for pattern in patterns:
        if any(ch in pattern for ch in "*?["):
            hits = [m for m in available if fnmatch.fnmatchcase(m, pattern)]
            if not hits:
                raise NeuronProbeError(f"no metric matches {pattern!r}", key="--metric")
        elif pattern in available or pattern in KNOWN_METRICS:
            hits = [pattern]
        else:
            hint = suggest(pattern, [*available, *KNOWN_METRICS])
            did = f"; did you mean {' or '.join(hint)}?" if hint else ""
            raise NeuronProbeError(f"unknown metric {pattern!r}{did}", key="--metric")
        chosen += [h for h in hits if h not in chosen]
    return chosen


def diff_rows(
    baseline: Mapping[str, object], current: Mapping[str, object], metrics: Sequence[str] | None = None
) -> list[Row]:
    """Rows for ``metrics`` (names or globs; default :data:`HEADLINE_METRICS`).

    ``baseline`` and ``current`` are summary.json dicts (or flattened metric dicts). By default,
    metrics absent from both summaries (e.g. patching not run) are left out.
    """
    base, now = as_metrics(baseline), as_metrics(current)
    if metrics is None:
        names = [m for m in HEADLINE_METRICS if m in base or m in now]
    else:
        names = _select(metrics, list(dict.fromkeys([*base, *now])))
    rows = []
    for name in names:
        b = base[name].value if name in base else None
        n = now[name].value if name in now else None
        rows.append(Row(name, b, n, None if b is None or n is None else n - b))
    return rows


def _is_count(metric: str) -> bool:
    return metric == "dataset_size" or metric.rsplit(".", 1)[-1] in ("n", "n_null", "n_texts")


def format_table(rows: Sequence[Row], title: str) -> str:
    """An aligned plain-text table: metric, baseline, now, Δ."""
    header = ("metric", "baseline", "now", "Δ")
    cells = [
        (
            r.metric,
            format_cell(r.baseline, count=_is_count(r.metric)),
            format_cell(r.now, count=_is_count(r.metric)),
            format_cell(r.delta, sign=True, count=_is_count(r.metric)),
        )
        for r in rows
    ]
    widths = [max(len(c[i]) for c in [header, *cells]) for i in range(4)]

    def line(c: Sequence[str]) -> str:
        return "  ".join([c[0].ljust(widths[0]), *(c[i].rjust(widths[i]) for i in (1, 2, 3))]).rstrip()

    out = [title, line(header), "  ".join("-" * w for w in widths)]
    out += [line(c) for c in cells] if cells else ["(no metrics)"]
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------
# --fail conditions
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FailOutcome:
    """One regression condition on one run: ``failed`` when it holds or cannot be told."""

    condition: str
    failed: bool
    message: str


def parse_fail(text: str) -> Claim:
    """Parse a ``--fail`` condition ``"METRIC OP RHS"`` (judged on estimates)."""
    try:
        return parse_claim(text, judge="estimate")
    except NeuronProbeError as exc:
        raise NeuronProbeError(
            f"{exc} (a --fail condition is 'METRIC OP RHS', e.g. 'projection.head.r < baseline - 0.05')", key="--fail"
        ) from None


def check_fail(condition: Claim, baseline: Mapping[str, object], current: Mapping[str, object]) -> FailOutcome:
    """Whether the regression ``condition`` holds for ``current`` (vs ``baseline``)."""
    base, now = as_metrics(baseline), as_metrics(current)
    name, text = condition.metric, condition.text
    m = now.get(name)
    if m is None:
        return FailOutcome(
            text, True, f"FAILED  {text}: {missing_message(name, now)}; cannot tell, counted as a regression"
        )
    if m.value is None:
        return FailOutcome(
            text,
            True,
            f"FAILED  {text}: {name} is undefined ({m.reason or 'undefined'}); cannot tell, counted as a regression",
        )
    b: float | None = None
    if condition.expr.uses_baseline:
        bm = base.get(name)
        if bm is None or bm.value is None:
            why = (
                missing_message(name, base, side="baseline ")
                if bm is None
                else f"baseline {name} is undefined ({bm.reason or 'undefined'})"
            )
            return FailOutcome(text, True, f"FAILED  {text}: {why}; cannot tell, counted as a regression")
        b = bm.value
    rng = condition.expr.range(b)
    holds = rng.contains(m.value)
    if condition.expr.kind in ("lower", "equal"):
        rhs = format_cell(rng.low)
    elif condition.expr.kind == "upper":
        rhs = format_cell(rng.high)
    else:
        rhs = f"[{format_cell(rng.low)}, {format_cell(rng.high)}]"
    detail = f"now {format_cell(m.value)}" + (f", baseline {format_cell(b)}" if b is not None else "") + f", RHS {rhs}"
    if holds:
        return FailOutcome(text, True, f"FAILED  {text}: the regression condition holds ({detail})")
    return FailOutcome(text, False, f"ok      {text}: does not hold ({detail})")


# ---------------------------------------------------------------------------------------------
# --expect expectations (claims)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExpectOutcome:
    """One expectation on one run: ``held`` when the claim passed."""

    expectation: str
    held: bool
    message: str


def parse_expect(text: str, *, judge: str = "bound") -> Claim:
    """Parse an ``--expect`` expectation ``"METRIC EXPR"``, a claim as in a claims file."""
    try:
        return parse_claim(text, judge=judge)
    except NeuronProbeError as exc:
        raise NeuronProbeError(
            f"{exc} (an --expect expectation is a claim 'METRIC EXPR', e.g. 'projection.head.r >= baseline - 0.05')",
            key="--expect",
        ) from None


def check_expect(claim: Claim, baseline: Mapping[str, object], current: Mapping[str, object]) -> ExpectOutcome:
    """Judge the expectation ``claim`` on ``current`` (``baseline`` standing for ``baseline``), as a claim."""
    verdict = evaluate(claim, as_metrics(current), as_metrics(baseline))
    return ExpectOutcome(claim.text, verdict.passed, f"{'ok' if verdict.passed else 'FAILED':<8}{verdict.message}")


def _flatten_all(summaries: Mapping[str, Mapping[str, object]], side: str) -> dict[str, dict[str, Metric]]:
    """Every run's metrics; a malformed summary is bad input naming the run."""
    out: dict[str, dict[str, Metric]] = {}
    for name, summary in summaries.items():
        try:
            out[name] = flatten(summary)
        except NeuronProbeError as exc:
            raise NeuronProbeError(f"{side} run {name!r}: {exc}") from None
        except (OverflowError, ValueError) as exc:  # e.g. an integer too large for a float
            raise NeuronProbeError(f"{side} run {name!r}: a value is not a usable number ({exc})") from None
    return out


def read_side(
    path: str, load: Callable[[str], Mapping[str, Mapping[str, object]]]
) -> Mapping[str, Mapping[str, object]]:
    """``load(path)`` (e.g. :func:`pytest_neuronprobe.baseline.load_summaries`), checked: whatever the file
    holds (binary, UTF-16, deeply nested or huge-number JSON, malformed numbers), bad content is a
    :class:`NeuronProbeError` naming the path (and the run), never another exception."""
    name = None
    try:
        summaries = load(path)  # load_summaries: an unreadable file is already a NeuronProbeError naming it
        for key, summary in summaries.items():
            name = key  # named in the message if its numbers are malformed
            flatten(summary)
        return summaries
    except NeuronProbeError as exc:
        if name is None:
            raise
        why = str(exc)
    except (ValueError, OverflowError) as exc:  # flatten: e.g. an integer too large for a float
        why = f"a value is not a usable number ({exc})"
    raise NeuronProbeError(f"run {name!r}: {why}", path=path)


def _check_known(claims: Sequence[tuple[str, Claim]], *sides: Mapping[str, Mapping[str, Metric]]) -> None:
    """Bad input: a claim on a metric neither known nor in any summary, or on what compare cannot know
    (``previous``/``best``, ``baseline.comparable``)."""
    available = set(KNOWN_METRICS)
    for side in sides:
        for metrics in side.values():
            available.update(metrics)
    for option, claim in claims:
        ref = claim.expr.ref
        if ref is not None and ref != "baseline":
            raise NeuronProbeError(
                f"{claim.text!r} refers to {ref!r}, which only pytest --neuron-history knows; compare has "
                "the baseline (e.g. '>= baseline - 0.05')",
                key=option,
            )
        if claim.metric in PAIR_METRICS:
            raise NeuronProbeError(f"{claim.text!r}: {missing_message(claim.metric, {})}", key=option)
        if claim.metric not in available:
            hint = suggest(claim.metric, available)
            did = f"; did you mean {' or '.join(hint)}?" if hint else ""
            raise NeuronProbeError(
                f"unknown metric {claim.metric!r} in {claim.text!r}{did} (metric names look like "
                "projection.head.r, patching.slope, projection.weights.head_input, dataset_size)",
                key=option,
            )


def _tally(n_failed: int, n_checked: int, what: str, verb: str) -> str:
    if n_failed:
        return f"{n_failed} of {n_checked} {what} check(s) failed"
    return f"all {n_checked} {what} check(s) {verb}"


# ---------------------------------------------------------------------------------------------
# The comparison
# ---------------------------------------------------------------------------------------------


def _pair_runs(
    baseline: Mapping[str, object], current: Mapping[str, object], run: str | None
) -> tuple[list[tuple[str, str]], list[str], list[str]]:
    """``(baseline run, current run)`` pairs to compare, and the runs only in the baseline / current."""
    if run is not None:
        missing = [side for side, d in (("baseline", baseline), ("current", current)) if run not in d]
        if missing:
            have = {"baseline": ", ".join(baseline) or "none", "current": ", ".join(current) or "none"}
            raise NeuronProbeError(
                f"run {run!r} is not in the {' or '.join(missing)} summaries "
                f"(runs: {'; '.join(f'{s}: {have[s]}' for s in missing)})",
                key="--run",
            )
        return [(run, run)], [], []
    if len(baseline) == 1 and len(current) == 1:
        return [(next(iter(baseline)), next(iter(current)))], [], []
    pairs = [(n, n) for n in current if n in baseline]
    only_base = [n for n in baseline if n not in current]
    only_now = [n for n in current if n not in baseline]
    if not pairs:
        raise NeuronProbeError(
            f"no run appears in both: baseline has {', '.join(baseline) or 'none'}; "
            f"current has {', '.join(current) or 'none'} (use --run NAME with one run per side)"
        )
    return pairs, only_base, only_now


def compare_summaries(
    baseline: Mapping[str, Mapping[str, object]],
    current: Mapping[str, Mapping[str, object]],
    *,
    metrics: Sequence[str] | None = None,
    fail: Sequence[str] = (),
    run: str | None = None,
    expect: Sequence[str] = (),
    judge: str = "bound",
) -> tuple[str, int]:
    """The comparison report text and its exit code (0 all hold, 1 an expectation or --fail condition failed).

    ``baseline``/``current`` map run names to summaries (as
    :func:`pytest_neuronprobe.baseline.load_summaries` returns). Runs are matched by name; with
    exactly one run on each side, they are compared even if their names differ. ``expect`` are
    claims judged with ``judge`` (``bound`` or ``estimate``); ``fail`` regression conditions.
    Raises :class:`NeuronProbeError` on bad input (an unparsable expression, an unknown metric, a
    malformed summary).
    """
    expectations = [parse_expect(text, judge=judge) for text in expect]
    conditions = [parse_fail(text) for text in fail]
    pairs, only_base, only_now = _pair_runs(baseline, current, run)
    base_metrics, now_metrics = _flatten_all(baseline, "baseline"), _flatten_all(current, "current")
    _check_known(
        [*(("--expect", c) for c in expectations), *(("--fail", c) for c in conditions)], base_metrics, now_metrics
    )
    blocks: list[str] = []
    n_unmet = n_failed = 0
    for b_name, n_name in pairs:
        base, now = base_metrics[b_name], now_metrics[n_name]
        title = f"run {n_name}" if b_name == n_name else f"run {n_name} (baseline run {b_name})"
        parts = [format_table(diff_rows(base, now, metrics), title)]
        for claim in expectations:
            held = check_expect(claim, base, now)
            n_unmet += not held.held
            parts.append(held.message)
        for cond in conditions:
            outcome = check_fail(cond, base, now)
            n_failed += outcome.failed
            parts.append(outcome.message)
        blocks.append("\n".join(parts))
    if only_base:
        blocks.append(f"only in the baseline (not compared): {', '.join(only_base)}")
    if only_now:
        blocks.append(f"only in the current summaries (not compared): {', '.join(only_now)}")
    tallies = []
    if expectations:
        tallies.append(_tally(n_unmet, len(expectations) * len(pairs), "--expect", "held"))
    if conditions:
        tallies.append(_tally(n_failed, len(conditions) * len(pairs), "--fail condition", "passed"))
    if tallies:
        blocks.append("\n".join(tallies))
    return "\n\n".join(blocks), 1 if n_unmet or n_failed else 0


def run_compare(
    baseline: Mapping[str, Mapping[str, object]],
    current: Mapping[str, Mapping[str, object]],
    *,
    metrics: Sequence[str] | None = None,
    fail: Sequence[str] = (),
    run: str | None = None,
    out: TextIO | None = None,
    expect: Sequence[str] = (),
    judge: str = "bound",
) -> int:
    """Print :func:`compare_summaries`' report to ``out`` (default stdout); return its exit code.

    Raises :class:`NeuronProbeError` on bad input (nothing is printed then).
    """
    text, code = compare_summaries(baseline, current, metrics=metrics, fail=fail, run=run, expect=expect, judge=judge)
    print(text, file=out or sys.stdout)
    return code
