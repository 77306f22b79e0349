"""Tests for claims: metric names, the expression language, judging, claims files."""

from __future__ import annotations

import copy
import dataclasses
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pytest_neuronprobe.claims.expressions import parse_expr
from pytest_neuronprobe.claims.loader import CLAIM_FILE_PATTERNS, load_claims
from pytest_neuronprobe.claims.metrics import KNOWN_METRICS, Metric, flatten
from pytest_neuronprobe.claims.verdicts import Claim, evaluate, evaluate_all, parse_claim
from pytest_neuronprobe.core.errors import NeuronProbeError

ABSENT = "absent: the neuron is not an MLP neuron (layer_type is not pre/post)"


def corr(
    r: float | None, lo: float | None, hi: float | None, n: int = 500, reason: str | None = None
) -> dict[str, Any]:
    d: dict[str, Any] = {
        "correlation": r,
        "r_squared": None if r is None else r * r,
        "p_value": None if r is None else 1e-12,
        "spearman": r,
        "ci_low": lo,
        "ci_high": hi,
        "n": n,
    }
    if reason is not None:
        d["reason"] = reason
    return d


def make_summary(
    name: str = "gpt2_neuron_l8_n481", *, head: tuple = (0.791, 0.742, 0.833), patching: bool = True, mlp: bool = True
) -> dict[str, Any]:
    """A SPEC §5 summary with hand-picked numbers."""
    undefined = corr(None, None, None, reason=ABSENT)
    return {
        "run": {
            "path": f"/runs/{name}",
            "name": name,
            "target_layer": 8,
            "target_neuron": 481,
            "head_type": "regression",
            "base_model": "gpt2",
            "split": "test",
        },
        "dataset_size": 500,
        "weight_similarities": {"head_input": 0.12, "head_output": 0.45, "input_output": -0.02},
        "projections": {
            "prediction": corr(0.93, 0.91, 0.95),
            "head": corr(*head),
            "input": corr(0.61, 0.55, 0.66) if mlp else undefined,
            "output": corr(0.35, 0.27, 0.43) if mlp else undefined,
            "neuron_dir": corr(0.22, 0.13, 0.30) if mlp else undefined,
            "live": corr(1.0, 1.0, 1.0),
        },
        "null": {
            "random": {
                "observed": head[0],
                "p_value": 0.005,
                "percentile_95": 0.2,
                "selectivity": head[0] - 0.2,
                "n_null": 200,
            },
            "neurons": None,
        },
        "patching": None
        if not patching
        else {
            "mode": "scale",
            "factors": [0, 0.25, 0.5],
            "n_texts": 50,
            "baseline_correlation": 0.8,
            "slope": 0.95,
            "intercept": 0.01,
            "r_squared": 0.9,
            "slope_ci_low": 0.9,
            "slope_ci_high": 1.02,
            "avg_activation_changes": [],
            "avg_prediction_changes": [],
            "per_input": [],
            "direct_slope": 0.5,
            "direct_fraction": 0.526,
        },
    }


@pytest.fixture
def metrics() -> dict[str, Metric]:
    return flatten(make_summary())


def judge(text: str, metrics: dict[str, Metric], baseline: dict[str, Metric] | None = None, how: str = "bound"):
    return evaluate(parse_claim(text, judge=how), metrics, baseline)


# ---------------------------------------------------------------------------------------------
# flatten
# ---------------------------------------------------------------------------------------------


def test_flatten_names_values_and_intervals(metrics: dict[str, Metric]) -> None:
    head = metrics["projection.head.r"]
    assert (head.value, head.ci_low, head.ci_high, head.reason) == (0.791, 0.742, 0.833, None)
    assert head.has_interval and not metrics["projection.head.r_squared"].has_interval
    assert metrics["projection.head.r_squared"].value == pytest.approx(0.791**2)
    assert metrics["projection.head.n"].value == 500
    assert metrics["projection.weights.input_output"].value == -0.02
    assert metrics["projection.null.random.selectivity"].value == pytest.approx(0.591)
    slope = metrics["patching.slope"]
    assert (slope.value, slope.ci_low, slope.ci_high) == (0.95, 0.9, 1.02)
    assert metrics["patching.direct_fraction"].value == 0.526
    assert metrics["dataset_size"].value == 500
    assert set(metrics) <= set(KNOWN_METRICS)
    # the other neurons' null is null in the summary: no metrics for it
    assert not any(m.startswith("projection.null.neurons.") for m in metrics)


