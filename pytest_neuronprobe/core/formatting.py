"""Numbers as text: the one home of every number format the package prints.

Each function keeps one established output format (claim messages, comparison tables, the HTML
report, result reprs, assertion messages); an undefined number prints as :data:`UNDEFINED`.
"""

from __future__ import annotations

import math
import numbers

__all__ = [
    "UNDEFINED",
    "finite_number",
    "format_3f",
    "format_cell",
    "format_distinct",
    "format_fixed",
    "format_general",
    "format_interval",
    "format_literal",
    "format_p_value",
    "format_short",
    "format_significant",
    "format_spec",
]

UNDEFINED = "undefined"


def finite_number(value: object) -> float | None:
    """A finite float, or ``None`` for None/NaN/inf/non-numbers (bools are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None  # numpy's bool_ is not a numbers.Real; its integers and floats are
    f = float(value)
    return f if math.isfinite(f) else None


def format_literal(x: float) -> str:
    """A number as the user would write it (for echoing expressions): ``3``, ``0.25``."""
    return str(int(x)) if x == int(x) and abs(x) < 1e15 else repr(x)


def format_short(x: float | None, digits: int = 3) -> str:
    """Whole numbers exactly, else ``digits`` decimals trimmed (``0.812``) or ``digits`` significant digits."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return UNDEFINED
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if x == int(x) and abs(x) < 1e15:
        return str(int(x))
    if 1e-3 <= abs(x) < 1e5:
        return f"{x:.{digits}f}".rstrip("0").rstrip(".")
    return f"{x:.{digits}g}"


def format_distinct(x: float, *others: float) -> str:
    """:func:`format_short` of ``x`` with enough digits not to look equal to any of ``others`` it differs from."""
    for digits in range(3, 17):
        s = format_short(x, digits)
        if all(o == x or s != format_short(o, digits) for o in others if math.isfinite(o)):
            return s
    return repr(x)


def format_cell(x: float | None, sign: bool = False, count: bool = False) -> str:
    """A comparison-table cell: 4 decimals or ``.3e``; ``sign`` adds ``+``; ``count`` prints whole numbers."""
    if x is None or not math.isfinite(x):
        return UNDEFINED
    if x == 0:
        return "0"
    if count and x == int(x) and abs(x) < 1e15:
        return f"{int(x):+d}" if sign else str(int(x))
    if 1e-3 <= abs(x) < 1e5:
        return f"{x:+.4f}" if sign else f"{x:.4f}"
    return f"{x:+.3e}" if sign else f"{x:.3e}"


def format_fixed(value: object, spec: str = ".4f") -> str:
    """``value`` formatted with ``spec``; integers (also numpy's) as whole numbers."""
    f = finite_number(value)
    if f is None:
        return UNDEFINED
    if isinstance(value, numbers.Integral):
        return str(int(value))
    return format(f, spec)


def format_p_value(value: object) -> str:
    """A p-value: ``< 1e-300`` for 0, ``.2e`` below 1e-3, else 4 decimals."""
    f = finite_number(value)
    if f is None:
        return UNDEFINED
    if f == 0.0:
        return "< 1e-300"
    return f"{f:.2e}" if f < 1e-3 else f"{f:.4f}"


def format_general(value: object) -> str:
    """Integers whole, 0 as ``0``, ``.3e`` outside [1e-3, 1e5), else up to 4 decimals trimmed."""
    f = finite_number(value)
    if f is None:
        return UNDEFINED
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if f == 0.0:
        return "0"
    if abs(f) < 1e-3 or abs(f) >= 1e5:
        return f"{f:.3e}"
    return f"{f:.4f}".rstrip("0").rstrip(".")


def format_interval(low: object, high: object, spec: str = ".3f") -> str | None:
    """``[low, high]`` with ``spec``; ``None`` when either end is undefined."""
    lo, hi = finite_number(low), finite_number(high)
    if lo is None or hi is None:
        return None
    return f"[{lo:{spec}}, {hi:{spec}}]"


def format_spec(x: object, spec: str) -> str:
    """``format(x, spec)`` for a number (NaN prints ``nan``); anything else (an undefined value) is undefined."""
    return format(x, spec) if isinstance(x, numbers.Real) else UNDEFINED


def format_significant(x: object) -> str:
    """4 significant digits (3 below 1e-3); an undefined value with its ``reason`` attribute, if any."""
    if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x):
        return f"{x:.4g}" if abs(x) >= 1e-3 or x == 0 else f"{x:.3g}"
    reason = getattr(x, "reason", None)
    return f"{UNDEFINED} ({reason})" if reason else UNDEFINED


def format_3f(x: object) -> str:
    """Three decimals for a float, else undefined."""
    return f"{x:.3f}" if isinstance(x, float) else UNDEFINED
