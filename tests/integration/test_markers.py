"""@pytest.mark.projection / patching (analysis options) and @pytest.mark.neuron_run (pins a run)."""

from __future__ import annotations

from pathlib import Path

import pytest


def test_projection_marker_options_reach_the_analysis(pytester: pytest.Pytester, regression_run: Path) -> None:
    pytester.makepyfile("""
        import pytest

        @pytest.mark.projection(max_samples=5, n_resamples=40, null_directions=7, seed=3, input_hook="resid_pre")
        def test_options(projection):
            assert projection.n == 5
            assert projection.options["n_resamples"] == 40
            assert projection.options["input_hook"] == "resid_pre"
            assert projection.options["seed"] == 3
            assert projection.null.random.n_null == 7

        @pytest.mark.projection(split="all", n_resamples=0, null_directions=0)
        def test_split_all(projection, neuron_run):
            assert projection.split == "all"
            assert projection.n == len(neuron_run.data)
            assert projection.null is None
    """)
    result = pytester.runpytest_inprocess(f"--neuron-run={regression_run}")
    result.assert_outcomes(passed=2)


def test_patching_marker_options_reach_the_analysis(pytester: pytest.Pytester, regression_run: Path) -> None:
    pytester.makepyfile("""
        import pytest

        @pytest.mark.patching(mode="set", factors=[0.0, 1.0], max_samples=4, n_resamples=20, method="full")
        def test_set(patching):
            assert patching.mode == "set"
            assert patching.factors == (0.0, 1.0)
            assert patching.n_texts == 4
            assert patching.options["method"] == "full"

        @pytest.mark.patching(texts=["one two three", "4 5 6"], factors=[0.5, 1.5], n_resamples=0)
        def test_texts(patching):
            assert [p.text for p in patching.per_input] == ["one two three", "4 5 6"]
    """)
    result = pytester.runpytest_inprocess(f"--neuron-run={regression_run}")
    result.assert_outcomes(passed=2)


def test_same_options_share_one_analysis_different_ones_do_not(pytester: pytest.Pytester, regression_run: Path) -> None:
    pytester.makepyfile("""
        import pytest

        @pytest.mark.projection(n_resamples=30, null_directions=5)
        def test_a(projection):
            pass

        @pytest.mark.projection(null_directions=5, n_resamples=30)
        def test_b(projection):
            pass

        @pytest.mark.projection(n_resamples=31, null_directions=5)
        def test_c(projection):
            pass
    """)
    result = pytester.runpytest_inprocess(f"--neuron-run={regression_run}")
    result.assert_outcomes(passed=3)
    lines = [line for line in result.outlines if line.startswith("neuronprobe: projection of")]
    assert len(lines) == 2, lines
    assert "30 resamples" in lines[0] and "31 resamples" in lines[1]


@pytest.mark.parametrize(
    "marker, message",
    [
        (
            "projection(n_resample=10)",
            "*@pytest.mark.projection got unknown keyword(s) 'n_resample'; accepted: input_hook, max_samples, split, "
            "n_resamples, seed, null_directions*",
        ),
        (
            "patching(factor=[1.0])",
            "*@pytest.mark.patching got unknown keyword(s) 'factor'; accepted: mode, factors, texts, max_samples, "
            "split, n_resamples, seed, method*",
        ),
        ("projection(10)", "*@pytest.mark.projection takes keyword arguments only*"),
        (
            "projection(max_samples=0)",
            "*@pytest.mark.projection(max_samples=...): expected a whole number >= 1, got 0*",
        ),
        (
            "patching(mode='multiply')",
            "*@pytest.mark.patching(mode=...): expected one of scale, set, add, got 'multiply'*",
        ),
        ("patching(mode='set')", "*@pytest.mark.patching(mode='set') needs factors=[[]...[]]*"),
        ("neuron_run()", "*@pytest.mark.neuron_run needs one or more run paths*"),
        ("neuron_run('x', device='cpu')", "*@pytest.mark.neuron_run got unknown keyword(s) 'device'*"),
    ],
)
def test_bad_marker_is_a_usage_error(pytester: pytest.Pytester, marker: str, message: str) -> None:
    pytester.makepyfile(f"""
        import pytest

        @pytest.mark.{marker}
        def test_x(projection):
            pass
    """)
    result = pytester.runpytest_inprocess()
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([message])
    assert "usage error in test_bad_marker_is_a_usage_error.py::test_x: @pytest.mark." in result.stdout.str()


def test_every_marker_error_of_a_session_is_reported_at_once(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_a="""
        import pytest

        @pytest.mark.projection(max_samples=0)
        @pytest.mark.patching(mode="multiply")
        def test_both_wrong(projection):
            pass

        def test_fine():
            pass

        @pytest.mark.neuron_run()
        def test_no_path(projection):
            pass
        """,
        test_b="""
        import pytest

        @pytest.mark.projection("positional")
        def test_positional(projection):
            pass
        """,
    )
    result = pytester.runpytest_inprocess()
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.assert_outcomes(errors=3)
    result.stdout.fnmatch_lines_random(
        [
            "*usage error in test_a.py::test_both_wrong: @pytest.mark.projection(max_samples=...)*",
            "*usage error in test_a.py::test_both_wrong: @pytest.mark.patching(mode=...)*",
            "*usage error in test_a.py::test_no_path: @pytest.mark.neuron_run needs one or more run paths*",
            "*usage error in test_b.py::test_positional: @pytest.mark.projection takes keyword arguments only*",
            "*Interrupted: 3 errors during collection*",
        ]
    )


def test_markers_are_registered(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_inprocess("--markers")
    result.stdout.fnmatch_lines(
        [
            "@pytest.mark.projection(**options): options of the projection analysis*",
            "@pytest.mark.patching(**options): options of the patching analysis*",
            "@pytest.mark.neuron_run(path, ...): run this test on these run directories*",
        ]
    )
    pytester.makepyfile("""
        import pytest

        @pytest.mark.projection(n_resamples=10)
        @pytest.mark.patching(n_resamples=10)
        @pytest.mark.neuron_run("somewhere")
        def test_marked():
            pass
    """)
    pytester.runpytest_inprocess("--strict-markers").assert_outcomes(passed=1)


def test_neuron_run_marker_pins_the_run(pytester: pytest.Pytester, two_runs: list[Path]) -> None:
    pinned, other = two_runs
    (pytester.path / "runs").mkdir()
    (pytester.path / "runs" / pinned.name).symlink_to(pinned, target_is_directory=True)
    pytester.makepyfile(f"""
        import pytest

        @pytest.mark.neuron_run("runs/{pinned.name}")
        def test_pinned(neuron_run):
            assert neuron_run.name == "{pinned.name}"

        def test_follows_the_option(neuron_run):
            assert neuron_run.name == "{other.name}"
    """)
    # Without --neuron-run, the pinned test still runs; the other is skipped.
    result = pytester.runpytest_inprocess("-v")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines([f"*test_pinned[[]{pinned.name}[]] PASSED*"])
    # With --neuron-run, the marker still wins for the pinned test.
    result = pytester.runpytest_inprocess(f"--neuron-run={other}", "-v")
    result.assert_outcomes(passed=2)


def test_neuron_run_marker_with_a_missing_path(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
        import pytest

        @pytest.mark.neuron_run("no/such/run")
        def test_pinned(neuron_run):
            pass
    """)
    result = pytester.runpytest_inprocess()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*@pytest.mark.neuron_run in *test_pinned: *no such run directory*"])
