"""An array borrowed inside a numba kernel: the same data, without the runtime's reference count.

numba counts references to an array's memory with atomic increments and decrements (its
runtime, NRT). A kernel that hands an array to a helper in a loop, inlined or not, may pay a
pair of them each iteration: the helper's argument is a new reference, and LLVM's pass that
prunes the pairs gives up on loops with several exits. Measured on ``filodb up`` with Influx
bodies over HTTP (``perf`` on the web process), those atomics cost as much CPU as the
line-protocol kernel's own work. A *borrowed* array (:func:`borrowed`) is the same view with
no memory-info pointer: numba's runtime skips a null one (a compare, no atomic).

Borrow only arrays that outlive every use of the borrowed view inside the kernel (a kernel's
arguments, or arrays it allocated and keeps in a variable), and never return a borrowed
view or anything that views it: nothing keeps its memory alive.
"""

from __future__ import annotations

from typing import Any

from numba import types
from numba.core import cgutils
from numba.extending import intrinsic


@intrinsic
def _borrowed(typingctx: Any, arr: Any) -> Any:  # pragma: no cover - numba
    """``arr`` as a view whose references are not counted (see the module's notes)."""
    if not isinstance(arr, types.Array):
        return None

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        src = context.make_array(arr)(context, builder, value=args[0])
        out = context.make_array(arr)(context, builder)
        null: Any = cgutils.get_null_value
        out.meminfo = null(out.meminfo.type)
        out.parent = null(out.parent.type)
        out.nitems = src.nitems
        out.itemsize = src.itemsize
        out.data = src.data
        out.shape = src.shape
        out.strides = src.strides
        return out._getvalue()

    return arr(arr), codegen


# called from kernels as ``borrowed(a)`` (numba passes the typing context itself)
borrowed: Any = _borrowed