def test_flatten_undefined_keeps_the_reason() -> None:
    m = flatten(make_summary(mlp=False))
    r = m["projection.input.r"]
    assert r.value is None and r.reason == ABSENT and not r.defined
    assert m["projection.input.p_value"].reason == ABSENT
    s = make_summary()
    s["projections"]["head"]["spearman"] = float("nan")
    s["weight_similarities"]["head_input"] = None
    m = flatten(s)
    assert m["projection.head.spearman"].value is None
    assert m["projection.weights.head_input"].reason == "undefined"


def test_flatten_absent_sections() -> None:
    s = make_summary(patching=False)
    s["projections"] = {name: {} for name in s["projections"]}
    s["weight_similarities"] = {"head_input": None, "head_output": None, "input_output": None}
    del s["null"]
    assert set(flatten(s)) == {"dataset_size"}


def test_flatten_rejects_non_numbers() -> None:
    s = make_summary()
    s["projections"]["head"]["correlation"] = "0.8"
    with pytest.raises(NeuronProbeError, match=r"projections\.head\.correlation"):
        flatten(s)


# ---------------------------------------------------------------------------------------------
# parse_expr
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "base", "low", "high", "low_open", "high_open"),
    [
        (">= 0.8", None, 0.8, math.inf, False, False),
        ("> 0.8", None, 0.8, math.inf, True, False),
        ("<= 0.05", None, -math.inf, 0.05, False, False),
        ("< 1e-3", None, -math.inf, 0.001, False, True),
        ("== 3", None, 3, 3, False, False),
        ("1.0 +- 0.2", None, 0.8, 1.2, False, False),
        ("1.0 ± 0.2", None, 0.8, 1.2, False, False),
        ("1.0 +/- 0.2", None, 0.8, 1.2, False, False),
        ("between 0.5 and 1.5", None, 0.5, 1.5, False, False),
        ("between -1.5 and -0.5", None, -1.5, -0.5, False, False),
        (">= -2.5E-2", None, -0.025, math.inf, False, False),
        ("> .5", None, 0.5, math.inf, True, False),
        (">= baseline - 0.05", 0.8, 0.75, math.inf, False, False),
        (">= baseline * 0.9", 0.8, 0.72, math.inf, False, False),
        ("<= baseline + 0.1", 0.8, -math.inf, 0.9, False, False),
        ("<= baseline / 2", 0.8, -math.inf, 0.4, False, False),
        ("> baseline", 0.8, 0.8, math.inf, True, False),
        ("baseline +- 0.1", 0.8, 0.7, 0.9, False, False),
        ("between baseline - 0.1 and baseline + 0.1", 0.8, 0.7, 0.9, False, False),
        ("  >=0.8  ", None, 0.8, math.inf, False, False),
    ],
)
def test_parse_expr_forms(text, base, low, high, low_open, high_open) -> None:
    expr = parse_expr(text)
    rng = expr.range(base)
    assert rng.low == pytest.approx(low) and rng.high == pytest.approx(high)
    assert (rng.low_open, rng.high_open) == (low_open, high_open)
    assert expr.uses_baseline == (base is not None)
    assert parse_expr(str(expr)).range(base) == rng  # str() round-trips


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (">> 0.8", "a number or 'baseline'"),
        ("=> 0.8", "an operator, a number or 'baseline', found '='"),
        ("0.8", "'+-'"),
        ("", "an expression"),
        (">=", "a number or 'baseline'"),
        (">= 0.8 0.9", "the end of the expression"),
        (">= base", "a number or 'baseline'"),
        ("between 1 and", "a number or 'baseline'"),
        ("between 1 or 2", "'and'"),
        ("between 2 and 1", "a lower bound first"),
        ("1 +- -0.1", "a non-negative tolerance"),
        ("1 +- baseline", "a tolerance"),
        (">= baseline ** 2", "a number after 'baseline *'"),
        (">= baseline / 0", "a non-zero divisor"),
        (">= __import__('os')", "an operator, a number or 'baseline', found '('"),
        (">= 0.8; rm -rf /", "an operator, a number or 'baseline'"),
    ],
)
def test_bad_syntax_names_the_text_and_what_was_expected(text: str, expected: str) -> None:
    with pytest.raises(NeuronProbeError) as info:
        parse_expr(text)
    message = str(info.value)
    assert repr(text) in message and f"expected {expected}" in message


