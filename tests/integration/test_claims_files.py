"""Claims files (neuron_claims*.yaml): one item per claim per run, judged by claims.evaluate."""

from __future__ import annotations

from pathlib import Path

import pytest

CLAIMS = """\
projection.head.r: ">= 0.5"
projection.prediction.r: ["> 0", "<= 1"]
projection.live.r: ">= 2"
"""


def test_one_item_per_claim_per_run(pytester: pytest.Pytester, two_runs: list[Path]) -> None:
    pytester.makefile(".yaml", neuron_claims=CLAIMS)
    args = [f"--neuron-run={run}" for run in two_runs]
    result = pytester.runpytest_inprocess(*args, "-v")
    result.assert_outcomes(passed=6, failed=2)
    for run in two_runs:
        result.stdout.fnmatch_lines(
            [
                f"neuron_claims.yaml::projection.head.r >= 0.5[[]{run.name}[]] PASSED*",
                f"neuron_claims.yaml::projection.live.r >= 2[[]{run.name}[]] FAILED*",
            ]
        )


def test_failure_message_is_the_verdict_with_file_and_line(pytester: pytest.Pytester, regression_run: Path) -> None:
    pytester.makefile(".yaml", neuron_claims=CLAIMS)
    result = pytester.runpytest_inprocess(f"--neuron-run={regression_run}")
    result.assert_outcomes(passed=3, failed=1)
    path = pytester.path / "neuron_claims.yaml"
    result.stdout.fnmatch_lines(
        [
            f"*_ claim 'projection.live.r >= 2' on run {regression_run.name} _*",
            "projection.live.r >= 2 failed: judged on the 95% interval's lower bound ci_low=* "
            f"(estimate r=*, interval [[]*, *[]], n=12) ({path}:3)",
            f"run: {regression_run.name}",
        ]
    )
    assert "Traceback" not in result.stdout.str() and "plugin.py" not in result.stdout.str()


def test_only_the_needed_analyses_run(pytester: pytest.Pytester, regression_run: Path) -> None:
    pytester.makefile(".yaml", neuron_claims='projection.head.r: ">= 0.5"\n')
    result = pytester.runpytest_inprocess(f"--neuron-run={regression_run}")
    result.assert_outcomes(passed=1)
    assert any(line.startswith("neuronprobe: projection of") for line in result.outlines)
    assert not any(line.startswith("neuronprobe: patching of") for line in result.outlines)

    pytester.makefile(".yaml", neuron_claims='patching.r_squared: ">= 0"\n')
    result = pytester.runpytest_inprocess(f"--neuron-run={regression_run}")
    result.assert_outcomes(passed=1)
    assert not any(line.startswith("neuronprobe: projection of") for line in result.outlines)
    assert any(line.startswith("neuronprobe: patching of") for line in result.outlines)


def test_run_glob_selects_runs(pytester: pytest.Pytester, two_runs: list[Path]) -> None:
    first, second = two_runs
    pytester.makefile(
        ".yaml",
        neuron_claims=f"""
projection.head.r: ">= 0"
patching.r_squared:
  expect: ">= 0"
  run: "{second.name}"
""",
    )
    args = [f"--neuron-run={run}" for run in two_runs]
    result = pytester.runpytest_inprocess(*args, "--collect-only", "-q")
    assert sorted(line for line in result.outlines if "::" in line) == sorted(
        [
            f"neuron_claims.yaml::projection.head.r >= 0[{first.name}]",
            f"neuron_claims.yaml::projection.head.r >= 0[{second.name}]",
            f"neuron_claims.yaml::patching.r_squared >= 0[{second.name}]",
        ]
    )


