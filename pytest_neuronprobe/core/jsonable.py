"""The one JSON sanitiser: plain JSON values from results, summaries and records."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TypeAlias

JSONValue: TypeAlias = "bool | int | float | str | list[JSONValue] | dict[str, JSONValue] | None"


def jsonable(obj: object) -> JSONValue:
    """Plain JSON types: non-finite floats and Undefined become None, numpy arrays and scalars lists/numbers,
    mappings dicts with string keys, tuples lists; anything else its float, or failing that its str."""
    if obj is None or isinstance(obj, (bool, str, int)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    tolist = getattr(obj, "tolist", None)
    if callable(tolist):  # numpy arrays and scalars
        return jsonable(tolist())
    try:
        f = float(obj)  # type: ignore[arg-type]  # Undefined and other float-likes
    except (TypeError, ValueError):
        return str(obj)
    return f if math.isfinite(f) else None
