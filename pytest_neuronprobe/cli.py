"""The `neuronprobe` command line: `make-run`, `demo`, `compare`, `cache` (subcommands registered in `SUBCOMMANDS`)."""

from __future__ import annotations

import argparse
import sys
from typing import Callable, Sequence

from pytest_neuronprobe.core.errors import NeuronProbeError

__all__ = ["main", "build_parser"]

Handler = Callable[[argparse.Namespace], int]


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


def _register_make_run(sub: argparse._SubParsersAction) -> None:
    from pytest_neuronprobe.build.make_run import DEFAULT_N_TEXTS, HEAD_FORMATS
    from pytest_neuronprobe.core.runs import HEAD_TYPES, PROCESSING

    p = sub.add_parser("make-run", help="train a probe head on one neuron and write it as a run directory",
                       description="Compute a neuron's activations on texts, train a head on the train split and "
                                   "write a run directory in the seed layout. Prints the run directory.")
    p.add_argument("--base-model", required=True, help="local Hugging Face model directory or hub name")
    p.add_argument("--layer", type=int, required=True, help="layer of the target neuron")
    p.add_argument("--neuron", type=_neuron, default=None,
                   help="neuron index, or 'auto' (default): the most variable one on the train texts")
    p.add_argument("--texts", metavar="FILE", default=None,
                   help="texts: a .csv with a 'text' column or one text per line (default: built-in corpus)")
    p.add_argument("--n-texts", type=_positive, default=DEFAULT_N_TEXTS,
                   help=f"texts from the built-in corpus when --texts is not given (default {DEFAULT_N_TEXTS})")
    p.add_argument("--head-type", choices=HEAD_TYPES, default="regression")
    p.add_argument("--hidden-dim", type=_positive, default=None, help="hidden layer width (default: none)")
    p.add_argument("--n-bins", type=_positive, default=5, help="classification bins (default 5)")
    p.add_argument("--finetune-layers", type=_positive, default=1, help="token head: blocks fine-tuned (default 1)")
    p.add_argument("--train-steps", type=_positive, default=None,
                   help="optimiser steps of trained heads (default: 400, token heads 80)")
    p.add_argument("--layer-type", default="post", help="neuron hook: post, pre, mlp_out, ... (default post)")
    p.add_argument("--feature-layer", type=int, default=-1, help="the head reads this layer's resid_post (default -1)")
    p.add_argument("--token-pos", type=_token_pos, default="last", help="'last' or an integer (default last)")
    p.add_argument("--prepend-bos", action="store_true", help="tokenise with a BOS token in front")
    p.add_argument("--processing", choices=PROCESSING, default="compat")
    p.add_argument("--test-fraction", type=_fraction, default=0.2, help="share of texts held out (default 0.2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=".", help="directory the run is written into (default .)")
    p.add_argument("--name", default=None,
                   help="run directory name; may use {head_type} {layer} {neuron} {seed} "
                        "(default {head_type}-neuron_l{layer}_n{neuron}-seed{seed})")
    p.add_argument("--head-format", choices=HEAD_FORMATS, default="safetensors")
    p.add_argument("--reuse", action="store_true", help="keep an existing run built with the same parameters")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=_cmd_make_run)


def _cmd_make_run(args: argparse.Namespace) -> int:
    from pytest_neuronprobe.build.make_run import make_run, read_texts_file

    texts = read_texts_file(args.texts) if args.texts else None
    path = make_run(args.out, base_model=args.base_model, layer=args.layer, neuron=args.neuron, texts=texts,
                    head_type=args.head_type, hidden_dim=args.hidden_dim, n_bins=args.n_bins,
                    finetune_layers=args.finetune_layers, layer_type=args.layer_type,
                    feature_layer=args.feature_layer, token_pos=args.token_pos, prepend_bos=args.prepend_bos,
                    processing=args.processing, test_fraction=args.test_fraction, seed=args.seed,
                    head_format=args.head_format, name=args.name, progress=not args.quiet, reuse=args.reuse,
                    n_texts=args.n_texts, train_steps=args.train_steps)
    print(path)
    return 0


# --------------------------------------------------------------------------------------------- #
# demo


def _register_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="build the demo LM and four demo runs (cached)",
                       description="Build (or reuse) a small trained LM and four probe runs on its middle layer's "
                                   "most variable neuron: linear, hidden-layer, classification and token heads. "
                                   "Prints the run directories.")
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
# The parser. To add a subcommand, write `_register_<name>(sub)` (add_parser + set_defaults(func=handler),
# handler(args) -> exit code) and list it in SUBCOMMANDS.

def _register_compare(sub: argparse._SubParsersAction) -> None:
    from pytest_neuronprobe.compare import add_compare_parser

    add_compare_parser(sub)


def _register_cache(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cache", help="manage the on-disk analysis cache",
                       description="Manage the on-disk cache of analysis results the pytest plugin keeps "
                                   "(default: .pytest_cache/d/neuronprobe; --neuron-cache-dir).")
    actions = p.add_subparsers(dest="cache_command", metavar="ACTION", required=True)
    clear = actions.add_parser("clear", help="remove every cached analysis result",
                               description="Remove every cached analysis result from the cache directory.")
    clear.add_argument("--dir", default=None,
                       help="cache directory (default: .pytest_cache/d/neuronprobe in the current directory)")
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


SUBCOMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _register_make_run,
    _register_demo,
    _register_compare,
    _register_cache,
]


def build_parser() -> argparse.ArgumentParser:
    """The `neuronprobe` argument parser with every registered subcommand."""
    parser = argparse.ArgumentParser(prog="neuronprobe",
                                     description="Build and check probe heads that read one language-model neuron.")
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
    try:
        return handler(args)
    except NeuronProbeError as exc:
        print(f"neuronprobe: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("neuronprobe: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
