"""Assertions that read well: explanations of analysis numbers, and claims in Python tests.

`describe_operand` is what the plugin's `pytest_assertrepr_compare` prints for an operand that is
one of the current test's analysis numbers: the metric's name, its estimate, its 95% interval,
n and the run. `assert_claim` judges a claim written in the claims-file language
(`"projection.head.r >= 0.8"`, `"patching.slope 1.0 +- 0.2"`, `">= baseline - 0.05"`) on
the analysis results a test received::

    from pytest_neuronprobe import assert_claim

    def test_head(projection, patching):
        assert_claim("projection.head.r >= 0.8", projection)          # judged on the interval's bound
        assert_claim("patching.slope 1.0 +- 0.3", patching, judge="estimate")
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from pytest_neuronprobe.core.formatting import format_significant

if TYPE_CHECKING:  # pragma: no cover
    from pytest_neuronprobe.analyses.control import ControlResult
    from pytest_neuronprobe.analyses.patching_fit import PatchingResult
    from pytest_neuronprobe.analyses.projection import ProjectionResult
    from pytest_neuronprobe.claims.verdicts import Verdict

    AnalysisResult = ProjectionResult | PatchingResult

__all__ = ["assert_claim", "check_claim", "describe_operand", "results_of", "summary_of"]

_CORRELATION_FIELDS = ("r", "ci_low", "ci_high", "r_squared", "p_value", "spearman")
_NULL_FIELDS = ("observed", "p_value", "percentile_95", "selectivity")
_UNDEFINED_NOTE = (
    "an undefined number compares False with everything, so this assertion fails instead of passing silently"
)


def results_of(values: Mapping[str, object] | Iterable[object]) -> list[AnalysisResult]:
    """The ProjectionResult / PatchingResult objects among a test's fixture values."""
    from pytest_neuronprobe.analyses.patching_fit import PatchingResult
    from pytest_neuronprobe.analyses.projection import ProjectionResult

    items = values.values() if isinstance(values, Mapping) else values
    return [v for v in items if isinstance(v, (ProjectionResult, PatchingResult))]


def _candidates(results: Iterable[AnalysisResult]) -> Iterator[tuple[str, object, str]]:
    """(metric name, value, description) for every number of the given results."""
    from pytest_neuronprobe.analyses.patching_fit import PatchingResult

    for res in results:
        yield from _patching_numbers(res) if isinstance(res, PatchingResult) else _projection_numbers(res)


def _projection_numbers(res: ProjectionResult) -> Iterator[tuple[str, object, str]]:
    from pytest_neuronprobe.analyses.options import NAMES

    fmt = format_significant
    where = f"run {res.run_name}, {res.split} split"
    for name in NAMES:
        c = getattr(res, name)
        interval = f"95% interval [{fmt(c.ci_low)}, {fmt(c.ci_high)}]"
        for fld in _CORRELATION_FIELDS:
            value = getattr(c, fld)
            if fld == "r":
                text = f"projection.{name}.r = {fmt(c.r)}, {interval}, n = {c.n} ({where})"
            else:
                text = f"projection.{name}.{fld} = {fmt(value)} (r = {fmt(c.r)}, {interval}, n = {c.n}; {where})"
            yield f"projection.{name}.{fld}", value, text
    for w in ("head_input", "head_output", "input_output"):
        value = getattr(res.weights, w)
        yield f"projection.weights.{w}", value, f"projection.weights.{w} = {fmt(value)} (cosine; {where})"
    for kind in ("random", "neurons"):
        comp = getattr(res.null, kind) if res.null is not None else None
        if comp is None:
            continue
        for fld in _NULL_FIELDS:
            value = getattr(comp, fld)
            text = (
                f"projection.null.{kind}.{fld} = {fmt(value)} (|r| of the head {fmt(comp.observed)} "
                f"vs the null's 95th percentile {fmt(comp.percentile_95)} over {comp.n_null} "
                f"{comp.label or kind}; p = {fmt(comp.p_value)}; {where})"
            )
            yield f"projection.null.{kind}.{fld}", value, text