def test_parse_claim_names_the_whole_claim() -> None:
    claim = parse_claim("  projection.head.r   >= 0.8 ")
    assert (claim.metric, claim.text, claim.judge) == ("projection.head.r", "projection.head.r >= 0.8", "bound")
    with pytest.raises(NeuronProbeError, match=r"'projection.head.r >== 0.8'"):
        parse_claim("projection.head.r >== 0.8")
    with pytest.raises(NeuronProbeError, match="metric name"):
        parse_claim(">= 0.8")
    with pytest.raises(NeuronProbeError, match="judge must be one of bound, estimate"):
        parse_claim("projection.head.r >= 0.8", judge="mean")


# ---------------------------------------------------------------------------------------------
# evaluate: thresholds on interval metrics (r: 0.791, interval [0.742, 0.833])
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "bound", "estimate", "judged_on"),
    [
        ("projection.head.r >= 0.74", True, True, "ci_low"),
        ("projection.head.r >= 0.742", True, True, "ci_low"),
        ("projection.head.r >= 0.75", False, True, "ci_low"),
        ("projection.head.r >= 0.8", False, False, "ci_low"),
        ("projection.head.r > 0.742", False, True, "ci_low"),
        ("projection.head.r > 0.7", True, True, "ci_low"),
        ("projection.head.r <= 0.84", True, True, "ci_high"),
        ("projection.head.r <= 0.833", True, True, "ci_high"),
        ("projection.head.r <= 0.83", False, True, "ci_high"),
        ("projection.head.r <= 0.79", False, False, "ci_high"),
        ("projection.head.r < 0.833", False, True, "ci_high"),
        ("projection.head.r < 0.9", True, True, "ci_high"),
        ("projection.head.r 0.8 +- 0.1", True, True, "interval"),
        ("projection.head.r 0.8 +- 0.05", False, True, "interval"),  # low end outside
        ("projection.head.r 0.75 +- 0.05", False, True, "interval"),  # high end outside
        ("projection.head.r 0.9 +- 0.05", False, False, "interval"),
        ("projection.head.r between 0.742 and 0.833", True, True, "interval"),
        ("projection.head.r between 0.75 and 0.9", False, True, "interval"),
        ("projection.head.r between 0.7 and 0.8", False, True, "interval"),
        ("projection.head.r between 0.8 and 0.9", False, False, "interval"),
    ],
)
def test_thresholds_bound_and_estimate(metrics, text, bound, estimate, judged_on) -> None:
    v = judge(text, metrics)
    assert (v.passed, v.judged_on) == (bound, judged_on), v.message
    assert bool(v) is v.passed
    e = judge(text, metrics, how="estimate")
    assert (e.passed, e.judged_on) == (estimate, "estimate"), e.message
    assert v.message.startswith(f"{text} {'passed' if bound else 'failed'}: judged on ")


def test_message_matches_the_documented_shape(metrics) -> None:
    v = judge("projection.head.r >= 0.8", metrics)
    assert v.message == (
        "projection.head.r >= 0.8 failed: judged on the 95% interval's lower bound "
        "ci_low=0.742 (estimate r=0.791, interval [0.742, 0.833], n=500)"
    )
    assert v.values == {"estimate": 0.791, "ci_low": 0.742, "ci_high": 0.833, "threshold": 0.8}
    v = judge("patching.slope 1.0 +- 0.1", metrics)
    assert v.passed and "whole 95% interval [0.9, 1.02] against [0.9, 1.1]" in v.message
    assert "n_texts=50" in v.message
    assert v.values["low"] == pytest.approx(0.9) and v.values["high"] == pytest.approx(1.1)


def test_close_to_the_threshold_shows_enough_digits() -> None:
    m = flatten(make_summary(head=(0.85, 0.79996, 0.9)))
    v = judge("projection.head.r >= 0.8", m)
    assert not v.passed and "ci_low=0.79996" in v.message


