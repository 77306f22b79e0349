"""JUnit XML carries the run and the headline metrics as <property> elements."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from .conftest import FAST_PATCHING, FAST_PROJECTION


def _properties(xml: Path) -> dict[str, dict[str, str]]:
    root = ET.parse(xml).getroot()
    out = {}
    for case in root.iter("testcase"):
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        out[case.get("name")] = props
    return out


def test_junit_properties(pytester: pytest.Pytester, regression_run: Path) -> None:
    pytester.makepyfile(f"""
        import pytest

        {FAST_PROJECTION}
        {FAST_PATCHING}
        def test_both(projection, patching):
            pass

        def test_plain():
            pass
    """)
    pytester.makefile(".yaml", neuron_claims='projection.head.r: ">= 0.5"\n')
    result = pytester.runpytest_inprocess(f"--neuron-run={regression_run}", "--junitxml=out.xml")
    result.assert_outcomes(passed=3)
    props = _properties(pytester.path / "out.xml")
    name = regression_run.name
    both = props[f"test_both[{name}]"]
    assert both["neuron_run"] == name
    for key in (
        "projection.head.r",
        "projection.head.ci_low",
        "projection.prediction.r",
        "projection.live.r",
        "projection.n",
        "patching.slope",
        "patching.r_squared",
        "patching.direct_slope",
    ):
        assert key in both, key
    assert 0.5 < float(both["projection.head.r"]) <= 1
    assert both["projection.n"] == "12"
    claim = props[f"projection.head.r >= 0.5[{name}]"]
    assert claim["neuron_run"] == name and claim["claim"] == "projection.head.r >= 0.5"
    assert float(claim["projection.head.r.estimate"]) == pytest.approx(float(both["projection.head.r"]), abs=1e-6)
    assert "projection.head.r.ci_low" in claim and claim["projection.head.r.threshold"] == "0.5"
    assert props["test_plain"] == {}


def test_junit_marks_undefined_values(pytester: pytest.Pytester, constant_run: Path) -> None:
    pytester.makepyfile(f"""
        import pytest

        {FAST_PROJECTION}
        def test_head(projection):
            pass
    """)
    result = pytester.runpytest_inprocess(f"--neuron-run={constant_run}", "--junitxml=out.xml", "-W", "ignore")
    result.assert_outcomes(passed=1)
    props = _properties(pytester.path / "out.xml")[f"test_head[{constant_run.name}]"]
    assert props["projection.head.r"] == "undefined"
