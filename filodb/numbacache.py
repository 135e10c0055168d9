"""Where numba keeps the compiled kernels: a directory per state of the package's sources.

numba's own cache checks the stamp of the file that holds a kernel, not of the modules whose
jitted functions it calls (a kernel in ``recordpack.py`` inlines ``lz4.py``'s functions): after
an edit, a merge or an upgrade in place that leaves the caller's file alone, the old machine
code would be loaded. So the cache lives in ``numba-<digest>``, the digest taken over every
source file's path, modification time and size (about 1 ms): any change to the package starts
a fresh cache, and all processes of one tree share theirs.

The directory is the package's ``__pycache__`` when that is writable, else
``~/.cache/filodb``. ``NUMBA_CACHE_DIR`` set by the user is left as it is (one inherited from a parent
process's :func:`configure` is computed again: the child may run other sources). Caches of other
states untouched for a day are removed.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

try:  # the builtin module: hashlib would load OpenSSL's libcrypto (~4 MB resident) for nothing
    from _blake2 import blake2b
except ImportError:  # an interpreter built without it
    from hashlib import blake2b

PREFIX = "numba-"
STALE_S = 86_400.0


def sources_digest(root: Path) -> str:
    """A digest of every ``*.py`` under ``root``: relative path, mtime and size."""
    h = blake2b(digest_size=8)
    base = len(str(root))
    for d, dirs, files in os.walk(root):
        dirs[:] = sorted(x for x in dirs if x != "__pycache__")
        for f in sorted(files):
            if f.endswith(".py"):
                st = os.stat(os.path.join(d, f))
                h.update(f"{d[base:]}/{f}:{st.st_mtime_ns}:{st.st_size};".encode())
    return h.hexdigest()


def cache_dir(root: Path, digest: str) -> Path:
    """The cache directory for ``digest``: under the package if writable, else the user's."""
    for parent in (root / "__pycache__", Path.home() / ".cache" / "filodb"):
        try:
            parent.mkdir(parents=True, exist_ok=True)
            if os.access(parent, os.W_OK):
                return parent / f"{PREFIX}{digest}"
        except OSError:
            continue
    return root / "__pycache__" / f"{PREFIX}{digest}"  # numba falls back when unwritable


def prune(current: Path, now: float | None = None) -> None:
    """Remove the caches of other source states not touched for :data:`STALE_S`."""
    now = time.time() if now is None else now
    try:
        siblings = list(current.parent.glob(f"{PREFIX}*"))
    except OSError:
        return
    for p in siblings:
        try:
            if p != current and now - p.stat().st_mtime > STALE_S:
                shutil.rmtree(p, ignore_errors=True)
        except OSError:
            continue


def is_cold() -> bool:
    """True when the kernel cache in use holds no kernel yet: this process (and the tree it
    starts) compiles every kernel it runs, as after an install, an upgrade or an edit."""
    chosen = os.environ.get("NUMBA_CACHE_DIR")
    if not chosen:
        return False
    try:
        return next(Path(chosen).rglob("*.nbi"), None) is None
    except OSError:
        return True


def configure(root: Path | None = None) -> Path | None:
    """Point numba's cache at this source state's directory (unless the user chose one)."""
    chosen = os.environ.get("NUMBA_CACHE_DIR")
    if chosen and not Path(chosen).name.startswith(PREFIX):  # a parent's choice is redone
        return None
    root = Path(__file__).resolve().parent if root is None else root
    path = cache_dir(root, sources_digest(root))
    os.environ["NUMBA_CACHE_DIR"] = str(path)
    config = sys.modules.get("numba.core.config")
    if config is not None:  # numba imported before filodb: it read the environment already
        config.CACHE_DIR = str(path)  # type: ignore[attr-defined]
    if not path.exists():
        prune(path)
    return path