def test_bound_inside_but_estimate_outside_fails() -> None:
    # A bootstrap interval need not contain the estimate; the claim must hold for both.
    m = flatten(make_summary(head=(0.78, 0.81, 0.9)))
    v = judge("projection.head.r >= 0.8", m)
    assert not v.passed and "the estimate itself does not satisfy the claim" in v.message


def test_metrics_without_interval_are_judged_on_the_estimate(metrics) -> None:
    for text, ok in [
        ("dataset_size == 500", True),
        ("dataset_size == 499", False),
        ("projection.head.n >= 500", True),
        ("projection.head.n > 500", False),
        ("projection.head.p_value <= 1e-10", True),
        ("projection.head.p_value < 1e-12", False),
        ("projection.weights.input_output < 0", True),
        ("projection.weights.input_output between -0.01 and 0", False),
        ("projection.weights.input_output -0.02 +- 0", True),
        ("patching.r_squared >= 0.9", True),
        ("patching.r_squared > 0.9", False),
    ]:
        v = judge(text, metrics)
        assert (v.passed, v.judged_on) == (ok, "estimate"), v.message


def test_equality_on_an_interval_metric_compares_the_estimate(metrics) -> None:
    v = judge("projection.live.r == 1", metrics)
    assert v.passed and v.judged_on == "estimate"


# ---------------------------------------------------------------------------------------------
# evaluate: undefined never passes
# ---------------------------------------------------------------------------------------------

FORMS = [
    ">= 0",
    "> -1",
    "<= 1",
    "< 2",
    "== 0.61",
    "0 +- 10",
    "between -10 and 10",
    ">= baseline - 10",
    "baseline +- 10",
]


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("how", ["bound", "estimate"])
def test_undefined_value_never_passes(form: str, how: str) -> None:
    m = flatten(make_summary(mlp=False))
    v = judge(f"projection.input.r {form}", m, baseline=flatten(make_summary()), how=how)
    assert not v.passed
    assert f"projection.input.r is undefined: {ABSENT}" in v.message


@pytest.mark.parametrize("form", FORMS)
def test_undefined_baseline_never_passes(form: str) -> None:
    now = flatten(make_summary())
    base = flatten(make_summary(mlp=False))
    v = judge(f"projection.input.r {form}", now, baseline=base)
    if "baseline" in form:
        assert not v.passed and "baseline projection.input.r is undefined" in v.message
    else:
        assert v.passed  # the baseline is not used


def test_undefined_interval_fails_on_the_bound_and_suggests_estimate() -> None:
    m = flatten(make_summary(head=(0.791, None, None)))
    v = judge("projection.head.r >= 0.5", m)
    assert not v.passed and v.judged_on == "ci_low"
    assert "95% interval of r is undefined" in v.message and "judge: estimate" in v.message
    assert judge("projection.head.r >= 0.5", m, how="estimate").passed
    s = make_summary()
    s["patching"]["slope_ci_low"] = s["patching"]["slope_ci_high"] = None
    v = judge("patching.slope 1 +- 0.5", flatten(s))
    assert not v.passed and v.judged_on == "interval" and "judge: estimate" in v.message
    # a one-sided claim needs only its own bound
    m = flatten(make_summary(head=(0.791, 0.742, None)))
    assert judge("projection.head.r >= 0.7", m).passed
    assert not judge("projection.head.r <= 0.9", m).passed


def test_overflowing_threshold_from_baseline_never_passes(metrics) -> None:
    base = flatten(make_summary())
    assert not judge("projection.head.r >= baseline / 1e-320", metrics, base).passed


# ---------------------------------------------------------------------------------------------
# evaluate: baselines, unknown metrics
# ---------------------------------------------------------------------------------------------


