"""What a numba kernel's compiled code counts with numba's runtime (NRT): for tests that keep
per-sample and per-line kernels free of atomic reference counting (see
:mod:`filodb.model.borrow`)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numba as nb


def counted(fn: Callable[..., Any], *args: Any) -> list[str]:
    """The values whose references the Python function ``fn``, compiled here (without the
    cache: a cached kernel cannot be inspected) and called with ``args``, counts in its own
    compiled function (its wrapper left out): one entry an NRT increment or decrement. The
    kernel's array arguments (``arg.<name>.0``) are counted once a call."""
    kernel = nb.njit(nogil=True)(fn)
    kernel(*args)
    ir = next(iter(kernel.inspect_llvm().values()))
    named = [(re.match(r'[^@]*@"?([^"(]*)', f), f) for f in re.split(r"\ndefine ", ir)[1:]]
    own = [f for m, f in named if m and m[1].startswith("_ZN") and "cpython" not in m[1]]
    call = r"call void @NRT_(?:incref|decref)\(ptr (?:nonnull )?%([\w.]+)"
    return [v for f in own for v in re.findall(call, f)]
