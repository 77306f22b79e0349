"""The control task and the input probe in a session: computed only when claims, the report or the history
ask (or a test uses `projection_control`), judged in claims files, written to summary.json and index.html."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_neuronprobe.analyses.control import TOKEN_REASON
from tests.integration.conftest import FAST_PROJECTION, read_json

CLAIMS = """
projection.control.selectivity: ">= 0.3"
projection.control.r: "<= 0.9"
projection.input_probe.r: ">= 0.5"
projection.control.n_shuffles: "== 5"
"""


def test_claims_on_the_control_task(pytester: pytest.Pytester, regression_run: Path) -> None:
    pytester.makefile(".yaml", neuron_claims=CLAIMS + 'projection.control.r_max: ">= 2"\n')
    result = pytester.runpytest_inprocess(f"--neuron-run={regression_run}", "-v")
    result.assert_outcomes(passed=4, failed=1)
    # two analyses: the projection and the control
    result.stdout.fnmatch_lines(["*projection.control.r_max*>= 2*failed*", "*analyses took * (0 of 2 from cache)"])


def test_claims_on_a_token_run_fail_with_the_reason(pytester: pytest.Pytester, token_run: Path) -> None:
    pytester.makefile(
        ".yaml", neuron_claims='projection.control.selectivity: ">= 0"\nprojection.input_probe.n: ">= 1"\n'
    )
    result = pytester.runpytest_inprocess(f"--neuron-run={token_run}")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([f"*{TOKEN_REASON[:40]}*"])


def test_not_computed_unless_asked(pytester: pytest.Pytester, regression_run: Path) -> None:
    pytester.makepyfile(f"import pytest\n\n{FAST_PROJECTION}\ndef test_head(projection):\n    assert projection.n\n")
    result = pytester.runpytest_inprocess(f"--neuron-run={regression_run}", "-v")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*analyses took * (0 of 1 from cache)"])  # the projection alone


def test_fixture_and_marker(pytester: pytest.Pytester, regression_run: Path) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.projection(n_resamples=20)
        @pytest.mark.projection_control(shuffles=2, steps=10)
        def test_control(projection_control):
            assert projection_control.control.n_shuffles == 2
            assert len(projection_control.control.shuffle_r) == 2
            assert projection_control.control.selectivity > 0.3, projection_control
            assert projection_control.input_probe.r > 0.5
        """
    )
    pytester.runpytest_inprocess(f"--neuron-run={regression_run}").assert_outcomes(passed=1)
    typo = "import pytest\n\n@pytest.mark.projection_control(shufles=2)\ndef test_typo(projection_control):\n    pass\n"
    pytester.makepyfile(typo)
    result = pytester.runpytest_inprocess(f"--neuron-run={regression_run}")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*@pytest.mark.projection_control got unknown keyword(s) 'shufles'*"])


def test_report_carries_the_control(pytester: pytest.Pytester, regression_run: Path, token_run: Path) -> None:
    pytester.makepyfile("def test_plain():\n    pass\n")
    result = pytester.runpytest_inprocess(
        f"--neuron-run={regression_run}", f"--neuron-run={token_run}", "--neuron-report=rep"
    )
    result.assert_outcomes(passed=1)
    summary = read_json(pytester.path / "rep" / regression_run.name / "summary.json")
    control, probe = summary["control"], summary["input_probe"]
    assert control["n_shuffles"] == 5 and control["n_train"] == 48 and len(control["shuffle_r"]) == 5
    assert control["selectivity"] == pytest.approx(control["head_r"] - control["r"])
    assert control["head_r"] == pytest.approx(summary["projections"]["prediction"]["correlation"], abs=1e-6)
    assert control["options"]["shuffles"] == 5 and probe["n"] == summary["dataset_size"]
    token = read_json(pytester.path / "rep" / token_run.name / "summary.json")
    assert token["control"]["r"] is None and token["control"]["r_reason"] == TOKEN_REASON
    assert token["control"]["selectivity_reason"] == TOKEN_REASON
    json.dumps(token, allow_nan=False)
    html = (pytester.path / "rep" / "index.html").read_text(encoding="utf-8")
    assert "Control task and input probe" in html and "control selectivity" in html
