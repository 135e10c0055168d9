"""Loaded numba kernels keep their linking module as bitcode, parsed only when needed.

numba caches a kernel as its machine code plus the bitcode of its "module for linking": the
LLVM IR another kernel links in when it calls this one (so it can be inlined there). Loading a
kernel from the cache parses that bitcode into an LLVM module and keeps it for the life of the
process, ~0.3 MB resident a kernel (an LLVM module in memory is several times its bitcode),
although a warm process compiles nothing and so never links against it. A worker loads some
70 kernels, a web process a dozen.

:func:`install` makes a loaded kernel keep the bitcode's bytes instead (~50 kB a kernel) and
parse them the first time another compile asks for the module. The machine code, and the
symbols the execution engine resolves, come from the cached object as before. Dropping the
module without keeping its bytes broke those later compiles ("library unfit for linking").

It reaches into numba's code library (``numba.core.codegen.CPUCodeLibrary``, numba 0.5x-0.6x):
when those names are missing :func:`install` leaves numba as it is and says so.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)

_BITCODE = "_filodb_link_bitcode"


def install() -> bool:
    """Patch numba's code library once in this process; False if numba is not as expected."""
    try:
        import llvmlite.binding as ll  # type: ignore[import-untyped]
        from numba.core import codegen
    except ImportError:
        return False
    lib_cls: Any = getattr(codegen, "CPUCodeLibrary", None)
    unserialize = getattr(lib_cls, "_unserialize", None)
    for_linking = getattr(lib_cls, "_get_module_for_linking", None)
    if unserialize is None or for_linking is None or not hasattr(unserialize, "__func__"):
        log.warning("numba's code library is not as expected: loaded kernels keep their IR")
        return False
    if getattr(lib_cls, "_filodb_lazy_link", False):
        return True
    load = unserialize.__func__

    def _unserialize(cls: Any, cg: Any, state: Any) -> Any:
        self = load(cls, cg, state)
        if state[1] == "object" and getattr(self, "_shared_module", None) is not None:
            setattr(self, _BITCODE, state[2][1])  # the same bytes numba just parsed
            self._shared_module = None
        return self

    def _get_module_for_linking(self: Any) -> Any:
        bitcode = getattr(self, _BITCODE, None)
        if bitcode is not None and self._shared_module is None:
            self._shared_module = ll.parse_bitcode(bitcode)
            setattr(self, _BITCODE, None)
        return for_linking(self)

    lib_cls._unserialize = classmethod(_unserialize)
    lib_cls._get_module_for_linking = _get_module_for_linking
    lib_cls._filodb_lazy_link = True
    return True
