"""The report's cost, measured on 8 runs (issue #11: a fast and small report).

The demo suite (`pytest example_suites`) over 8 demo-sized runs of one neuron (built once with
`make_run` on the demo LM, seeds 0-7, shared with bench_scale.py under .neuronprobe/bench_scale/runs),
with a warm analysis cache (a fresh cache directory, filled by a first session):

- without --neuron-report (the reference session wall time, best of 2);
- with --neuron-report into a fresh directory (cold: every figure rendered), once with figures
  rendered in this process (NEURONPROBE_REPORT_WORKERS=1) and once with the default (worker processes);
- with --neuron-report into the same directory again (warm: no figure changed, none rendered).

Report writing is timed inside the session (a tiny plugin wraps report.files.write_report); the
targets: cold <= 1 s per run, a warm session <= 1.2x the session without the report, index.html <= 2 MB.

Usage: python benchmarks/bench_report.py [--threads 2]
Needs `neuronprobe demo` (or `make demo`) to have built .neuronprobe/demo_lm first.
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
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_scale import eight_runs, log  # noqa: E402  (the same 8 runs)

TIMER = """
import time
import pytest_neuronprobe.report.files as files

_real = files.write_report


def _timed(*args, **kwargs):
    start = time.perf_counter()
    try:
        return _real(*args, **kwargs)
    finally:
        print(f"\\nbench: write_report took {time.perf_counter() - start:.3f} s", flush=True)


files.write_report = _timed
"""
TOOK = re.compile(r"bench: write_report took ([0-9.]+) s")
N_RUNS = 8


def session(
    runs: Path, args: list[str], plugin_dir: Path, threads: int, workers: str = ""
) -> tuple[float, float | None]:
    """(session wall s, write_report s or None) of one `pytest example_suites` over the runs."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    env["PYTHONPATH"] = os.pathsep.join([str(plugin_dir), env.get("PYTHONPATH", "")])
    env.pop("NEURONPROBE_REPORT_WORKERS", None)
    if workers:
        env["NEURONPROBE_REPORT_WORKERS"] = workers
    pattern = str(runs.relative_to(ROOT) / "*")
    cmd = [sys.executable, "-m", "pytest", "example_suites", "-q", "-p", "no:randomly", "-p", "bench_report_timer"]
    cmd += ["--neuron-run", pattern, *args]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode not in (0, 1):
        log(proc.stdout[-3000:] + proc.stderr[-3000:])
        raise SystemExit(f"pytest exited {proc.returncode}: {' '.join(cmd)}")
    found = TOOK.search(proc.stdout)
    return wall, float(found.group(1)) if found else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    opts = parser.parse_args()
    log("building / reusing 8 demo-sized runs …")
    runs = eight_runs()
    work = Path(tempfile.mkdtemp(prefix="neuronprobe-bench-report-"))
    try:
        (work / "bench_report_timer.py").write_text(TIMER, encoding="utf-8")
        cache = [f"--neuron-cache-dir={work / 'cache'}"]
        log("filling the analysis cache …")
        session(runs, cache, work, opts.threads)
        log("sessions without the report …")
        plain = min(session(runs, cache, work, opts.threads)[0] for _ in range(2))
        log("cold reports …")
        serial = session(runs, [*cache, f"--neuron-report={work / 'serial'}"], work, opts.threads, workers="1")
        cold = session(runs, [*cache, f"--neuron-report={work / 'report'}"], work, opts.threads)
        log("warm report …")
        warm = session(runs, [*cache, f"--neuron-report={work / 'report'}"], work, opts.threads)
        size = (work / "report" / "index.html").stat().st_size
        pngs = sum(p.stat().st_size for p in (work / "report").rglob("*.png"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report(plain, serial, cold, warm, size, pngs)


def report(
    plain: float,
    serial: tuple[float, float | None],
    cold: tuple[float, float | None],
    warm: tuple[float, float | None],
    size: int,
    pngs: int,
) -> None:
    def per_run(t: float | None) -> str:
        return "?" if t is None else f"{t:6.2f} s ({t / N_RUNS:.2f} s per run)"

    print(f"report over {N_RUNS} runs (example_suites, warm analysis cache, {os.cpu_count()} CPU core(s)):")
    print(f"  session without the report:      wall {plain:6.1f} s")
    print(f"  cold report, figures in-process: wall {serial[0]:6.1f} s; write_report {per_run(serial[1])}")
    print(f"  cold report, worker processes:   wall {cold[0]:6.1f} s; write_report {per_run(cold[1])}")
    print(f"  warm report (no figure changed): wall {warm[0]:6.1f} s; write_report {per_run(warm[1])}")
    best = min(t for t in (serial[1], cold[1]) if t is not None) if serial[1] or cold[1] else None
    print(f"  targets: cold <= 1 s per run: {per_run(best)}")
    print(f"           warm session <= 1.2 x without: {warm[0] / plain:.2f} x")
    print(f"           index.html <= 2 MB: {size / 1e6:.3f} MB (the PNGs next to it: {pngs / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