def test_baseline_arithmetic(metrics) -> None:
    base = flatten(make_summary(head=(0.80, 0.77, 0.84)))
    # threshold = 0.80 - 0.05 = 0.75 > ci_low 0.742: fails on the bound, passes on the estimate
    v = judge("projection.head.r >= baseline - 0.05", metrics, base)
    assert not v.passed and v.values["threshold"] == pytest.approx(0.75) and v.values["baseline"] == 0.8
    assert "threshold 0.75 from >= baseline - 0.05 with baseline r=0.8" in v.message
    assert judge("projection.head.r >= baseline - 0.05", metrics, base, how="estimate").passed
    assert judge("projection.head.r >= baseline - 0.06", metrics, base).passed
    assert judge("projection.head.r >= baseline * 0.9", metrics, base).passed  # 0.72
    assert not judge("projection.head.r >= baseline * 0.95", metrics, base).passed  # 0.76
    assert judge("projection.head.r <= baseline + 0.05", metrics, base).passed  # 0.85
    assert not judge("projection.head.r <= baseline + 0.03", metrics, base).passed  # 0.83
    assert judge("projection.head.r baseline +- 0.06", metrics, base).passed  # [0.74, 0.86]
    assert not judge("projection.head.r baseline +- 0.05", metrics, base).passed  # [0.75, 0.85]


def test_baseline_missing(metrics) -> None:
    v = judge("projection.head.r >= baseline - 0.05", metrics)
    assert not v.passed and "no baseline given (use --neuron-baseline)" in v.message
    v = judge("patching.slope >= baseline", metrics, flatten(make_summary(patching=False)))
    assert not v.passed and "not in the baseline summary" in v.message


def test_unknown_metric_lists_close_matches(metrics) -> None:
    v = judge("projection.haed.r >= 0.8", metrics)
    assert not v.passed and "unknown metric 'projection.haed.r'" in v.message
    assert "did you mean projection.head.r" in v.message
    v = judge("head.r >= 0.8", metrics)
    assert "did you mean projection.head.r" in v.message
    v = judge("patching.slop >= 0.8", metrics)
    assert "patching.slope" in v.message


def test_known_but_absent_metric(metrics) -> None:
    m = flatten(make_summary(patching=False))
    v = judge("patching.slope >= 0.5", m)
    assert not v.passed and "patching analysis did not run" in v.message
    v = judge("projection.null.neurons.p_value <= 0.05", metrics)
    assert not v.passed and "null baseline was not computed" in v.message


# ---------------------------------------------------------------------------------------------
# claims files
# ---------------------------------------------------------------------------------------------

CLAIMS_YAML = """\
# claims for the l8 n481 probe
options:
  judge: bound
  run: "gpt2_*"

projection.head.r: ">= 0.7"
projection.live.r: [">= 0.99", "<= 1"]
projection.input.p_value: <= 0.05
patching.slope:
  expect: "1.0 +- 0.2"
  judge: estimate
patching.r_squared:
  expect:
    - ">= 0.5"
    - between 0.8 and 1
  run: "*_l9_*"
dataset_size: == 500
"""


