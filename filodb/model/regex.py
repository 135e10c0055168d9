"""Regular expressions as Prometheus has them: RE2 syntax and semantics, fully anchored.

Every user-supplied pattern (label matchers ``=~``/``!~``, ``label_replace``) is compiled here
with RE2 (the ``google-re2`` binding): matching is linear in the input, so no pattern can hold
a thread (and the GIL) for minutes as a backtracking engine can with ``(a+)+``. A pattern RE2
refuses is a :class:`~filodb.errors.BadInputError` naming it.

Prometheus anchors a matcher's pattern as ``^(?s:<pattern>)$``: ``.`` matches a newline too.
The binding costs about a microsecond per call, so answers are remembered per (pattern, label
value) in one process-wide bounded memo: a dashboard's regex over an index's values is paid for
once, and the memo's size does not grow with the number of patterns (a memo per pattern of
64 k values, times the 1 024 patterns kept compiled, could reach gigabytes).
"""

from __future__ import annotations

import functools
from typing import Any

import re2

from filodb.errors import BadInputError
from filodb.model.cache import BoundedCache

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # RE2 would print every refused pattern on stderr
_MAX_REMEMBERED = 1 << 18  # (pattern, value) answers per generation: at most ~50 MB in all
_ANSWERS: BoundedCache[tuple[str, str], bool] = BoundedCache(_MAX_REMEMBERED)


class Regex:
    """One anchored pattern; :meth:`fullmatch` answers for a whole label value."""

    __slots__ = ("pattern", "_rx")

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self._rx = _compile(f"(?s:{pattern})", pattern)

    def fullmatch(self, value: str) -> bool:
        key = (self.pattern, value)
        hit = _ANSWERS.get(key)
        if hit is None:
            hit = self._rx.fullmatch(value) is not None
            _ANSWERS.put(key, hit)
        return hit


def _compile(text: str, pattern: str) -> Any:
    try:
        return re2.compile(text, _OPTIONS)
    except re2.error as e:
        reason = (
            e.args[0].decode(errors="replace")
            if e.args and isinstance(e.args[0], bytes)
            else str(e)
        )
        raise BadInputError(f"invalid regular expression {pattern!r}: {reason}") from None


@functools.lru_cache(maxsize=1024)
def compile_matcher(pattern: str) -> Regex:
    """The anchored matcher of ``pattern`` (shared by every query that uses it)."""
    return Regex(pattern)


@functools.lru_cache(maxsize=256)
def compile_replace(pattern: str) -> Any:
    """An anchored pattern with its groups, for ``label_replace`` (``match`` then ``expand``)."""
    return _compile(f"^(?s:{pattern})$", pattern)
