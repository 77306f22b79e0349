"""Scale, measured in one run (issue #5: caching and scale).

(a) cold vs warm: the demo suite (`pytest example_suites --neuron-run 'demo_runs/*'`) twice with a fresh
    on-disk cache directory; the analysis time is read from the session's terminal line
    "neuronprobe: analyses took X s (Y of Z from cache)", the wall time of each session is shown too.
(b) serial vs `-n 2`: the same suite over 8 demo-sized runs (built once with `builder.make_run` on the demo
    LM `.neuronprobe/demo_lm`, seeds 0-7, under .neuronprobe/bench_scale/), without the cache; then over 8
    runs of 10,000 texts each (2,000 analysed), where the analyses, not process start-up, take the time.
(c) memory: peak extra resident memory (ru_maxrss after - before the default analyses, in a fresh
    subprocess each) for 500 vs 20,000 texts on the GPT-2-small-shaped local model of bench_analyses.py.

Usage: python benchmarks/bench_scale.py [--parts abc] [--big 20000] [--sweep-texts 10000] [--threads 2]
Needs `neuronprobe demo` (or `make demo`) to have built demo_runs/ and .neuronprobe/demo_lm first.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / ".neuronprobe" / "bench_scale"
TIME_LINE = re.compile(r"neuronprobe: analyses took ([0-9.]+) s \((\d+) of (\d+) from cache\)")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def pytest_session(args: list[str], threads: int) -> tuple[float, float, int, int, int]:
    """(wall s, analysis s, analyses from cache, analyses, exit code) of one `pytest example_suites ...`."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    cmd = [sys.executable, "-m", "pytest", "example_suites", "-p", "no:randomly", *args]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    match = TIME_LINE.search(proc.stdout)
    if match is None:
        log(proc.stdout[-3000:] + proc.stderr[-3000:])
        raise SystemExit(f"no 'analyses took' line from: {' '.join(cmd)}")
    return wall, float(match.group(1)), int(match.group(2)), int(match.group(3)), proc.returncode


def part_a(threads: int) -> None:
    cache = Path(tempfile.mkdtemp(prefix="neuronprobe-bench-cache-"))
    try:
        args = ["--neuron-run", "demo_runs/*", f"--neuron-cache-dir={cache}"]
        cold = pytest_session(args, threads)
        warm = pytest_session(args, threads)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    print("(a) demo suite (example_suites, 4 demo runs), fresh cache dir, run twice:")
    for name, (wall, took, hit, n, rc) in (("cold", cold), ("warm", warm)):
        print(f"    {name}: analyses {took:7.2f} s ({hit} of {n} from cache); session wall {wall:6.1f} s; exit {rc}")
    share = warm[1] / cold[1] if cold[1] > 0 else float("nan")
    print(
        f"    warm analysis time = {share:.1%} of cold (target <= 5%); "
        f"session wall cold/warm: {cold[0] / warm[0]:.2f} x"
    )


def eight_runs(n_texts: int | None = None) -> Path:
    """8 linear-head runs on the demo LM (seeds 0-7): demo-sized (600 texts), or `n_texts` texts each."""
    sys.path.insert(0, str(ROOT))
    from pytest_neuronprobe.build.make_run import make_run

    runs = WORK / ("runs" if n_texts is None else f"runs{n_texts}")
    lm = ROOT / ".neuronprobe" / "demo_lm"
    if not (lm / "config.json").is_file():
        raise SystemExit("no demo LM: run `neuronprobe demo` (or `make demo`) first")
    size = {} if n_texts is None else {"n_texts": n_texts}
    for seed in range(8):
        make_run(
            runs,
            base_model=lm,
            layer=2,
            neuron=3,
            seed=seed,
            reuse=True,
            name="regression-linear-neuron_l{layer}_n{neuron}-seed{seed}",
            **size,
        )
    return runs


