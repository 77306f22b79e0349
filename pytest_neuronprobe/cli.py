"""The `neuronprobe` command line: `make-run`, `demo`, `compare`, `cache`, `merge` (subcommands registered in
`SUBCOMMANDS`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypeAlias

from pytest_neuronprobe.core.errors import NeuronProbeError

__all__ = ["add_compare_parser", "build_parser", "compare_main", "main"]

Handler = Callable[[argparse.Namespace], int]
if TYPE_CHECKING:
    #: The object `add_subparsers()` returns; `_register_<name>(sub)` functions add one subcommand to it.
    Subparsers: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]


def _neuron(value: str) -> int | None:
    if value.lower() == "auto":
        return None
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a neuron index or 'auto', got {value!r}") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"expected a neuron index >= 0 or 'auto', got {n}")
    return n


def _token_pos(value: str) -> str | int:
    if value == "last":
        return value
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'last' or an integer position, got {value!r}") from None


def _positive(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {n}")
    return n


def _fraction(value: str) -> float:
    try:
        f = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {value!r}") from None
    if not 0.0 <= f < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {value!r}")
    return f


# --------------------------------------------------------------------------------------------- #
# make-run


def _register_make_run(sub: Subparsers) -> None:
    from pytest_neuronprobe.build.make_run import HEAD_FORMATS
    from pytest_neuronprobe.build.texts import DEFAULT_N_TEXTS
    from pytest_neuronprobe.core.runs import HEAD_TYPES, PROCESSING

    p = sub.add_parser(
        "make-run",
        help="train a probe head on one neuron and write it as a run directory",
        description="Compute a neuron's activations on texts, train a head on the train split and "
        "write a run directory in the seed layout. Prints the run directory.",
    )
    p.add_argument("--base-model", required=True, help="local Hugging Face model directory or hub name")
    p.add_argument("--layer", type=int, required=True, help="layer of the target neuron")
    p.add_argument(
        "--neuron",
        type=_neuron,
        default=None,
        help="neuron index, or 'auto' (default): the most variable one on the train texts",
    )
    p.add_argument(
        "--texts",
        metavar="FILE",
        default=None,
        help="texts: a .csv with a 'text' column or one text per line (default: built-in corpus)",
    )
    p.add_argument(
        "--n-texts",
        type=_positive,
        default=DEFAULT_N_TEXTS,
        help=f"texts from the built-in corpus when --texts is not given (default {DEFAULT_N_TEXTS})",
    )
    p.add_argument("--head-type", choices=HEAD_TYPES, default="regression")
    p.add_argument("--hidden-dim", type=_positive, default=None, help="hidden layer width (default: none)")
    p.add_argument("--n-bins", type=_positive, default=5, help="classification bins (default 5)")
    p.add_argument("--finetune-layers", type=_positive, default=1, help="token head: blocks fine-tuned (default 1)")
    p.add_argument(
        "--train-steps",
        type=_positive,
        default=None,
        help="optimiser steps of trained heads (default: 400, token heads 80)",
    )
    p.add_argument("--layer-type", default="post", help="neuron hook: post, pre, mlp_out, ... (default post)")
    p.add_argument("--feature-layer", type=int, default=-1, help="the head reads this layer's resid_post (default -1)")
    p.add_argument("--token-pos", type=_token_pos, default="last", help="'last' or an integer (default last)")
    p.add_argument("--prepend-bos", action="store_true", help="tokenise with a BOS token in front")
    p.add_argument("--processing", choices=PROCESSING, default="compat")
    p.add_argument("--test-fraction", type=_fraction, default=0.2, help="share of texts held out (default 0.2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=".", help="directory the run is written into (default .)")
    p.add_argument(
        "--name",
        default=None,
        help="run directory name; may use {head_type} {layer} {neuron} {seed} "
        "(default {head_type}-neuron_l{layer}_n{neuron}-seed{seed})",
    )
    p.add_argument("--head-format", choices=HEAD_FORMATS, default="safetensors")
    p.add_argument("--reuse", action="store_true", help="keep an existing run built with the same parameters")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=_cmd_make_run)


def _check_make_run_paths(args: argparse.Namespace) -> None:
    """Refuse an --out that is not a directory and a --name template with fields beyond the four."""
    from pathlib import Path

    from pytest_neuronprobe.build.reuse import check_name, format_name

    out = Path(args.out).expanduser()
    if out.exists() and not out.is_dir():
        raise NeuronProbeError("--out must be a directory (it is an existing file)", path=out, key="out")
    if args.name:
        check_name(format_name(args.name, args.head_type, args.layer, 0, args.seed))


def _cmd_make_run(args: argparse.Namespace) -> int:
    from pytest_neuronprobe.build.make_run import make_run
    from pytest_neuronprobe.build.texts import read_texts_file

    _check_make_run_paths(args)
    texts = read_texts_file(args.texts) if args.texts else None
    path = make_run(
        args.out,
        base_model=args.base_model,
        layer=args.layer,
        neuron=args.neuron,
        texts=texts,
        head_type=args.head_type,
        hidden_dim=args.hidden_dim,
        n_bins=args.n_bins,
        finetune_layers=args.finetune_layers,
        layer_type=args.layer_type,
        feature_layer=args.feature_layer,
        token_pos=args.token_pos,
        prepend_bos=args.prepend_bos,
        processing=args.processing,
        test_fraction=args.test_fraction,
        seed=args.seed,
        head_format=args.head_format,
        name=args.name,
        progress=not args.quiet,
        reuse=args.reuse,
        n_texts=args.n_texts,
        train_steps=args.train_steps,
    )
    print(path)
    return 0


# --------------------------------------------------------------------------------------------- #
# demo


def _register_demo(sub: Subparsers) -> None:
    p = sub.add_parser(
        "demo",
        help="build the demo LM and four demo runs (cached)",
        description="Build (or reuse) a small trained LM and four probe runs on its middle layer's "
        "most variable neuron: linear, hidden-layer, classification and token heads. "
        "Prints the run directories.",
    )
    p.add_argument("--out", default="demo_runs", help="directory for the runs (default demo_runs)")
    p.add_argument("--cache", default=".neuronprobe/demo_lm", help="demo LM cache (default .neuronprobe/demo_lm)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=_cmd_demo)


def _cmd_demo(args: argparse.Namespace) -> int:
    from pytest_neuronprobe.build.demo import build_demo

    for path in build_demo(args.out, args.cache, progress=not args.quiet):
        print(path)
    return 0


# --------------------------------------------------------------------------------------------- #
# compare

_COMPARE_EPILOG = """\
--expect expectations are claims, written and judged as in a claims file: 'METRIC EXPR' with
  EXPR one of  >= X  > X  <= X  < X  == X  C +- T  between A and B, where X, C, A, B are numbers
  or baseline [+ - * / number] (the same metric in the baseline run). A metric with a 95%
  interval (projection.*.r, patching.slope) is judged on the interval's bound (--judge bound,
  the default) or on its estimate alone (--judge estimate).
