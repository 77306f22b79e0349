"""The public API (`pytest_neuronprobe.<name>`): every name resolves to its home, the import stays light,
and the README's notebook example works end to end on a tiny run."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

import pytest_neuronprobe

FAST_PROJECTION = {"n_resamples": 20, "null_directions": 5}
FAST_PATCHING = {"n_resamples": 20, "factors": (0.0, 1.0, 2.0)}


@pytest.mark.parametrize("name", [n for n in pytest_neuronprobe.__all__ if n != "__version__"])
def test_every_public_name_is_its_homes_object(name: str) -> None:
    home = importlib.import_module(f"pytest_neuronprobe.{pytest_neuronprobe._HOMES[name]}")
    assert getattr(pytest_neuronprobe, name) is getattr(home, name)


def test_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'analyse'"):
        _ = pytest_neuronprobe.analyse  # type: ignore[attr-defined]


@pytest.mark.parametrize("module", ["pytest_neuronprobe", "pytest_neuronprobe.pytest.plugin"])
def test_importing_the_package_or_the_plugin_loads_no_heavy_module(module: str) -> None:
    heavy = ("torch", "transformer_lens", "matplotlib", "pandas", "scipy")
    code = f"import sys, {module}; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_notebook_example_writes_a_report_with_the_analysed_numbers(regression_run: Path, tmp_path: Path) -> None:
    from pytest_neuronprobe import (
        PatchingOptions,
        ProjectionOptions,
        analyze,
        analyze_patching,
        load_run,
        open_probe,
        run_report,
        write_report,
    )

    probe = open_probe(load_run(regression_run), "cpu")
    projection, patching = analyze(probe, ProjectionOptions(**FAST_PROJECTION), PatchingOptions(**FAST_PATCHING))
    assert projection is not None and patching is not None
    alone = analyze_patching(probe, PatchingOptions(**FAST_PATCHING))
    assert alone.slope == pytest.approx(patching.slope, abs=1e-9)  # the shared pass gives the same slope
    files = write_report(tmp_path / "reports", [run_report(probe, projection, patching)])
    summary = json.loads(files.run_files[regression_run.name]["summary"].read_text(encoding="utf-8"))
    assert summary["projections"]["head"]["correlation"] == pytest.approx(float(projection.head.r), abs=1e-12)
    assert summary["patching"]["slope"] == pytest.approx(float(patching.slope), abs=1e-12)
    assert files.index_html.is_file() and all(
        p.stat().st_size > 0 for p in files.run_files[regression_run.name].values()
    )
