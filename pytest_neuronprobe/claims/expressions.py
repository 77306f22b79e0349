"""The claim expression language.

::

    >= 0.8          > 0.8          <= 0.05          < 0.05          == 500
    1.0 +- 0.2      (also 1.0 ± 0.2, 1.0 +/- 0.2; the range is inclusive)
    between 0.5 and 1.5            (inclusive)
    >= baseline - 0.05             >= baseline * 0.9          baseline +- 0.1
    >= previous - 0.02             >= best - 0.05
    == L2.N470                     (a unit's name: MLP neuron 470 of layer 2; L3.H5: attention head 5 of layer 3)

Numbers may be negative and use exponents (``1e-3``). ``baseline`` is the same metric's
estimate in the baseline summary, ``previous`` and ``best`` its estimate in the history (the
latest earlier entry of the run, and the best earlier value), each optionally combined with one
number by ``+ - * /``. An expression refers to at most one of the three. Nothing is evaluated
as Python.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import NoReturn

from pytest_neuronprobe.core.errors import NeuronProbeError
from pytest_neuronprobe.core.formatting import format_literal, format_short

__all__ = ["REFERENCES", "Expr", "Operand", "Range", "parse_expr"]

#: The words that stand for a reference value of the same metric.
REFERENCES = ("baseline", "previous", "best")

_FORMS = (
    "'>= 0.8', '> 0.8', '<= 0.05', '< 0.05', '== 3', '1.0 +- 0.2', 'between 0.5 and 1.5', "
    "'>= baseline - 0.05', '>= baseline * 0.9', 'baseline +- 0.1', '>= previous - 0.02', '>= best - 0.05'"
)


@dataclass(frozen=True)
class Operand:
    """A number, or a reference value (baseline, previous, best) optionally combined with one number."""

    value: float = 0.0
    #: "baseline", "previous", "best", or None for a plain number.
    ref: str | None = None
    op: str | None = None  # '+', '-', '*', '/' applied to the reference value
    #: A unit's name (``L2.N470``) compared with a metric's name (``attribution.top[0]``), instead of a number.
    text: str | None = None

    @property
    def baseline(self) -> bool:
        """True when the operand refers to a reference value (baseline, previous or best)."""
        return self.ref is not None

    def resolve(self, base: float | None) -> float:
        """The number this operand stands for, given the reference value."""
        if self.ref is None:
            return self.value
        if base is None:
            raise ValueError(f"this operand refers to {self.ref}")
        if self.op is None:
            return base
        return {
            "+": base + self.value,
            "-": base - self.value,
            "*": base * self.value,
            "/": base / self.value if self.value else math.nan,
        }[self.op]

    def __str__(self) -> str:
        if self.text is not None:
            return self.text
        if self.ref is None:
            return format_literal(self.value)
        return self.ref if self.op is None else f"{self.ref} {self.op} {format_literal(self.value)}"


@dataclass(frozen=True)
class Range:
    """The values an expression accepts: from ``low`` to ``high``, ends open or closed."""

    low: float
    high: float
    low_open: bool = False
    high_open: bool = False

    def contains(self, x: float) -> bool:
        """True when ``x`` satisfies the expression (NaN never does)."""
        above = x > self.low if self.low_open else x >= self.low
        below = x < self.high if self.high_open else x <= self.high
        return bool(above and below)

    def __str__(self) -> str:
        lo = "(" if self.low_open else "["
        hi = ")" if self.high_open else "]"
        return f"{lo}{format_short(self.low)}, {format_short(self.high)}{hi}"


@dataclass(frozen=True)
class Expr:
    """A parsed expression: ``op`` is one of ``>= > <= < == +- between``."""

    op: str
    a: Operand
    b: Operand | None = None  # the tolerance of '+-', the upper end of 'between'
    text: str = ""

    @property
    def ref(self) -> str | None:
        """The reference value the expression uses ("baseline", "previous", "best"), or None."""
        return self.a.ref or (self.b.ref if self.b is not None else None)

    @property
    def uses_baseline(self) -> bool:
        """True when the expression refers to the baseline."""
        return self.ref == "baseline"

    @property
    def kind(self) -> str:
        """``lower`` (>=, >), ``upper`` (<=, <), ``equal`` (==) or ``range`` (+-, between)."""
        return {">=": "lower", ">": "lower", "<=": "upper", "<": "upper", "==": "equal"}.get(self.op, "range")

    def range(self, base: float | None = None) -> Range:
        """The accepted values, with baseline references resolved against ``base``."""
        a = self.a.resolve(base)
        if self.op == ">=":
            return Range(a, math.inf)
        if self.op == ">":
            return Range(a, math.inf, low_open=True)
        if self.op == "<=":
            return Range(-math.inf, a)
        if self.op == "<":
            return Range(-math.inf, a, high_open=True)
        if self.op == "==":
            return Range(a, a)
        assert self.b is not None
        b = self.b.resolve(base)
        if self.op == "+-":
            return Range(a - b, a + b)
        return Range(min(a, b), max(a, b))

    def holds(self, value: float | None, base: float | None = None) -> bool:
        """True when ``value`` satisfies the expression; an undefined value never does."""
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return False
        return self.range(base).contains(value)

    def __str__(self) -> str:
        if self.op == "+-":
            return f"{self.a} +- {self.b}"
        if self.op == "between":
            return f"between {self.a} and {self.b}"
        return f"{self.op} {self.a}"


_TOKEN = re.compile(
    r"\s*(?:(?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)"
    r"|(?P<op>\+/-|\+-|±|>=|<=|==|≥|≤|>|<|\+|-|\*|/)"
    r"|(?P<word>[A-Za-z_][A-Za-z_0-9]*))"
)
_OP_ALIASES = {"±": "+-", "+/-": "+-", "≥": ">=", "≤": "<="}


def _syntax_error(text: str, context: str, expected: str, pos: int) -> NeuronProbeError:
    at = f"at position {pos}" if pos < len(text.rstrip()) else "at the end"
    return NeuronProbeError(f"cannot parse claim {context!r}: expected {expected} {at} of {text!r} (forms: {_FORMS})")


def _tokenize(text: str, context: str) -> list[tuple[str, str, int]]:
    """``(kind, value, position)`` tokens; kind is ``num``, ``op`` or ``word``."""
    tokens: list[tuple[str, str, int]] = []
    pos = 0
    stripped = text.rstrip()
    while pos < len(stripped):
        m = _TOKEN.match(stripped, pos)
        if m is None:
            where = len(stripped) - len(stripped[pos:].lstrip())
            raise _syntax_error(text, context, f"an operator, a number or 'baseline', found {stripped[where]!r}", where)
        kind = m.lastgroup or ""
        value = m.group(kind)
        if kind == "op":
            value = _OP_ALIASES.get(value, value)
        elif kind == "word":
            value = value.lower()
        tokens.append((kind, value, m.start(kind)))
        pos = m.end()
    return tokens


class _Cursor:
    """A position in the tokens of one expression."""

    def __init__(self, text: str, context: str | None) -> None:
        self.text = text
        self.context = context if context is not None else text
        self.tokens = _tokenize(text, self.context)
        self.i = 0

    def fail(self, expected: str, pos: int | None = None) -> NoReturn:
        if pos is None:
            pos = self.tokens[self.i][2] if self.i < len(self.tokens) else len(self.text.rstrip())
        raise _syntax_error(self.text, self.context, expected, pos)

    def peek(self) -> tuple[str, str]:
        if self.i < len(self.tokens):
            kind, value, _ = self.tokens[self.i]
            return kind, value
        return "end", ""

    def take(self) -> tuple[str, str]:
        tok = self.peek()
        self.i += 1
        return tok

    def found(self) -> str:
        kind, value = self.peek()
        return "nothing" if kind == "end" else repr(value)

    def expect_end(self) -> None:
        if self.peek()[0] != "end":
            self.fail(f"the end of the expression, found {self.found()}")


def _number(c: _Cursor, what: str = "a number") -> float:
    sign = 1.0
    kind, value = c.peek()
    if kind == "op" and value in ("-", "+"):
        c.take()
        sign = -1.0 if value == "-" else 1.0
        kind, value = c.peek()
    if kind != "num":
        c.fail(f"{what}, found {c.found()}")
    number = float(value)
    if math.isinf(number):
        c.fail(f"a finite number, found {value!r} (too large: it overflows to infinity)")
    c.take()
    return sign * number


def _operand(c: _Cursor) -> Operand:
    kind, value = c.peek()
    if kind == "word" and value in REFERENCES:
        ref = value
        c.take()
        kind, value = c.peek()
        if kind == "op" and value in ("+", "-", "*", "/"):
            c.take()
            arg = _number(c, f"a number after '{ref} {value}'")
            if value == "/" and arg == 0:
                c.fail("a non-zero divisor")
            return Operand(arg, ref=ref, op=value)
        return Operand(ref=ref)
    if kind == "word":
        c.fail(f"a number or 'baseline' (or 'previous', 'best'), found {value!r}")
    return Operand(_number(c, "a number or 'baseline'"))


def _between(c: _Cursor) -> Expr:
    """``between LO and HI`` (after the word 'between')."""
    lo = _operand(c)
    k, v = c.take()
    if (k, v) != ("word", "and"):
        c.i -= 1
        c.fail(f"'and' after 'between {lo}', found {c.found()}")
    hi = _operand(c)
    c.expect_end()
    if lo.ref and hi.ref and lo.ref != hi.ref:
        c.fail(f"one reference value, not both {lo.ref!r} and {hi.ref!r}", 0)
    if not lo.baseline and not hi.baseline and lo.value > hi.value:
        c.fail(f"a lower bound first ('between {format_literal(hi.value)} and {format_literal(lo.value)}')", 0)
    return Expr("between", lo, hi, text=c.text.strip())


def _tolerance(c: _Cursor) -> Expr:
    """``CENTRE +- TOL``."""
    centre = _operand(c)
    k, v = c.peek()
    if (k, v) != ("op", "+-"):
        if centre.baseline:
            c.fail(f"'+-' after '{centre}', found {c.found()}")
        c.fail(f"'+-' after {format_literal(centre.value)} (or an operator such as '>=' before it), found {c.found()}")
    c.take()
    tol = _number(c, "a tolerance (a number)")
    if tol < 0:
        c.fail("a non-negative tolerance")
    if not centre.baseline and math.isinf(abs(centre.value) + tol):
        c.fail(f"a centre and tolerance whose sum is finite, found {format_literal(centre.value)} +- {tol!r}", 0)
    c.expect_end()
    return Expr("+-", centre, Operand(tol), text=c.text.strip())


def _parse(c: _Cursor) -> Expr:
    kind, value = c.peek()
    if kind == "end":
        c.fail("an expression")
    if kind == "op" and value in (">=", ">", "<=", "<", "=="):
        c.take()
        a = _operand(c)
        c.expect_end()
        return Expr(value, a, text=c.text.strip())
    if kind == "word" and value == "between":
        c.take()
        return _between(c)
    if kind == "op" and value in ("+-", "*", "/"):
        c.fail(f"a number or 'baseline' before {value!r}")
    return _tolerance(c)


def parse_expr(text: str, *, context: str | None = None) -> Expr:
    """Parse an expression such as ``">= 0.8"`` or ``"baseline +- 0.1"``.

    Raises :class:`NeuronProbeError` naming ``context`` (default: ``text``) and what was expected.
    """
    if not isinstance(text, str):
        raise NeuronProbeError(f"expected an expression string such as '>= 0.8', got {text!r}")
    unit = UNIT_CLAIM.fullmatch(text.strip())
    if unit is not None:
        return Expr("==", Operand(text=unit.group(1)), text=text.strip())
    return _parse(_Cursor(text, context))


#: ``== L2.N470``: the one claim on a name rather than a number (a unit of the attribution sweep).
UNIT_CLAIM = re.compile(r"==\s*(L\d+\.[NH]\d+)")
