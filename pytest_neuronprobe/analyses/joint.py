"""Both analyses of a run, sharing one clean forward pass where they analyse the same texts."""

from __future__ import annotations

from typing import Any, Callable

from pytest_neuronprobe.analyses.patching import PatchingResult, analyze_patching, patching_options, patching_result, patching_texts, sweep_patches
from pytest_neuronprobe.core.probe import Probe
from pytest_neuronprobe.analyses.projection import ProjectionResult, analyze_projection, projection_options, projection_pass


def shares_texts(projection: dict[str, Any], patching: dict[str, Any]) -> bool:
    """Whether the two analyses read the same texts (patching's default texts, same sampling)."""
    return patching["texts"] is None and all(projection[k] == patching[k] for k in ("max_samples", "split", "seed"))


def analyze(probe: Probe, *, projection: dict[str, Any] | None = None, patching: dict[str, Any] | None = None,
            progress: Callable[[int], None] | None = None) -> tuple[ProjectionResult | None, PatchingResult | None]:
    """Run the analyses whose options are given (`{}` = defaults); one clean pass serves both when it can."""
    if projection is None or patching is None:
        proj = None if projection is None else analyze_projection(probe, progress=progress, **projection)
        patch = None if patching is None else analyze_patching(probe, progress=progress, **patching)
        return proj, patch
    p_opts, q_opts = projection_options(**projection), patching_options(**patching)
    if not shares_texts(p_opts, q_opts):
        return (analyze_projection(probe, progress=progress, **projection),
                analyze_patching(probe, progress=progress, **patching))
    texts, used_split = patching_texts(probe, q_opts)
    reads = projection_pass(probe, texts, p_opts["input_hook"])
    sweep = sweep_patches(probe, texts, q_opts["mode"], q_opts["factors"], batch_size=q_opts["batch_size"],
                          method=q_opts["method"], also_read=reads.hooks, on_clean=reads.add, progress=progress)
    proj = analyze_projection(probe, reads=reads, **projection)
    return proj, patching_result(probe, texts, used_split, sweep, q_opts)