def test_judge_option_and_the_file_judge(pytester: pytest.Pytester, regression_run: Path) -> None:
    # The estimate of head r is above its interval's lower bound: a threshold between the two
    # passes when judged on the estimate and fails when judged on the bound.
    probe = pytester.makepyfile(
        test_probe="""
        import pytest
        def test_values(projection):
            print(f"VALUES {projection.head.ci_low!r} {projection.head.r!r}")
    """
    )
    result = pytester.runpytest_inprocess(f"--neuron-run={regression_run}", "-s", str(probe))
    line = next(line for line in result.outlines if line.startswith("VALUES "))
    ci_low, r = (float(v) for v in line.split()[1:])
    assert ci_low < r
    threshold = (ci_low + r) / 2
    probe.unlink()
    pytester.makefile(".yaml", neuron_claims=f'projection.head.r: ">= {threshold!r}"\n')
    pytester.runpytest_inprocess(f"--neuron-run={regression_run}").assert_outcomes(failed=1)
    result = pytester.runpytest_inprocess(f"--neuron-run={regression_run}", "--neuron-judge", "estimate")
    result.assert_outcomes(passed=1)
    pytester.makeini("[pytest]\nneuron_judge = estimate\n")
    pytester.runpytest_inprocess(f"--neuron-run={regression_run}").assert_outcomes(passed=1)
    # A judge written in the file wins over the option.
    pytester.makefile(".yaml", neuron_claims=f'options:\n  judge: bound\nprojection.head.r: ">= {threshold!r}"\n')
    result = pytester.runpytest_inprocess(f"--neuron-run={regression_run}", "--neuron-judge", "estimate")
    result.assert_outcomes(failed=1)


def test_bad_claims_file_is_a_collection_error(pytester: pytest.Pytester, regression_run: Path) -> None:
    pytester.makefile(".yaml", neuron_claims='projection.head.r: ">= 0.8"\npatching.slope: "about one"\n')
    result = pytester.runpytest_inprocess(f"--neuron-run={regression_run}")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*claims file *neuron_claims.yaml*:2*cannot parse claim*about one*"])


def test_unknown_metric_is_a_collection_error(pytester: pytest.Pytester, regression_run: Path) -> None:
    pytester.makefile(".yaml", neuron_claims='projection.head.rr: ">= 0.8"\n')
    result = pytester.runpytest_inprocess(f"--neuron-run={regression_run}")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*unknown metric 'projection.head.rr'; did you mean *projection.head.r*"])


def test_other_yaml_files_are_not_collected(pytester: pytest.Pytester, regression_run: Path) -> None:
    pytester.makefile(".yaml", settings='projection.head.r: ">= 0.8"\n')
    result = pytester.runpytest_inprocess(f"--neuron-run={regression_run}")
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED


def test_reportinfo_points_at_the_claim_line(pytester: pytest.Pytester, regression_run: Path) -> None:
    pytester.makefile(".yaml", neuron_claims=CLAIMS)
    pytester.makeconftest("""
        def pytest_collection_finish(session):
            for item in session.items:
                path, line, name = item.reportinfo()
                print(f"INFO {path.name}:{line} {name}")
    """)
    result = pytester.runpytest_inprocess(f"--neuron-run={regression_run}", "--collect-only", "-s")
    result.stdout.fnmatch_lines(
        [
            f"INFO neuron_claims.yaml:0 claim 'projection.head.r >= 0.5' on run {regression_run.name}",
            f"INFO neuron_claims.yaml:1 claim 'projection.prediction.r > 0' on run {regression_run.name}",
            f"INFO neuron_claims.yaml:1 claim 'projection.prediction.r <= 1' on run {regression_run.name}",
            f"INFO neuron_claims.yaml:2 claim 'projection.live.r >= 2' on run {regression_run.name}",
        ]
    )


def test_file_options_set_the_analysis_options_of_its_claims(pytester: pytest.Pytester, regression_run: Path) -> None:
    pytester.makefile(
        ".yaml",
        neuron_claims="""\
options:
  max_samples: 10
  factors: [0, 1, 2]
  n_resamples: 50
projection.head.n: "== 10"
patching.n_texts: "== 10"
""",
        neuron_claims_default='projection.head.n: "> 10"\n',
    )
    result = pytester.runpytest_inprocess(f"--neuron-run={regression_run}", "-v")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["*patching of * (10 texts x 3 scale factors)*"])


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ("factor: [1, 2]", "*neuron_claims.yaml:2 [[]options.factor[]]: options: unknown option(s) 'factor'*"),
        ("max_samples: 0", "*neuron_claims.yaml:2 [[]options.max_samples[]]*expected a whole number >= 1, got 0*"),
        ("mode: set", "*neuron_claims.yaml:2 [[]options.mode[]]: options(mode='set') needs factors=[[]...[]]*"),
    ],
)
def test_bad_file_options_are_a_collection_error(
    pytester: pytest.Pytester, regression_run: Path, options: str, message: str
) -> None:
    pytester.makefile(".yaml", neuron_claims=f'options:\n  {options}\nprojection.head.r: ">= 0"\n')
    result = pytester.runpytest_inprocess(f"--neuron-run={regression_run}")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([message])