def sweep(title: str, runs: Path, threads: int) -> None:
    pattern = str(runs.relative_to(ROOT) / "*")
    args = ["--neuron-run", pattern, "--neuron-no-cache"]
    serial = pytest_session(args, threads)
    parallel = pytest_session([*args, "-n", "2"], max(1, threads // 2))
    print(f"    {title}:")
    print(f"      serial: session wall {serial[0]:6.1f} s (analyses {serial[1]:.1f} s); exit {serial[4]}")
    print(
        f"      -n 2:   session wall {parallel[0]:6.1f} s (analyses {parallel[1]:.1f} s summed over workers); "
        f"exit {parallel[4]}"
    )
    print(f"      serial / -n 2 (wall): {serial[0] / parallel[0]:.2f} x  (on {os.cpu_count()} CPU core(s))")


def part_b(threads: int, big_texts: int) -> None:
    log("building / reusing 8 demo-sized runs …")
    demo_sized = eight_runs()
    log(f"building / reusing 8 runs of {big_texts} texts …")
    larger = eight_runs(big_texts)
    print("(b) demo suite over 8 runs sharing one base model, no cache, serial vs -n 2 (one run's tests per worker):")
    sweep("8 demo-sized runs (600 texts, 120 analysed each)", demo_sized, threads)
    sweep(f"8 runs of {big_texts} texts ({big_texts // 5} analysed each)", larger, threads)


MEASURE = r"""
import json, resource, sys, time
sys.path.insert(0, {bench!r}); sys.path.insert(0, {root!r})
import torch
torch.set_num_threads({threads})
from bench_analyses import CACHE, gpt2_small, make_run
from pytest_neuronprobe.analyses.joint import analyze
from pytest_neuronprobe.analyses.options import PatchingOptions, ProjectionOptions
from pytest_neuronprobe.core.probe import open_probe
from pytest_neuronprobe.core.runs import load_run
run = load_run(make_run(gpt2_small(CACHE / "gpt2-small-shaped"), {n}))
if {build_only}:
    print(json.dumps({{"built": str(run.path)}})); raise SystemExit
probe = open_probe(run, "cpu")
texts = run.analysed()["text"].tolist()
probe.read(texts[:8], [probe.neuron_hook])  # warm-up: lazy allocations before the baseline
import gc; gc.collect()

def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return None

# Loading the model peaks higher than a small analysis: reset the high-water mark (Linux clear_refs 5)
# so VmHWM after the analysis is the analysis' own peak; ru_maxrss (not reset) is kept as well.
try:
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    reset = True
except OSError:
    reset = False
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
rss_before = status("VmRSS")
start = time.perf_counter()
proj, patch = analyze(probe, ProjectionOptions(), PatchingOptions())
took = time.perf_counter() - start
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
hwm = status("VmHWM")
weights_mib = sum(p.numel() * p.element_size() for p in probe.model.bridge.parameters()) / 2**20
print(json.dumps({{"n": proj.n, "weights_mib": weights_mib, "before_kib": before, "after_kib": after,
                  "rss_before_kib": rss_before,
                  "hwm_after_kib": hwm if reset else None, "seconds": took}}))
"""


def measure(n: int, threads: int, build_only: bool = False) -> dict:
    import json

    code = MEASURE.format(bench=str(ROOT / "benchmarks"), root=str(ROOT), threads=threads, n=n, build_only=build_only)
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        log(proc.stdout[-3000:] + proc.stderr[-3000:])
        raise SystemExit(f"memory measurement for {n} texts failed")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def part_c(big: int, threads: int) -> None:
    rows = []
    for n in (500, big):
        log(f"building / reusing the {n}-text GPT-2-small-shaped run (separate process) …")
        measure(n, threads, build_only=True)
        log(f"measuring {n} texts …")
        rows.append(measure(n, threads))
    print(
        "(c) peak extra resident memory of the default analyses (projection + patching, one clean pass), "
        "GPT-2-small-shaped model, CPU:"
    )
    extras = []
    for r in rows:
        maxrss = (r["after_kib"] - r["before_kib"]) / 1024
        if r.get("hwm_after_kib") is not None:
            extra = (r["hwm_after_kib"] - r["rss_before_kib"]) / 1024
            how = f"VmHWM (reset) - VmRSS before; ru_maxrss grew {maxrss:.1f} MiB"
        else:
            extra, how = maxrss, "ru_maxrss after - before"
        extras.append(extra)
        peak = r["hwm_after_kib"] / 1024 if r.get("hwm_after_kib") is not None else float("nan")
        print(
            f"    {r['n']:6d} texts: +{extra:8.1f} MiB over {r['rss_before_kib'] / 1024:.0f} MiB resident after "
            f"loading, peak {peak:.0f} MiB ({how}); analysis {r['seconds']:.1f} s"
        )
    print(
        f"    {rows[1]['n'] / rows[0]['n']:.0f} x the texts -> {extras[1] / max(extras[0], 1e-9):.1f} x "
        f"the extra memory; model weights {rows[0]['weights_mib']:.0f} MiB; target: extra < 1024 MiB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="abc", help="which parts to run (default abc)")
    parser.add_argument("--big", type=int, default=20000, help="texts of the large memory run (default 20000)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads per process (default 2)")
    parser.add_argument(
        "--sweep-texts", type=int, default=10000, help="texts per run of the larger sweep in (b) (default 10000)"
    )
    args = parser.parse_args()
    if "a" in args.parts:
        part_a(args.threads)
    if "b" in args.parts:
        part_b(args.threads, args.sweep_texts)
    if "c" in args.parts:
        part_c(args.big, args.threads)


if __name__ == "__main__":
    main()
