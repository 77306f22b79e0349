"""Claims files.

A YAML file (named ``neuron_claims*.yaml``, ``neuron_claims*.yml`` or ``*.neuron.yaml``) whose
top level maps metric names to expressions. YAML reads a bare ``>`` as a folded block scalar,
so quote expressions that start with ``>``::

    options:                      # optional, not a claim
      judge: estimate             # default judge for this file (bound | estimate); default bound
      run: "*l8_n481*"            # only check runs whose name matches this glob
      max_samples: 200            # analysis options of this file's claims (the markers' keywords:
      factors: [0, 0.5, 1, 2]     # each goes to the analyses that accept it); default: the session's

    projection.head.r: ">= 0.8"
    projection.live.r: [">= 0.99", "<= 1"]
    projection.input.p_value: <= 0.05
    patching.slope:
      expect: "1.0 +- 0.2"        # an expression or a list of them
      judge: estimate             # this claim only
    patching.r_squared:
      expect: ">= baseline - 0.05"
      run: "gpt2_*"               # this claim only
    patching.direct_fraction:
      expect: ">= 0.5"
      xfail: "too few samples yet"  # expected to fail (strict: a pass fails the session)
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import yaml

from pytest_neuronprobe.analyses.options import split_keywords
from pytest_neuronprobe.claims.expressions import parse_expr
from pytest_neuronprobe.claims.verdicts import JUDGES, Claim
from pytest_neuronprobe.core.errors import NeuronProbeError, OptionError

__all__ = ["CLAIM_FILE_PATTERNS", "load_claims"]

CLAIM_FILE_PATTERNS = ("neuron_claims*.yaml", "neuron_claims*.yml", "*.neuron.yaml")

_STR_TAG = "tag:yaml.org,2002:str"
_OPTION_KEYS = ("judge", "run")
_CLAIM_KEYS = ("expect", "judge", "run", "xfail")
#: How deeply lists and mappings may nest in a claims file (a claim needs three levels).
MAX_DEPTH = 64


class _TooDeep(Exception):
    def __init__(self, line: int) -> None:
        super().__init__(line)
        self.line = line


class _Loader(yaml.SafeLoader):
    """A safe loader that refuses nesting deeper than :data:`MAX_DEPTH` (instead of recursing)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _TooDeep(int(self.peek_event().start_mark.line) + 1)  # type: ignore[no-untyped-call]
            return super().compose_node(parent, index)  # type: ignore[arg-type]
        finally:
            self._depth -= 1


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


def _err(path: Path, node: yaml.Node | int, key: str | None, message: str) -> NeuronProbeError:
    line = node if isinstance(node, int) else _line(node)
    return NeuronProbeError(message, path=f"{path}:{line}", key=key)


def _scalar_str(node: yaml.Node, path: Path, key: str | None, what: str) -> str:
    if not isinstance(node, yaml.ScalarNode):
        kind = "a list" if isinstance(node, yaml.SequenceNode) else "a mapping"
        raise _err(path, node, key, f"expected {what}, got {kind}")
    if node.tag != _STR_TAG:
        if not node.value or node.tag.endswith(":null"):
            raise _err(path, node, key, f"expected {what}, got nothing")
        hint = ""
        if what.startswith("an expr") and node.tag.endswith((":int", ":float")):
            hint = f" (a bare number is not a claim: write e.g. '== {node.value}' or '>= {node.value}')"
        raise _err(path, node, key, f"expected {what}, got {node.value!r}{hint}")
    return str(node.value)


def _pairs(node: yaml.MappingNode, path: Path, where: str | None) -> Iterator[tuple[str, yaml.Node, yaml.Node]]:
    seen: dict[str, int] = {}
    for k, v in node.value:
        key = _scalar_str(k, path, where, "a name as key")
        if key in seen:
            raise _err(path, k, key, f"duplicate key (first at line {seen[key]})")
        seen[key] = _line(k)
        yield key, k, v


def _judge(node: yaml.Node, path: Path, key: str) -> str:
    value = _scalar_str(node, path, key, "'bound' or 'estimate'")
    if value not in JUDGES:
        raise _err(path, node, key, f"judge must be one of {', '.join(JUDGES)}, got {value!r}")
    return value


