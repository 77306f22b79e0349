"""pytest-neuronprobe: interpretability analyses of trained neuron probe heads as pytest assertions.

The same analyses outside pytest (notebooks, scripts)::

    from pytest_neuronprobe import load_run, open_probe, analyze, write_report, run_report

    probe = open_probe(load_run("runs/regression-neuron_l8_n481"))
    projection, patching = analyze(probe)            # both analyses, one clean forward pass
    print(projection.head.r, patching.slope)
    write_report("reports/", [run_report(probe, projection, patching)])

Names are imported on first use, so `import pytest_neuronprobe` (and the pytest plugin) stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from pytest_neuronprobe.core.version import __version__

if TYPE_CHECKING:  # pragma: no cover
    from pytest_neuronprobe.analyses.control import ControlResult, analyze_control
    from pytest_neuronprobe.analyses.fits import LinearFit
    from pytest_neuronprobe.analyses.joint import analyze
    from pytest_neuronprobe.analyses.nulls import NullComparison
    from pytest_neuronprobe.analyses.options import ControlOptions, PatchingOptions, ProjectionOptions
    from pytest_neuronprobe.analyses.patching import analyze_patching
    from pytest_neuronprobe.analyses.patching_fit import PatchingResult
    from pytest_neuronprobe.analyses.projection import ProjectionResult, analyze_projection
    from pytest_neuronprobe.analyses.stats import Correlation, Undefined
    from pytest_neuronprobe.core.errors import NeuronProbeError
    from pytest_neuronprobe.core.probe import Probe, open_probe
    from pytest_neuronprobe.core.runs import Run, load_run
    from pytest_neuronprobe.pytest.assertion import assert_claim
    from pytest_neuronprobe.report.files import RunReport, write_report
    from pytest_neuronprobe.report.summary import run_report

#: Public name -> the module that defines it.
_HOMES = {
    "load_run": "core.runs",
    "Run": "core.runs",
    "open_probe": "core.probe",
    "Probe": "core.probe",
    "NeuronProbeError": "core.errors",
    "ProjectionOptions": "analyses.options",
    "PatchingOptions": "analyses.options",
    "analyze_projection": "analyses.projection",
    "ProjectionResult": "analyses.projection",
    "analyze_patching": "analyses.patching",
    "PatchingResult": "analyses.patching_fit",
    "analyze": "analyses.joint",
    "ControlOptions": "analyses.options",
    "analyze_control": "analyses.control",
    "ControlResult": "analyses.control",
    "Correlation": "analyses.stats",
    "Undefined": "analyses.stats",
    "LinearFit": "analyses.fits",
    "NullComparison": "analyses.nulls",
    "run_report": "report.summary",
    "RunReport": "report.files",
    "write_report": "report.files",
    "assert_claim": "pytest.assertion",
}
__all__ = ["__version__", *_HOMES]


def __getattr__(name: str) -> object:
    if name not in _HOMES:
        raise AttributeError(f"module 'pytest_neuronprobe' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"pytest_neuronprobe.{_HOMES[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
