"""The attribution sweep in pytest: the fixture and marker, claims on it (unit names too), only when asked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_neuronprobe.analyses.attribution import analyze_attribution
from pytest_neuronprobe.analyses.options import AttributionOptions
from pytest_neuronprobe.core.probe import open_probe
from pytest_neuronprobe.core.runs import load_run


@pytest.fixture(scope="module")
def top_unit(regression_run: Path) -> str:
    """The unit the default sweep ranks first, computed outside pytest."""
    return analyze_attribution(open_probe(load_run(regression_run), "cpu"), AttributionOptions()).top[0]


def test_the_fixture_and_marker_give_the_sweep_with_those_options(
    pytester: pytest.Pytester, regression_run: Path
) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.attribution(k=3, n_resamples=50, ablation="zero")
        def test_sweep(attribution):
            assert attribution.ablation == "zero" and attribution.options["k"] == 3
            assert len(attribution.verified) in (3, 4)  # the top 3, plus the target when it is not among them
            assert attribution.target == "L1.N31" and attribution.target_rank >= 1
            assert "AttributionResult(" in repr(attribution)
        """
    )
    result = pytester.runpytest_inprocess(f"--neuron-run={regression_run}")
    result.assert_outcomes(passed=1)
    assert any(line.startswith("neuronprobe: attribution of") for line in result.outlines)


def test_claims_on_units_ranks_and_shares(pytester: pytest.Pytester, regression_run: Path, top_unit: str) -> None:
    pytester.makefile(
        ".yaml",
        neuron_claims=f"""\
attribution.top[0]: "== {top_unit}"
attribution.target.rank: ">= 1"
attribution.target.share: "between 0 and 1"
attribution.top[1]: "== L0.N99999"
attribution.top[99]: ">= 0"
""",
    )
    result = pytester.runpytest_inprocess(f"--neuron-run={regression_run}", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=3, failed=2)
    result.stdout.fnmatch_lines(
        [
            "attribution.top[[]1[]] == L0.N99999 failed: attribution.top[[]1[]] is L*.N* (value *)*",
            "*attribution.top[[]99[]] is not in the summary (the attribution sweep did not run, or verified fewer*",
        ]
    )


def test_sessions_that_do_not_ask_do_not_pay_for_the_sweep(
    pytester: pytest.Pytester, regression_run: Path, tmp_path: Path
) -> None:
    pytester.makefile(".yaml", neuron_claims='projection.live.r: ">= 0.9"\n')
    report = tmp_path / "report"
    result = pytester.runpytest_inprocess(f"--neuron-run={regression_run}", f"--neuron-report={report}")
    result.assert_outcomes(passed=1)
    assert not any("attribution" in line for line in result.outlines)
    summary = json.loads(next(report.glob("*/summary.json")).read_text())
    assert "attribution" not in summary


def test_an_asked_for_sweep_is_in_the_report(pytester: pytest.Pytester, regression_run: Path, tmp_path: Path) -> None:
    pytester.makefile(".yaml", neuron_claims='attribution.target.rank: ">= 1"\n')
    report = tmp_path / "report"
    result = pytester.runpytest_inprocess(f"--neuron-run={regression_run}", f"--neuron-report={report}")
    result.assert_outcomes(passed=1)
    folder = next(report.glob("*/summary.json")).parent
    section = json.loads((folder / "summary.json").read_text())["attribution"]
    assert section["target"]["unit"] == "L1.N31" and section["verified"] and section["layers"]
    assert (folder / "attribution.png").is_file()
    html = (report / "index.html").read_text()
    assert "attribution.png" in html and "L1.N31" in html


def test_unknown_marker_keywords_are_a_usage_error(pytester: pytest.Pytester, regression_run: Path) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.attribution(topk=3)
        def test_sweep(attribution):
            pass
        """
    )
    result = pytester.runpytest_inprocess(f"--neuron-run={regression_run}")
    result.stdout.fnmatch_lines(["*@pytest.mark.attribution got unknown keyword(s) 'topk'; accepted: k, ablation*"])
    assert result.ret != 0
