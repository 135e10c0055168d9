"""HTTP door benchmark: CPU the web process of ``filodb up`` spends per ingestion body.

Prints one JSON object per line: ``{"metric", "value", "unit", ...context}``.

    python bench/web_door.py                              # 10 000 series, 20 scrapes, 4 senders
    python bench/web_door.py --only influx_http --up-arg=--web-processes=2
    python bench/web_door.py --wsgi                       # in process: lean path vs Flask

A fresh ``filodb up`` per door; ``bench/door.py``'s live-shape bodies (one sample per series,
2000 series a body, dealt to ``--senders`` keep-alive connections), encoded before timing.
The first scrape is sent to warm the caches (every series known, as for a steady sender), then
the others; the figures cover those: ``web_cpu_ms_per_body`` (user + system CPU of every web
process, from ``/proc/<pid>/stat``, over the bodies acknowledged: what the HTTP path costs
beside the door's own work, which ``bench/door.py`` measures in process),
``worker_cpu_ms_per_body`` the same for the worker nodes, ``other_cpu_ms_per_body`` for the
rest of the tree (Redis, the supervisor), ``client_cpu_ms_per_body`` for this process's
sending threads (``http.client``, as ``bench/ingest.py`` sends), and ``web_ack_samples_per_s``. No
peer runs here: ``bench/ingest.py`` compares the doors with Prometheus and VictoriaMetrics.

``--wsgi``: no HTTP server; the web app is called in process (real Redis, one scrape of the
bodies above, sent again each pass: their timestamps equal the newest the door routed, so its
out-of-order check passes them, at the cost it pays for a steady sender's newer ones),
once through the lean ingestion path (:mod:`filodb.web.ingest_wsgi`) and once through the
Flask app behind it, alternately, best of ``--repeat`` passes: ``wsgi_cpu_ms_per_body`` (the
calling thread's CPU) for each, the difference being what Flask's request machinery costs.
``--ooo-check-off`` adds a third path, the lean one with the doors' out-of-order check skipped
(``path=lean_no_ooo_check``): ``lean`` minus it is what the check costs a body.
``--threads N`` calls it from N threads at once (the process's CPU per body): whether the
door's work grows under concurrency (it did not: 4 threads cost what 1 does, ~0.9 ms).
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from door import sender_bodies  # noqa: E402
from ingest import RW_HEADERS, cpu_s, post_all  # noqa: E402
from store import emit  # noqa: E402

from filodb.testing.cluster import UpProcess  # noqa: E402

if TYPE_CHECKING:
    from collections.abc import Callable

_URLS = {"remote_write": ("/api/v1/write", RW_HEADERS),
         "influx_http": ("/write?db=prometheus", {"Content-Type": "text/plain"})}  # fmt: skip


def run(door: str, a: argparse.Namespace, workdir: Path) -> None:
    parts = sender_bodies(door, a.series, a.per_body, a.senders, a.samples)
    per_scrape = -(-a.series // a.senders // a.per_body)  # bodies of one scrape of a sender
    warm = [p[:per_scrape] for p in parts]
    timed = [p[per_scrape:] for p in parts]
    n_bodies = sum(map(len, timed))
    n_samples = a.series * (a.samples - 1)
    env = {"FILODB_INFLUX_PORT": "0", "FILODB_GRAPHITE_PORT": "0",
           **dict(kv.split("=", 1) for kv in a.env)}  # fmt: skip
    up = UpProcess(workdir / f"filodb-{door}", shards=a.shards, extra=list(a.up_arg),
                   env=env).start()  # fmt: skip
    try:
        path, headers = _URLS[door]
        post_all(up.url + path, warm, headers)
        web, workers = up.pids("filodb web"), up.pids("filodb worker")
        rest = [p for p in up.pids("") if p not in web and p not in workers]
        w0, k0, r0, c0 = cpu_s(web), cpu_s(workers), cpu_s(rest), cpu_s([os.getpid()])
        took = post_all(up.url + path, timed, headers)
        w1, k1, r1, c1 = cpu_s(web), cpu_s(workers), cpu_s(rest), cpu_s([os.getpid()])
    finally:
        up.stop()
    ctx = {"door": door, "series": a.series, "bodies": n_bodies, "senders": a.senders,
           "per_body": a.per_body, "shards": a.shards, "web_processes": len(web),
           "up_args": " ".join(a.up_arg)}  # fmt: skip
    emit("web_cpu_ms_per_body", 1000 * (w1 - w0) / n_bodies, "ms", **ctx)
    emit("worker_cpu_ms_per_body", 1000 * (k1 - k0) / n_bodies, "ms", **ctx)
    emit("other_cpu_ms_per_body", 1000 * (r1 - r0) / n_bodies, "ms", what="redis, supervisor",
         **ctx)  # fmt: skip
    emit("client_cpu_ms_per_body", 1000 * (c1 - c0) / n_bodies, "ms", what="bench client", **ctx)
    emit("web_ack_samples_per_s", n_samples / took, "samples/s", **ctx)


def run_wsgi(door: str, a: argparse.Namespace, workdir: Path) -> None:
    from werkzeug.test import EnvironBuilder

    from filodb.config import Config
    from filodb.redisproc import start_redis
    from filodb.web import create_app, ingest

    data = [b for p in sender_bodies(door, a.series, a.per_body, a.senders, 1) for b in p]
    path, headers = _URLS[door]
    route, _, query = path.partition("?")
    envs = [EnvironBuilder(path=route, query_string=query, method="POST", data=b,
                           headers=headers).get_environ() for b in data]  # fmt: skip
    rp = start_redis(workdir / f"redis-{door}")
    try:
        app = create_app(Config(redis_url=rp.url))
        app.extensions["filodb"].shard_map.create_dataset("prometheus", a.shards, 1)
        lean = app.wsgi_app
        paths: dict[str, Callable] = {"lean": lean, "flask": lean.flask_wsgi}  # type: ignore[attr-defined]
        doors = list(app.extensions[ingest.EXTENSION].values())
        epochs = {d: d.epochs for d in doors}
        if a.ooo_check_off:
            paths["lean_no_ooo_check"] = lean

        def check(on: bool) -> None:
            """The doors' out-of-order check on, or off (no epoch: the check is skipped)."""
            for d in doors:
                d.epochs = epochs[d] if on else (lambda _ds: None)

        def send(wsgi: Callable, at: range, status: list[str]) -> None:
            for i in at:
                env = {**envs[i], "wsgi.input": io.BytesIO(data[i])}
                b"".join(wsgi(env, lambda s, h, *_: status.append(s)))

        def one_pass(wsgi: Callable) -> float:
            """CPU a body: the calling thread's, or the process's over ``--threads``."""
            status: list[str] = []
            if a.threads <= 1:
                t = time.thread_time()
                send(wsgi, range(len(data)), status)
                took = time.thread_time() - t
            else:
                t = time.process_time()
                ths = [threading.Thread(target=send, args=(wsgi, range(k, len(data), a.threads),
                                                           status)) for k in range(a.threads)]  # fmt: skip
                for th in ths:
                    th.start()
                for th in ths:
                    th.join()
                took = time.process_time() - t
            assert len(status) == len(data) and all(s.startswith("204") for s in status), status
            return took / len(data)

        best = {}
        for name, w in paths.items():  # warm
            check(name != "lean_no_ooo_check")
            best[name] = min(one_pass(w) for _ in range(2))
        for _ in range(a.repeat):
            for name, w in paths.items():
                check(name != "lean_no_ooo_check")
                best[name] = min(best[name], one_pass(w))
    finally:
        rp.stop()
    for name, secs in best.items():
        emit("wsgi_cpu_ms_per_body", 1000 * secs, "ms", door=door, path=name, bodies=len(data),
             series=a.series, shards=a.shards, repeat=a.repeat, threads=a.threads)  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--series", type=int, default=10_000)
    ap.add_argument("--samples", type=int, default=20, help="scrapes; the first one warms")
    ap.add_argument("--per-body", type=int, default=2000)
    ap.add_argument("--senders", type=int, default=4)
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--only", choices=list(_URLS), action="append")
    ap.add_argument("--up-arg", action="append", default=[], help="extra `filodb up` argument")
    ap.add_argument("--env", action="append", default=[], help="FILODB_X=v for filodb up")
    ap.add_argument("--wsgi", action="store_true", help="in process: lean path vs Flask")
    ap.add_argument("--repeat", type=int, default=7, help="passes of --wsgi (best counts)")
    ap.add_argument("--ooo-check-off", action="store_true",
                    help="--wsgi: also the lean path with the doors' out-of-order check off")  # fmt: skip
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="--wsgi: threads calling the app at once (process CPU per body)",
    )
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="web-door-") as tmp:
        for door in a.only or list(_URLS):
            (run_wsgi if a.wsgi else run)(door, a, Path(tmp))


if __name__ == "__main__":
    main()
