"""Compare a run's numbers with an earlier run's: tables and regression conditions.

Used by ``neuronprobe compare BASELINE CURRENT`` and by the plugin's terminal summary. Each side
is a summary.json file, a run's report directory holding ``summary.json``, or a report
directory holding ``<run>/summary.json`` per run. Runs are matched by ``summary["run"]["name"]``.

``--fail "METRIC OP RHS"`` describes a regression: the comparison fails (exit code 1) when the
condition holds for the current run's estimate, e.g.
``--fail "projection.head.r < baseline - 0.05"``. RHS is any claim expression (see
:mod:`pytest_neuronprobe.claims`), ``baseline`` being the same metric in the baseline run. A
condition whose metric (or baseline) is undefined or absent counts as failed, and says so.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence, TextIO

from pytest_neuronprobe.claims.verdicts import KNOWN_METRICS, Claim, Metric, _missing_message, _suggest, flatten, parse_claim
from pytest_neuronprobe.core.errors import NeuronProbeError

__all__ = [
    "HEADLINE_METRICS",
    "FailOutcome",
    "Row",
    "add_compare_parser",
    "check_fail",
    "compare_main",
    "compare_summaries",
    "diff_rows",
    "format_table",
    "load_summaries",
    "load_summary",
    "parse_fail",
]

HEADLINE_METRICS: tuple[str, ...] = (
    "projection.prediction.r",
    "projection.head.r",
    "projection.input.r",
    "projection.output.r",
    "projection.neuron_dir.r",
    "projection.live.r",
    "projection.weights.head_input",
    "projection.weights.head_output",
    "projection.weights.input_output",
    "projection.null.random.selectivity",
    "projection.null.neurons.selectivity",
    "patching.slope",
    "patching.intercept",
    "patching.r_squared",
    "patching.baseline_correlation",
    "patching.direct_slope",
)


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------


def _read_json(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise NeuronProbeError(f"cannot read summary: {exc.strerror or exc}", path=path) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise NeuronProbeError(f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}",
                               path=path) from None
    if not isinstance(data, dict):
        raise NeuronProbeError(f"expected a JSON object (a summary.json), got {type(data).__name__}",
                               path=path)
    if "projections" not in data and "patching" not in data:
        raise NeuronProbeError("not a neuronprobe summary.json (no 'projections' or 'patching' key)",
                               path=path)
    return data


def _run_name(summary: Mapping[str, Any], path: Path) -> str:
    run = summary.get("run")
    name = run.get("name") if isinstance(run, Mapping) else None
    if not isinstance(name, str) or not name:
        raise NeuronProbeError("expected run.name (a non-empty string)", path=path, key="run.name")
    return name


def load_summaries(path: str | Path) -> dict[str, dict[str, Any]]:
    """Summaries keyed by run name, from a summary.json file or a report directory.

    A directory is read as ``<dir>/summary.json`` if present, else ``<dir>/*/summary.json``.
    """
    path = Path(path)
    if path.is_dir():
        own = path / "summary.json"
        files = [own] if own.is_file() else sorted(path.glob("*/summary.json"))
        if not files:
            raise NeuronProbeError("no summary.json in this directory or its run subdirectories "
                                   "(expected <dir>/summary.json or <dir>/<run>/summary.json)", path=path)
    elif path.exists():
        files = [path]
    else:
        raise NeuronProbeError("no such file or directory", path=path)
    out: dict[str, dict[str, Any]] = {}
    where: dict[str, Path] = {}
    for file in files:
        summary = _read_json(file)
        name = _run_name(summary, file)
        if name in out:
            raise NeuronProbeError(f"run {name!r} appears twice (also in {where[name]})", path=file)
        out[name], where[name] = summary, file
    return out


def load_summary(path: str | Path) -> dict[str, Any]:
    """The one summary at ``path``; an error if ``path`` holds several runs."""
    summaries = load_summaries(path)
    if len(summaries) != 1:
        raise NeuronProbeError(f"holds {len(summaries)} runs ({', '.join(summaries)}); "
                               "use load_summaries or pick one run", path=path)
    return next(iter(summaries.values()))


