"""Both analyses of a run, sharing one clean forward pass where they analyse the same texts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from pytest_neuronprobe.analyses.options import PatchingOptions, Progress, ProjectionOptions
from pytest_neuronprobe.analyses.patching import analyze_patching, direct_reason, patching_texts, sweep_patches
from pytest_neuronprobe.analyses.patching_fit import PatchingResult, patching_result
from pytest_neuronprobe.analyses.projection import (
    ProjectionResult,
    analyze_projection,
    projection_pass,
    projection_result,
)
from pytest_neuronprobe.core.probe import Probe


@dataclass(frozen=True)
class JointOptions:
    """Both analyses' options, analysed in one pass: one memo and cache entry for the pair."""

    kind: ClassVar[str] = "projection+patching"

    projection: ProjectionOptions
    patching: PatchingOptions


def shares_texts(projection: ProjectionOptions, patching: PatchingOptions) -> bool:
    """Whether the two analyses read the same texts (patching's default texts, same sampling)."""
    return patching.texts is None and all(
        getattr(projection, k) == getattr(patching, k) for k in ("max_samples", "split", "seed")
    )


def analyze(
    probe: Probe,
    projection: ProjectionOptions | None = ProjectionOptions(),
    patching: PatchingOptions | None = PatchingOptions(),
    *,
    progress: Progress | None = None,
) -> tuple[ProjectionResult | None, PatchingResult | None]:
    """Both analyses (default options), or those whose options are given (None: not that one); one clean
    forward pass serves both when they read the same texts."""
    if projection is None or patching is None or not shares_texts(projection, patching):
        proj = None if projection is None else analyze_projection(probe, projection, progress)
        patch = None if patching is None else analyze_patching(probe, patching, progress)
        return proj, patch
    texts, used_split = patching_texts(probe, patching)
    reads = projection_pass(probe, texts, projection.input_hook)
    sweep = sweep_patches(
        probe,
        texts,
        patching.mode,
        patching.values,
        batch_size=patching.batch_size,
        method=patching.method,
        also_read=reads.hooks,
        on_clean=reads.add,
        progress=progress,
    )
    return projection_result(probe, projection, reads), patching_result(
        probe, texts, used_split, sweep, patching, direct_reason(probe)
    )