def _compose(path: Path) -> yaml.Node | None:
    """The file's YAML node tree (``None`` for an empty file)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise NeuronProbeError(f"cannot read claims file: {exc.strerror or exc}", path=path) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        bom = " (it starts with a UTF-16 byte-order mark)" if data[:2] in (b"\xff\xfe", b"\xfe\xff") else ""
        line = data[: exc.start].count(b"\n") + 1
        message = f"a claims file must be UTF-8 text{bom}; byte {data[exc.start]:#04x} is not UTF-8: save it as UTF-8"
        raise _err(path, line, None, message) from None
    try:
        root: yaml.Node | None = yaml.compose(text.removeprefix("\ufeff"), Loader=_Loader)
    except _TooDeep as exc:
        raise _err(path, exc.line, None, f"lists and mappings nest more than {MAX_DEPTH} deep") from None
    except RecursionError:
        raise NeuronProbeError(f"lists and mappings nest too deeply (limit {MAX_DEPTH})", path=path) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        problem = exc.problem or str(exc)
        hint = ""
        if (
            "block scalar" in (exc.context or "")
            or "chomping" in problem
            or "indentation indicator" in problem
            or "'>' that cannot start" in problem
        ):
            hint = (
                "; quote expressions that start with '>' (YAML reads a bare '>' as a folded "
                'text block), e.g. projection.head.r: ">= 0.8"'
            )
        raise _err(path, line, None, f"invalid YAML: {problem}{hint}") from None
    except yaml.YAMLError as exc:
        raise NeuronProbeError(f"invalid YAML: {exc}", path=path) from None
    return root


def _file_options(root: yaml.MappingNode, path: Path, judge: str) -> tuple[str, str | None, dict[str, object]]:
    """The file's ``options:``: judge (default ``judge``), run glob and analysis options (checked)."""
    run, analysis, nodes = None, {}, {}
    for key, _, v in _pairs(root, path, None):
        if key != "options":
            continue
        if not isinstance(v, yaml.MappingNode):
            raise _err(path, v, "options", "expected a mapping such as {judge: estimate, run: '*_l8_*'}")
        for opt, ok, ov in _pairs(v, path, "options"):
            if opt == "judge":
                judge = _judge(ov, path, "options.judge")
            elif opt == "run":
                run = _scalar_str(ov, path, "options.run", "a glob over run names")
            else:
                analysis[opt], nodes[opt] = yaml.safe_load(yaml.serialize(ov)), ok
    try:
        split_keywords(analysis, where="options")
    except OptionError as exc:
        # the key the message names (`options(key=...)`, `'key'`), else the first
        named = [k for k in nodes if f"({k}=" in str(exc) or f"'{k}'" in str(exc)] or list(nodes)
        hint = f" (besides {', '.join(_OPTION_KEYS)})" if "unknown option" in str(exc) else ""
        raise _err(path, nodes[named[0]], f"options.{named[0]}", f"{exc}{hint}") from None
    return judge, run, analysis


def _claim_mapping(
    v: yaml.MappingNode, path: Path, metric: str, judge: str, run: str | None
) -> tuple[yaml.Node, str, str | None, str | None]:
    """``expect``, ``judge``, ``run`` and ``xfail`` of a claim written as a mapping."""
    exprs = xfail = None
    for key, kk, vv in _pairs(v, path, metric):
        if key == "expect":
            exprs = vv
        elif key == "judge":
            judge = _judge(vv, path, f"{metric}.judge")
        elif key == "run":
            run = _scalar_str(vv, path, f"{metric}.run", "a glob over run names")
        elif key == "xfail":
            xfail = _scalar_str(vv, path, f"{metric}.xfail", "a reason why the claim is expected to fail").strip()
            if not xfail:
                raise _err(path, vv, f"{metric}.xfail", "expected a reason why the claim is expected to fail, got ''")
        else:
            raise _err(path, kk, f"{metric}.{key}", f"unknown key; a claim mapping has {', '.join(_CLAIM_KEYS)}")
    if exprs is None:
        raise _err(path, v, metric, "a claim mapping needs 'expect: <expression>'")
    return exprs, judge, run, xfail


def _claims_of(
    metric: str, v: yaml.Node, path: Path, judge: str, run: str | None, options: dict[str, object]
) -> list[Claim]:
    exprs, xfail = v, None
    if isinstance(v, yaml.MappingNode):
        exprs, judge, run, xfail = _claim_mapping(v, path, metric, judge, run)
    items = exprs.value if isinstance(exprs, yaml.SequenceNode) else [exprs]
    if not items:
        raise _err(path, exprs, metric, "expected at least one expression, got an empty list")
    claims = []
    for item in items:
        expr_text = _scalar_str(item, path, metric, "an expression such as '>= 0.8'")
        try:
            expr = parse_expr(expr_text, context=f"{metric}: {expr_text}")
        except NeuronProbeError as exc:
            raise _err(path, item, metric, str(exc)) from None
        claims.append(
            Claim(
                metric,
                expr,
                f"{metric} {expr.text}",
                source=str(path),
                line=_line(item),
                judge=judge,
                run=run,
                xfail=xfail,
                options=options,
            )
        )
    return claims


def load_claims(path: str | Path, *, default_judge: str = "bound") -> list[Claim]:
    """Read a claims file (format in the module docstring); claims in file order.

    ``default_judge`` judges the claims for which the file sets no judge (neither in
    ``options:`` nor on the claim).
    """
    path = Path(path)
    root = _compose(path)
    if root is None:
        return []
    if not isinstance(root, yaml.MappingNode):
        raise _err(
            path,
            root,
            None,
            'expected a mapping of metric names to expressions at the top level, e.g. projection.head.r: ">= 0.8"',
        )
    judge, run, options = _file_options(root, path, default_judge)
    claims: list[Claim] = []
    for metric, _, v in _pairs(root, path, None):
        if metric != "options":
            claims += _claims_of(metric, v, path, judge, run, options)
    return claims
