"""The web processes of one ``filodb up --web-processes N`` and the directory they share.

``filodb up`` gives each web process the same directory (``filodb web --shared-dir``):
``query-slots/`` holds the slots of ``max_query_concurrency``
(:class:`~filodb.web.query_limits.FileSlots`) and ``ready/`` a file per process that has
started serving (:func:`mark_serving`). Until ``N`` have, the tier is still starting: the
health check answers 503 (``web_processes`` in its body says how many serve), so whoever
waits for ``filodb up`` (the supervisor's "FiloDB is up", tests, benchmarks) does not load
a tier whose other processes are still importing and warming up. A process restarted later
does not make the tier unhealthy: the others serve meanwhile.
"""

from __future__ import annotations

import os
from pathlib import Path

from flask import Flask, current_app

EXTENSION = "filodb_web_processes"


def init_app(app: Flask, shared_dir: Path, processes: int) -> None:
    app.extensions[EXTENSION] = (Path(shared_dir), processes)


def slots_dir(shared_dir: Path) -> Path:
    return Path(shared_dir) / "query-slots"


def mark_serving(shared_dir: Path) -> None:
    """This process accepts connections now."""
    ready = Path(shared_dir) / "ready"
    ready.mkdir(parents=True, exist_ok=True)
    (ready / str(os.getpid())).touch()


def starting() -> dict[str, int] | None:
    """``{"serving": k, "of": N}`` while fewer than the N web processes of this run have ever
    served; None once they all have, or for a web process of its own."""
    shared = current_app.extensions.get(EXTENSION)
    if shared is None:
        return None
    directory, n = shared
    try:
        k = len(os.listdir(directory / "ready"))
    except FileNotFoundError:
        k = 0
    return {"serving": k, "of": n} if k < n else None
