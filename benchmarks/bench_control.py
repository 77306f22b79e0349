"""The cost of the control task and the input probe, measured in one run beside the projection analysis.

For each demo run (built or reused with `build_demo`: ~600 texts, 480 train / 120 analysed; `--tiny`: the
same four head kinds on the tests' 2-layer tiny LM, 600 texts, under .neuronprobe/bench_control/): the
default projection analysis, then the default control analysis (5 shuffles; a train-split and an
analysed-split pass plus the fits), each timed once after a warm-up; the ratio is control / projection.

Usage: python benchmarks/bench_control.py [--threads 2] [--tiny]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from pytest_neuronprobe.analyses.control import analyze_control
from pytest_neuronprobe.analyses.projection import analyze_projection
from pytest_neuronprobe.build.demo import DEMO_RUNS, build_demo
from pytest_neuronprobe.build.lm import tiny_lm
from pytest_neuronprobe.build.make_run import make_run
from pytest_neuronprobe.core.probe import open_probe
from pytest_neuronprobe.core.runs import load_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tiny", action="store_true", help="the tests' tiny LM instead of the demo LM")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{'run':<48} {'projection s':>12} {'control s':>10} {'ratio':>6}  control")
    for path in tiny_runs() if args.tiny else build_demo(progress=False):
        probe = open_probe(load_run(path), "cpu")
        analyze_projection(probe)  # warm-up: tokenisation memo, first-call costs
        start = time.perf_counter()
        analyze_projection(probe)
        projection = time.perf_counter() - start
        start = time.perf_counter()
        result = analyze_control(probe)
        control = time.perf_counter() - start
        c = result.control
        what = f"r {c.r:.3f}, selectivity {c.selectivity:.3f}" if c.defined else "undefined (token head)"
        print(
            f"{path.name:<48} {projection:>12.2f} {control:>10.2f} {control / projection:>6.2f}  {what}; "
            f"input probe r {result.input_probe.r:.3f}; {c.n_train} train texts, {c.fit or '-'}"
        )


def tiny_runs() -> list[Path]:
    work = Path(__file__).resolve().parents[1] / ".neuronprobe" / "bench_control"
    lm = work / "tiny_lm"
    if not lm.is_dir():
        tiny_lm(lm, seed=0)
    return [
        make_run(work / "runs", base_model=lm, layer=1, name=name, n_texts=600, seed=0, reuse=True, **options)
        for name, options in DEMO_RUNS
    ]


if __name__ == "__main__":
    main()