def write(tmp_path: Path, text: str, name: str = "neuron_claims.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_load_claims_structure_and_lines(tmp_path: Path) -> None:
    path = write(tmp_path, CLAIMS_YAML)
    claims = load_claims(path)
    got = [(c.text, c.line, c.judge, c.run) for c in claims]
    assert got == [
        ("projection.head.r >= 0.7", 6, "bound", "gpt2_*"),
        ("projection.live.r >= 0.99", 7, "bound", "gpt2_*"),
        ("projection.live.r <= 1", 7, "bound", "gpt2_*"),
        ("projection.input.p_value <= 0.05", 8, "bound", "gpt2_*"),
        ("patching.slope 1.0 +- 0.2", 10, "estimate", "gpt2_*"),
        ("patching.r_squared >= 0.5", 14, "bound", "*_l9_*"),
        ("patching.r_squared between 0.8 and 1", 15, "bound", "*_l9_*"),
        ("dataset_size == 500", 17, "bound", "gpt2_*"),
    ]
    assert all(c.source == str(path) for c in claims)
    assert claims[0].where == f"{path}:6"

    results = evaluate_all(claims, make_summary())
    assert [c.metric for c, _ in results] == [
        "projection.head.r",
        "projection.live.r",
        "projection.live.r",
        "projection.input.p_value",
        "patching.slope",
        "dataset_size",
    ]
    assert all(v.passed for _, v in results), [v.message for _, v in results]
    assert evaluate_all(claims, make_summary(name="other")) == []


def test_file_judge_default(tmp_path: Path) -> None:
    path = write(tmp_path, "options: {judge: estimate}\nprojection.head.r: '>= 0.75'\n")
    (claim,) = load_claims(path)
    assert claim.judge == "estimate" and claim.run is None
    assert evaluate(claim, flatten(make_summary())).passed


def test_empty_claims_file(tmp_path: Path) -> None:
    assert load_claims(write(tmp_path, "# nothing yet\n")) == []


@pytest.mark.parametrize(
    ("text", "line", "key", "fragment"),
    [
        ("projection.head.r: >= 0.8\n", 1, None, "quote expressions that start with '>'"),
        ("a: 1\nprojection.head.r: [>= 0.8]\n", 2, None, "quote expressions that start with '>'"),
        (
            "\n\nprojection.head.r: '>== 0.8'\n",
            3,
            "projection.head.r",
            "cannot parse claim 'projection.head.r: >== 0.8'",
        ),
        ("projection.head.r: '>= 0.8'\ndataset_size: 500\n", 2, "dataset_size", "a bare number is not a claim"),
        ("projection.head.r:\n", 1, "projection.head.r", "got nothing"),
        ("options:\n  judge: mean\n", 2, "options.judge", "judge must be one of bound, estimate"),
        ("options:\n  jugde: estimate\n", 2, "options.jugde", "unknown option"),
        ("options: [1]\n", 1, "options", "expected a mapping"),
        ("patching.slope:\n  expect: '>= 0'\n  judge: median\n", 3, "patching.slope.judge", "judge must be"),
        ("patching.slope:\n  expct: '>= 0'\n", 2, "patching.slope.expct", "unknown key"),
        ("patching.slope:\n  judge: estimate\n", 2, "patching.slope", "needs 'expect"),
        ("patching.slope: []\n", 1, "patching.slope", "at least one expression"),
        ("patching.slope: [['>= 0']]\n", 1, "patching.slope", "got a list"),
        ("a: '>= 0'\nb: '<= 1'\na: '< 2'\n", 3, "a", "duplicate key (first at line 1)"),
        ("- '>= 0.8'\n", 1, None, "expected a mapping of metric names"),
    ],
)
def test_claims_file_errors_name_file_line_and_key(tmp_path, text, line, key, fragment) -> None:
    path = write(tmp_path, text)
    with pytest.raises(NeuronProbeError) as info:
        load_claims(path)
    message = str(info.value)
    where = f"{path}:{line}" + (f" [{key}]" if key else "")
    assert message.startswith(where + ": "), message
    assert fragment in message


def test_missing_claims_file(tmp_path: Path) -> None:
    with pytest.raises(NeuronProbeError, match="cannot read claims file"):
        load_claims(tmp_path / "neuron_claims.yaml")


def test_claim_file_patterns() -> None:
    import fnmatch

    names = ["neuron_claims.yaml", "neuron_claims_l8.yml", "gpt2_l8.neuron.yaml"]
    assert all(any(fnmatch.fnmatch(n, p) for p in CLAIM_FILE_PATTERNS) for n in names)
    assert not any(fnmatch.fnmatch("claims.yaml", p) for p in CLAIM_FILE_PATTERNS)


def test_claim_is_frozen_and_run_glob() -> None:
    claim = Claim("dataset_size", parse_expr("== 1"), "dataset_size == 1", run="gpt2_*")
    assert claim.applies_to("gpt2_l8") and not claim.applies_to("pythia_l8")
    with pytest.raises(dataclasses.FrozenInstanceError):
        claim.metric = "x"  # type: ignore[misc]


def test_pure_modules_do_not_import_pytest() -> None:
    code = (
        "import sys; import pytest_neuronprobe.claims.loader, pytest_neuronprobe.compare, "
        "pytest_neuronprobe.baseline, pytest_neuronprobe.core.formatting; "
        "sys.exit(1 if 'pytest' in sys.modules or '_pytest' in sys.modules else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_summary_helper_is_not_mutated() -> None:
    s = make_summary()
    before = copy.deepcopy(s)
    flatten(s)
    evaluate_all([parse_claim("projection.head.r >= 0.5")], s, s)
    assert s == before
