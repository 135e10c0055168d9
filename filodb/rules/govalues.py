"""Values as Go's ``text/template`` prints and tests them (``fmt.Print``, emptiness), and the
error of template parsing and execution."""

from __future__ import annotations

import math
from typing import Any

from filodb.errors import BadInputError
from filodb.model.numfmt import format_value_g


class TemplateError(BadInputError):
    pass


def go_str(v: Any) -> str:
    """``fmt.Print``'s text of a value."""
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return format_value_g(v) if math.isfinite(v) and v != 0 else _special(v)
    if isinstance(v, int):
        return str(v)
    if v is None:
        return "<no value>"
    if isinstance(v, dict):
        return "map[" + " ".join(f"{go_str(k)}:{go_str(v[k])}" for k in sorted(v)) + "]"
    if isinstance(v, list | tuple):
        return "[" + " ".join(go_str(x) for x in v) + "]"
    return str(v)


def _special(v: float) -> str:
    if v != v:
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return "-0" if math.copysign(1, v) < 0 else "0"


def truthy(v: Any) -> bool:
    if v is None:
        return False
    if isinstance(v, bool):
        return v
    if isinstance(v, int | float):
        return v != 0
    if isinstance(v, str | list | tuple | dict):
        return len(v) > 0
    return True
