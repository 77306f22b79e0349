"""The cost of the control task and the input probe, measured in one run beside the projection analysis.

For each demo run (built or reused with `build_demo`: ~600 texts, 480 train / 120 analysed): the default
projection analysis, then the default control analysis (5 shuffles; a train-split and an analysed-split
pass plus the fits), each timed once after a warm-up of the model; the ratio is control / projection.

Usage: python benchmarks/bench_control.py [--threads 2]
"""

from __future__ import annotations

import argparse
import time

import torch

from pytest_neuronprobe.analyses.control import analyze_control
from pytest_neuronprobe.analyses.projection import analyze_projection
from pytest_neuronprobe.build.demo import build_demo
from pytest_neuronprobe.core.probe import open_probe
from pytest_neuronprobe.core.runs import load_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{'run':<48} {'projection s':>12} {'control s':>10} {'ratio':>6}  control")
    for path in build_demo(progress=False):
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


if __name__ == "__main__":
    main()