--fail conditions are the older, reverse form: 'METRIC OP RHS' describes the regression, judged
  on the current run's estimate.
examples:
  neuronprobe compare old_report/ new_report/ --expect "projection.head.r >= baseline - 0.05"
  neuronprobe compare a/summary.json b/summary.json --metric "projection.*.r" \\
      --expect "patching.slope >= baseline * 0.8" --judge estimate
exit status: 0 every expectation holds, 1 one does not (or --fail holds; an undefined metric
  counts as a regression), 2 bad input (unknown metric, unreadable or invalid file).
"""
_COMPARE_DESCRIPTION = "Compare a run's numbers with an earlier run's: tables, expectations and regression conditions."


def _compare_arguments(parser: argparse.ArgumentParser) -> None:
    from pytest_neuronprobe.claims.verdicts import JUDGES

    parser.add_argument(
        "baseline", metavar="BASELINE", help="earlier summary.json, or a report directory (<dir>/<run>/summary.json)"
    )
    parser.add_argument("current", metavar="CURRENT", help="summary.json or report directory to check")
    parser.add_argument(
        "--expect",
        metavar="CLAIM",
        action="append",
        default=[],
        help="expectation 'METRIC EXPR' as in a claims file, e.g. 'projection.head.r >= baseline - 0.05'; "
        "exit 1 when it does not hold or its metric is undefined (repeatable)",
    )
    parser.add_argument(
        "--judge",
        choices=JUDGES,
        default="bound",
        help="judge --expect on a metric's 95%% interval bound (default) or its estimate",
    )
    parser.add_argument(
        "--fail",
        metavar="EXPR",
        action="append",
        default=[],
        help="regression condition 'METRIC OP RHS' on the current estimate (the reverse of --expect), e.g. "
        "'projection.head.r < baseline - 0.05'; exit 1 when it holds or its metric is undefined (repeatable)",
    )
    parser.add_argument(
        "--metric",
        metavar="NAME",
        action="append",
        default=None,
        help="metric to show (name or glob, e.g. 'projection.*.r'; repeatable; default: the headline metrics)",
    )
    parser.add_argument(
        "--run", metavar="NAME", default=None, help="compare only this run (when the summaries hold several)"
    )


def _cmd_compare(args: argparse.Namespace) -> int:
    from pytest_neuronprobe.baseline import load_summaries
    from pytest_neuronprobe.compare import read_side, run_compare

    try:
        return run_compare(
            read_side(args.baseline, load_summaries),
            read_side(args.current, load_summaries),
            metrics=args.metric,
            fail=args.fail,
            run=args.run,
            expect=args.expect,
            judge=args.judge,
        )
    except NeuronProbeError as exc:
        print(f"neuronprobe: error: {exc}", file=sys.stderr)
        return 2


def add_compare_parser(sub: Subparsers) -> argparse.ArgumentParser:
    """Add the ``compare`` subcommand; the parsed namespace's ``func(args)`` returns the exit code."""
    parser = sub.add_parser(
        "compare",
        help="compare summaries with an earlier run's",
        description=_COMPARE_DESCRIPTION,
        epilog=_COMPARE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _compare_arguments(parser)
    parser.set_defaults(func=_cmd_compare)
    return parser


def compare_main(argv: Sequence[str] | None = None) -> int:
    """``neuronprobe compare`` on its own: exit code 0, 1 (an --expect or --fail check failed) or 2 (bad input)."""
    parser = argparse.ArgumentParser(
        prog="neuronprobe compare",
        description=_COMPARE_DESCRIPTION,
        epilog=_COMPARE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _compare_arguments(parser)
    try:
        args = parser.parse_args(list(argv) if argv is not None else None)
    except SystemExit as exc:  # argparse exits on --help (0) and usage errors (2)
        return int(exc.code) if isinstance(exc.code, int) else 2
    return _cmd_compare(args)


# --------------------------------------------------------------------------------------------- #
# merge

_MERGE_EPILOG = """\
example (a CI matrix job per run glob, then one merge job):
  pytest tests --neuron-run 'runs/a-*' --neuron-report report-0      # job 0
  pytest tests --neuron-run 'runs/b-*' --neuron-report report-1      # job 1
  neuronprobe merge report-* --out report --baseline baselines/       # the merge job
  (add --against baselines/ for the Δ columns against the baseline the jobs were checked against)
exit status: 0 merged, 2 bad input (a missing or invalid report, the same run with different numbers
in two reports, an --out that is not a report); nothing is written then.
"""


def _register_merge(sub: Subparsers) -> None:
    p = sub.add_parser(
        "merge",
        help="merge the report directories of sharded CI jobs into one report",
        description="Merge --neuron-report directories (one per CI matrix job) into one report: every run's\n"
        "folder, one results.json and one index.html; optionally write each run's summary into a baseline\n"
        "directory. The report is written whole or not at all.",
        epilog=_MERGE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("reports", metavar="REPORT_DIR", nargs="+", help="report directories to merge (in this order)")
    p.add_argument(
        "--out", metavar="DIR", required=True, help="the merged report (replaced if it is an earlier report)"
    )
    p.add_argument(
        "--baseline",
        metavar="DIR",
        default=None,
        help="also write each complete run's summary as DIR/<run>/summary.json (for --neuron-baseline)",
    )
    p.add_argument(
        "--against",
        metavar="PATH",
        default=None,
        help="the baseline the shards were checked against (their --neuron-baseline): the index shows each "
        "run's Δ against it, paired as the plugin pairs (read before --baseline writes)",
    )
    p.set_defaults(func=_cmd_merge)


def _cmd_merge(args: argparse.Namespace) -> int:
    from pytest_neuronprobe.merge import merge_reports

    result = merge_reports(args.reports, args.out, baseline=args.baseline, against=args.against)
    print(
        f"neuronprobe: merged {len(args.reports)} report(s): {len(result.runs)} run(s), "
        f"{result.n_records} test record(s) -> {result.index_html}"
    )
    if args.baseline is not None:
        print(f"neuronprobe: baseline: wrote {len(result.baseline_files)} summary file(s) to {args.baseline}")
        for skipped in result.baseline_skipped:
            print(f"neuronprobe: baseline: left out {skipped}")
    return 0


# --------------------------------------------------------------------------------------------- #
# The parser. To add a subcommand, write `_register_<name>(sub)` (add_parser + set_defaults(func=handler),
# handler(args) -> exit code) and list it in SUBCOMMANDS.


def _register_cache(sub: Subparsers) -> None:
    p = sub.add_parser(
        "cache",
        help="manage the on-disk analysis cache",
        description="Manage the on-disk cache of analysis results the pytest plugin keeps "
        "(default: .pytest_cache/d/neuronprobe; --neuron-cache-dir).",
    )
    actions = p.add_subparsers(dest="cache_command", metavar="ACTION", required=True)
    clear = actions.add_parser(
        "clear",
        help="remove every cached analysis result",
        description="Remove every cached analysis result from the cache directory.",
    )
    clear.add_argument(
        "--dir", default=None, help="cache directory (default: .pytest_cache/d/neuronprobe in the current directory)"
    )
    clear.set_defaults(func=_cmd_cache_clear)


def _cmd_cache_clear(args: argparse.Namespace) -> int:
    from pathlib import Path

    from pytest_neuronprobe.analyses.cache import clear_cache

    directory = Path(args.dir) if args.dir else Path(".pytest_cache") / "d" / "neuronprobe"
    if directory.exists() and not directory.is_dir():
        raise NeuronProbeError("expected a cache directory, got a file", path=directory)
    n = clear_cache(directory)
    print(f"neuronprobe: removed {n} cached analysis result(s) from {directory}")
    return 0


SUBCOMMANDS: list[Callable[[Subparsers], object]] = [
    _register_make_run,
    _register_demo,
    add_compare_parser,
    _register_cache,
    _register_merge,
]


def build_parser() -> argparse.ArgumentParser:
    """The `neuronprobe` argument parser with every registered subcommand."""
    parser = argparse.ArgumentParser(
        prog="neuronprobe", description="Build and check probe heads that read one language-model neuron."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for register in SUBCOMMANDS:
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code (2 for bad arguments or bad input)."""
    parser = build_parser()
    try:
        args = parser.parse_args(None if argv is None else list(argv))
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2, message already printed)
        return int(exc.code or 0) if not isinstance(exc.code, str) else 2
    handler: Handler = args.func
    from pytest_neuronprobe.core.atomic import terminate_as_interrupt

    try:
        with terminate_as_interrupt():  # SIGTERM, as SIGINT, lets the atomic writers clean up
            return handler(args)
    except NeuronProbeError as exc:
        print(f"neuronprobe: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("neuronprobe: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
