"""The fixtures: what they return, that heavy work happens once per session, and `pytest --fixtures`."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import FAST_PATCHING, FAST_PROJECTION


def test_fixtures_return_the_documented_objects(pytester: pytest.Pytester, regression_run: Path) -> None:
    pytester.makepyfile(f"""
        import pandas as pd
        import pytest
        from pytest_neuronprobe.core.heads import Head
        from pytest_neuronprobe.core.models import LoadedModel
        from pytest_neuronprobe.analyses.patching_fit import PatchingResult
        from pytest_neuronprobe.analyses.projection import ProjectionResult
        from pytest_neuronprobe.core.runs import Run

        def test_run(neuron_run):
            assert isinstance(neuron_run, Run)
            assert neuron_run.name == "{regression_run.name}"

        def test_head(probe_head, hooked_model):
            assert isinstance(probe_head, Head)
            assert isinstance(hooked_model, LoadedModel)
            assert str(hooked_model.device) == "cpu"

        def test_dataset(neuron_dataset, neuron_run):
            assert isinstance(neuron_dataset, pd.DataFrame)
            assert list(neuron_dataset.columns[:2]) == ["text", "activation"]
            assert len(neuron_dataset) == len(neuron_run.analysed())

        {FAST_PROJECTION}
        def test_projection(projection, neuron_dataset):
            assert isinstance(projection, ProjectionResult)
            assert projection.n == len(neuron_dataset)

        {FAST_PATCHING}
        def test_patching(patching):
            assert isinstance(patching, PatchingResult)
            assert patching.factors == (0.0, 1.0, 2.0)

        def test_baseline_skips_without_one(neuron_baseline):
            raise AssertionError("unreachable")
    """)
    result = pytester.runpytest_inprocess(f"--neuron-run={regression_run}", "-rs")
    result.assert_outcomes(passed=5, skipped=1)
    result.stdout.fnmatch_lines(["*SKIPPED*no --neuron-baseline given*"])


def test_heavy_work_once_per_session_and_progress_lines(pytester: pytest.Pytester, two_runs: list[Path]) -> None:
    pytester.makepyfile(f"""
        import pytest

        {FAST_PROJECTION}
        def test_one(projection):
            pass

        {FAST_PROJECTION}
        def test_two(projection, hooked_model):
            pass

        {FAST_PROJECTION}
        class TestThree:
            def test_three(self, projection):
                pass
    """)
    args = [f"--neuron-run={run}" for run in two_runs]
    result = pytester.runpytest_inprocess(*args)
    result.assert_outcomes(passed=6)
    for run in two_runs:
        lines = [line for line in result.outlines if line.startswith(f"neuronprobe: projection of {run.name} ")]
        assert len(lines) == 1, result.outlines
        assert lines[0].endswith(" s") and "(12 texts, test split, 50 resamples) … " in lines[0]
    result.stdout.fnmatch_lines(["neuronprobe: loaded *", "neuronprobe: projection of * … * s"])
    quiet = pytester.runpytest_inprocess(*args, "-q")
    quiet.assert_outcomes(passed=6)
    # -q: no progress lines; the terminal summary keeps its cache line
    said = [line for line in quiet.outlines if line.startswith("neuronprobe: ")]
    assert [line for line in said if not line.startswith("neuronprobe: analyses took ")] == [], said


def test_one_session_cache_serves_fixtures_and_claims(pytester: pytest.Pytester, regression_run: Path) -> None:
    pytester.makepyfile("""
        def test_default_projection(projection):
            assert projection.options["n_resamples"] == 1000
    """)
    pytester.makefile(".yaml", neuron_claims='projection.head.r: ">= 0"\n')
    result = pytester.runpytest_inprocess(f"--neuron-run={regression_run}")
    result.assert_outcomes(passed=2)
    assert len([line for line in result.outlines if line.startswith("neuronprobe: projection of")]) == 1


def test_fixtures_are_documented(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_inprocess("--fixtures")
    text = result.stdout.str()
    for name in (
        "neuron_run",
        "probe_head",
        "hooked_model",
        "neuron_dataset",
        "projection",
        "patching",
        "neuron_baseline",
    ):
        assert f"\n{name} -- " in text, name
    result.stdout.fnmatch_lines(
        [
            "projection -- *",
            "*def test_head_tracks_neuron(projection):*",
            "*assert projection.head.ci_low > 0.8*",
        ]
    )
    assert "_neuronprobe_run" not in text  # internal fixtures stay hidden without -v
