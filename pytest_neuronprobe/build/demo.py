"""The demo: four probe runs (linear, hidden-layer, classification, token heads) on a small trained LM."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from pytest_neuronprobe.build.lm import demo_lm
from pytest_neuronprobe.build.log import log
from pytest_neuronprobe.build.make_run import make_run

__all__ = ["DEMO_RUNS", "build_demo"]

#: (run directory name template, make_run options) of the demo runs, all on the same neuron.
DEMO_RUNS: list[tuple[str, dict[str, Any]]] = [
    ("regression-linear-neuron_l{layer}_n{neuron}-seed{seed}", {"head_type": "regression"}),
    ("regression-hidden32-neuron_l{layer}_n{neuron}-seed{seed}", {"head_type": "regression", "hidden_dim": 32}),
    ("classification-5bins-neuron_l{layer}_n{neuron}-seed{seed}", {"head_type": "classification", "n_bins": 5}),
    ("token-ft1-neuron_l{layer}_n{neuron}-seed{seed}", {"head_type": "token", "finetune_layers": 1}),
]


def build_demo(
    out_dir: str | os.PathLike[str] = "demo_runs",
    cache_dir: str | os.PathLike[str] = ".neuronprobe/demo_lm",
    progress: bool = True,
) -> list[Path]:
    """Build (or reuse) the demo LM in `cache_dir` and the four demo runs in `out_dir`; return the run dirs.

    The target is the middle layer's most variable MLP neuron (by activation variance over the train
    texts at the last token), read from ~600 generated texts. Runs already built with the same
    parameters, texts and model (their `neuronprobe_build.json`) are reused as they are.
    """
    start = time.perf_counter()
    lm_dir = demo_lm(cache_dir, progress=progress)
    from pytest_neuronprobe.core.models import load_model

    layer = load_model(str(Path(lm_dir).resolve())).n_layers // 2
    paths: list[Path] = []
    for template, options in DEMO_RUNS:
        paths.append(
            make_run(
                out_dir,
                base_model=lm_dir,
                layer=layer,
                neuron=None,
                name=template,
                seed=0,
                progress=progress,
                reuse=True,
                **options,
            )
        )
    log(f"demo runs ready in {time.perf_counter() - start:.1f}s:", progress)
    for p in paths:
        log(f"  {p}", progress)
    return paths