# ---------------------------------------------------------------------------------------------
# Rows and tables
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One metric in both runs; ``None`` is undefined (or absent); ``delta = now - baseline``."""

    metric: str
    baseline: float | None
    now: float | None
    delta: float | None


def _metrics(d: Mapping[str, Any]) -> Mapping[str, Metric]:
    if d and all(isinstance(v, Metric) for v in d.values()):
        return d  # type: ignore[return-value]
    return flatten(d)


def _select(patterns: Sequence[str], available: Sequence[str]) -> list[str]:
    """Metric names for ``patterns`` (exact names or globs), in the order asked."""
    chosen: list[str] = []
    for pattern in patterns:
        if any(ch in pattern for ch in "*?["):
            hits = [m for m in available if fnmatch.fnmatchcase(m, pattern)]
            if not hits:
                raise NeuronProbeError(f"no metric matches {pattern!r}", key="--metric")
        elif pattern in available or pattern in KNOWN_METRICS:
            hits = [pattern]
        else:
            hint = _suggest(pattern, [*available, *KNOWN_METRICS])
            did = f"; did you mean {' or '.join(hint)}?" if hint else ""
            raise NeuronProbeError(f"unknown metric {pattern!r}{did}", key="--metric")
        chosen += [h for h in hits if h not in chosen]
    return chosen


def diff_rows(baseline: Mapping[str, Any], current: Mapping[str, Any],
              metrics: Sequence[str] | None = None) -> list[Row]:
    """Rows for ``metrics`` (names or globs; default :data:`HEADLINE_METRICS`).

    ``baseline`` and ``current`` are summary.json dicts (or flattened metric dicts). By default,
    metrics absent from both summaries (e.g. patching not run) are left out.
    """
    base, now = _metrics(baseline), _metrics(current)
    if metrics is None:
        names = [m for m in HEADLINE_METRICS if m in base or m in now]
    else:
        names = _select(metrics, list(dict.fromkeys([*base, *now])))
    rows = []
    for name in names:
        b = base[name].value if name in base else None
        n = now[name].value if name in now else None
        rows.append(Row(name, b, n, None if b is None or n is None else n - b))
    return rows


def _is_count(metric: str) -> bool:
    return metric == "dataset_size" or metric.rsplit(".", 1)[-1] in ("n", "n_null", "n_texts")


def _num(x: float | None, sign: bool = False, count: bool = False) -> str:
    if x is None or not math.isfinite(x):
        return "undefined"
    if x == 0:
        return "0"
    if count and x == int(x) and abs(x) < 1e15:
        return f"{int(x):+d}" if sign else str(int(x))
    if 1e-3 <= abs(x) < 1e5:
        return f"{x:+.4f}" if sign else f"{x:.4f}"
    return f"{x:+.3e}" if sign else f"{x:.3e}"


def format_table(rows: Sequence[Row], title: str) -> str:
    """An aligned plain-text table: metric, baseline, now, Δ."""
    header = ("metric", "baseline", "now", "Δ")
    cells = [(r.metric, _num(r.baseline, count=_is_count(r.metric)), _num(r.now, count=_is_count(r.metric)),
              _num(r.delta, sign=True, count=_is_count(r.metric))) for r in rows]
    widths = [max(len(c[i]) for c in [header, *cells]) for i in range(4)]

    def line(c: Sequence[str]) -> str:
        return "  ".join([c[0].ljust(widths[0]), *(c[i].rjust(widths[i]) for i in (1, 2, 3))]).rstrip()

    out = [title, line(header), "  ".join("-" * w for w in widths)]
    out += [line(c) for c in cells] if cells else ["(no metrics)"]
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------
# --fail conditions
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FailOutcome:
    """One regression condition on one run: ``failed`` when it holds or cannot be told."""

    condition: str
    failed: bool
    message: str


def parse_fail(text: str) -> Claim:
    """Parse a ``--fail`` condition ``"METRIC OP RHS"`` (judged on estimates)."""
    try:
        return parse_claim(text, judge="estimate")
    except NeuronProbeError as exc:
        raise NeuronProbeError(f"{exc} (a --fail condition is 'METRIC OP RHS', e.g. "
                               "'projection.head.r < baseline - 0.05')", key="--fail") from None


def check_fail(condition: Claim, baseline: Mapping[str, Any], current: Mapping[str, Any]) -> FailOutcome:
    """Whether the regression ``condition`` holds for ``current`` (vs ``baseline``)."""
    base, now = _metrics(baseline), _metrics(current)
    name, text = condition.metric, condition.text
    m = now.get(name)
    if m is None:
        return FailOutcome(text, True, f"FAILED  {text}: {_missing_message(name, now)}; "
                                       "cannot tell, counted as a regression")
    if m.value is None:
        return FailOutcome(text, True, f"FAILED  {text}: {name} is undefined ({m.reason or 'undefined'}); "
                                       "cannot tell, counted as a regression")
    b: float | None = None
    if condition.expr.uses_baseline:
        bm = base.get(name)
        if bm is None or bm.value is None:
            why = _missing_message(name, base, side="baseline ") if bm is None else \
                f"baseline {name} is undefined ({bm.reason or 'undefined'})"
            return FailOutcome(text, True, f"FAILED  {text}: {why}; cannot tell, counted as a regression")
        b = bm.value
    rng = condition.expr.range(b)
    holds = rng.contains(m.value)
    if condition.expr.kind in ("lower", "equal"):
        rhs = _num(rng.low)
    elif condition.expr.kind == "upper":
        rhs = _num(rng.high)
    else:
        rhs = f"[{_num(rng.low)}, {_num(rng.high)}]"
    detail = f"now {_num(m.value)}" + (f", baseline {_num(b)}" if b is not None else "") + f", RHS {rhs}"
    if holds:
        return FailOutcome(text, True, f"FAILED  {text}: the regression condition holds ({detail})")
    return FailOutcome(text, False, f"ok      {text}: does not hold ({detail})")


# ---------------------------------------------------------------------------------------------
# The comparison
# ---------------------------------------------------------------------------------------------


def compare_summaries(baseline: Mapping[str, Mapping[str, Any]], current: Mapping[str, Mapping[str, Any]],
                      *, metrics: Sequence[str] | None = None, fail: Sequence[str] = (),
                      run: str | None = None) -> tuple[str, int]:
    """The comparison report text and its exit code (0 fine, 1 a --fail condition failed).

    ``baseline``/``current`` map run names to summaries (as :func:`load_summaries` returns).
    Runs are matched by name; with exactly one run on each side, they are compared even if
    their names differ. Raises :class:`NeuronProbeError` on bad input.
    """
    conditions = [parse_fail(text) for text in fail]
    if run is not None:
        missing = [side for side, d in (("baseline", baseline), ("current", current)) if run not in d]
        if missing:
            have = {"baseline": ", ".join(baseline) or "none", "current": ", ".join(current) or "none"}
            raise NeuronProbeError(f"run {run!r} is not in the {' or '.join(missing)} summaries "
                                   f"(runs: {'; '.join(f'{s}: {have[s]}' for s in missing)})", key="--run")
        pairs = [(run, run)]
        only_base: list[str] = []
        only_now: list[str] = []
    elif len(baseline) == 1 and len(current) == 1:
        pairs = [(next(iter(baseline)), next(iter(current)))]
        only_base, only_now = [], []
    else:
        pairs = [(n, n) for n in current if n in baseline]
        only_base = [n for n in baseline if n not in current]
        only_now = [n for n in current if n not in baseline]
        if not pairs:
            raise NeuronProbeError(
                f"no run appears in both: baseline has {', '.join(baseline) or 'none'}; "
                f"current has {', '.join(current) or 'none'} (use --run NAME with one run per side)")

    blocks: list[str] = []
    failed = 0
    for b_name, n_name in pairs:
        base, now = flatten(baseline[b_name]), flatten(current[n_name])
        title = f"run {n_name}" if b_name == n_name else f"run {n_name} (baseline run {b_name})"
        parts = [format_table(diff_rows(base, now, metrics), title)]
        for cond in conditions:
            outcome = check_fail(cond, base, now)
            failed += outcome.failed
            parts.append(outcome.message)
        blocks.append("\n".join(parts))
    if only_base:
        blocks.append(f"only in the baseline (not compared): {', '.join(only_base)}")
    if only_now:
        blocks.append(f"only in the current summaries (not compared): {', '.join(only_now)}")
    if conditions:
        checked = len(conditions) * len(pairs)
        blocks.append(f"{failed} of {checked} --fail condition check(s) failed" if failed
                      else f"all {checked} --fail condition check(s) passed")
    return "\n\n".join(blocks), 1 if failed else 0


_EPILOG = """\
--fail conditions are 'METRIC OP RHS', judged on the current run's estimate:
  OP RHS is one of  >= X  > X  <= X  < X  == X  C +- T  between A and B, where X, C, A, B
  are numbers or baseline [+ - * / number] (the same metric in the baseline run).