def _patching_numbers(res: PatchingResult) -> Iterator[tuple[str, object, str]]:
    fmt = format_significant
    fit = res.fit
    where = f"run {res.run_name}, {res.mode} x{len(res.factors)}, {res.n_texts} texts"
    interval = f"95% interval [{fmt(fit.ci_low)}, {fmt(fit.ci_high)}]"
    slope = f"patching.slope = {fmt(fit.slope)}, {interval}, R² = {fmt(fit.r_squared)}, n = {fit.n} points ({where})"
    yield "patching.slope", fit.slope, slope
    for name in ("ci_low", "ci_high", "intercept", "r_squared"):
        value = getattr(fit, name)
        yield (
            f"patching.{name}",
            value,
            f"patching.{name} = {fmt(value)} (slope = {fmt(fit.slope)}, {interval}; {where})",
        )
    direct = f"(direct path only; total slope = {fmt(fit.slope)}; {where})"
    yield "patching.direct_slope", res.direct_slope, f"patching.direct_slope = {fmt(res.direct_slope)} {direct}"
    yield (
        "patching.baseline_correlation",
        res.baseline_correlation,
        f"patching.baseline_correlation = {fmt(res.baseline_correlation)} ({where})",
    )
    fraction = f"patching.direct_fraction = {fmt(res.direct_fraction)} (direct / total slope; {where})"
    yield "patching.direct_fraction", res.direct_fraction, fraction


def describe_operand(x: object, results: Iterable[AnalysisResult], label: str | None = None) -> str | None:
    """A line explaining `x` if it is an analysis number of `results` (or undefined), else None."""
    from pytest_neuronprobe.analyses.fits import LinearFit
    from pytest_neuronprobe.analyses.nulls import NullComparison
    from pytest_neuronprobe.analyses.stats import Correlation, Undefined

    run = f" (run {label})" if label else ""
    if isinstance(x, (Correlation, LinearFit, NullComparison)):
        return f"{x!r}{run}"
    found = list(_candidates(results))
    for _, value, text in found:
        if value is x:
            return text + (f"; {_UNDEFINED_NOTE}" if isinstance(x, Undefined) else "")
    if isinstance(x, Undefined):
        return f"undefined: {x.reason}; {_UNDEFINED_NOTE}{run}"
    if isinstance(x, float) and math.isfinite(x):
        matches = [text for _, value, text in found if isinstance(value, float) and value == x]
        if len(matches) == 1:
            return matches[0]
    return None


def summary_of(*results: AnalysisResult | ControlResult | Mapping[str, object]) -> dict[str, Any]:
    """The parts of a summary.json (SPEC §5) that the given results fill (for claims.flatten)."""
    from pytest_neuronprobe.analyses.control import ControlResult
    from pytest_neuronprobe.analyses.patching_fit import PatchingResult
    from pytest_neuronprobe.analyses.projection import ProjectionResult

    summary: dict[str, Any] = {"run": {"name": None}}
    for res in results:
        if isinstance(res, ProjectionResult):
            d = res.as_dict()
            summary["run"]["name"] = res.run_name
            summary.update(
                dataset_size=d["dataset_size"],
                weight_similarities=d["weight_similarities"],
                projections=d["projections"],
                null=d["null"],
            )
        elif isinstance(res, PatchingResult):
            summary["run"]["name"] = summary["run"]["name"] or res.run_name
            summary["patching"] = res.as_dict()
        elif isinstance(res, ControlResult):
            summary["run"]["name"] = summary["run"]["name"] or res.run_name
            summary.update(res.as_dict())
        elif isinstance(res, Mapping):
            summary.update(res)
        else:
            raise TypeError(
                f"expected ProjectionResult, PatchingResult, ControlResult or a summary dict, got {type(res).__name__}"
            )
    return summary


def check_claim(
    claim: str,
    *results: AnalysisResult | ControlResult | Mapping[str, object],
    baseline: Mapping[str, object] | None = None,
    judge: str = "bound",
) -> Verdict:
    """The claims.Verdict of `claim` ("METRIC EXPR") on the given results (and baseline summary)."""
    from pytest_neuronprobe.claims.metrics import flatten
    from pytest_neuronprobe.claims.verdicts import evaluate, parse_claim

    parsed = parse_claim(claim, judge=judge)
    base = None if baseline is None else flatten(baseline)
    return evaluate(parsed, flatten(summary_of(*results)), base)


def assert_claim(
    claim: str,
    *results: AnalysisResult | ControlResult | Mapping[str, object],
    baseline: Mapping[str, object] | None = None,
    judge: str = "bound",
) -> None:
    """Fail the test with the verdict's message unless `claim` holds on the results.

    `results`: ProjectionResult / PatchingResult objects (the fixtures) or summary dicts;
    `baseline`: a summary dict (e.g. the `neuron_baseline` fixture) for claims using `baseline`;
    `judge`: "bound" (metrics with an interval are judged on its bound) or "estimate".
    """
    __tracebackhide__ = True
    verdict = check_claim(claim, *results, baseline=baseline, judge=judge)
    if not verdict.passed:
        names = {name for r in results if isinstance(name := getattr(r, "run_name", None), str)}
        run = f" (run {', '.join(sorted(names))})" if names else ""
        raise AssertionError(verdict.message + run)