examples:
  neuronprobe compare old_report/ new_report/ --fail "projection.head.r < baseline - 0.05"
  neuronprobe compare a/summary.json b/summary.json --metric "projection.*.r" \\
      --fail "patching.slope < baseline * 0.8"
exit status: 0 fine, 1 a --fail condition holds or its metric is undefined, 2 bad input.
"""

_PARSER_KW: dict[str, Any] = {
    "description": (__doc__ or "").split("\n\n", 1)[0],
    "epilog": _EPILOG,
    "formatter_class": argparse.RawDescriptionHelpFormatter,
}


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("baseline", metavar="BASELINE",
                        help="earlier summary.json, or a report directory (<dir>/<run>/summary.json)")
    parser.add_argument("current", metavar="CURRENT", help="summary.json or report directory to check")
    parser.add_argument("--fail", metavar="EXPR", action="append", default=[],
                        help="regression condition 'METRIC OP RHS' on the current estimate, e.g. "
                             "'projection.head.r < baseline - 0.05'; exit 1 when it holds or its "
                             "metric is undefined (repeatable)")
    parser.add_argument("--metric", metavar="NAME", action="append", default=None,
                        help="metric to show (name or glob, e.g. 'projection.*.r'; repeatable; "
                             "default: the headline metrics)")
    parser.add_argument("--run", metavar="NAME", default=None,
                        help="compare only this run (when the summaries hold several)")


def _run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        baseline = load_summaries(args.baseline)
        current = load_summaries(args.current)
        text, code = compare_summaries(baseline, current, metrics=args.metric, fail=args.fail,
                                       run=args.run)
    except NeuronProbeError as exc:
        print(f"neuronprobe: error: {exc}", file=err)
        return 2
    print(text, file=out)
    return code


def add_compare_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``compare`` subcommand; the parsed namespace's ``func(args)`` returns the exit code."""
    parser = subparsers.add_parser("compare", help="compare summaries with an earlier run's",
                                   **_PARSER_KW)
    _add_arguments(parser)
    parser.set_defaults(func=_run)
    return parser


def compare_main(args: Sequence[str] | None = None) -> int:
    """``neuronprobe compare`` on its own: exit code 0, 1 (a --fail condition) or 2 (bad input)."""
    parser = argparse.ArgumentParser(prog="neuronprobe compare", **_PARSER_KW)
    _add_arguments(parser)
    try:
        ns = parser.parse_args(list(args) if args is not None else None)
    except SystemExit as exc:  # argparse exits on --help (0) and usage errors (2)
        return int(exc.code) if isinstance(exc.code, int) else 2
    return _run(ns)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(compare_main())
