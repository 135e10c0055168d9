"""New series at the doors: what a series the web process (or the gateway) has not seen before costs.

Prints one JSON object per line: ``{"metric", "value", "unit", ...context}``.

    python bench/new_series.py                     # 2000 series a body, 5 bodies, both doors
    python bench/new_series.py --per-body 2000 --bodies 10 --repeat 9 --only influx_http

A door resolves a body's series by their raw key bytes (:class:`~filodb.model.identity.
SeriesKeyCache`); a series seen before costs a numba lookup, a new one its label set and
identity (part key, key, route). Bodies are an exporter's shape (5 labels: ``__name__`` among
50 metrics, ``job``, ``instance`` new every 50 series, ``mode``, ``cpu``), every series of
every body new (the first scrape of a fleet, or churn), as remote-write bodies
(:func:`~filodb.prom.remote_write.decode_write_request`) and Influx lines
(:func:`~filodb.gateway.influx.parse_lines`) and tagged Graphite paths
(:func:`~filodb.gateway.graphite.parse_graphite`, the gateway's TCP door), encoded before timing. A pass forgets the
door's cache, then decodes every body (``door_new_series_us``: wall us a series, the whole
decode of a body included), then decodes them all again (``door_seen_series_us``); the best
of ``--repeat`` passes counts. ``path``: ``fast`` (the doors as they run: new series built in
bulk, :mod:`filodb.model.fastkeys`) or ``python`` (the per-key Python path alone, as before).
``new_series_stage_us`` splits the fast path: the door's span kernel and the identity kernel
(``kernels``), and the label-set strings and tuples built in Python (``labels``).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from store import emit  # noqa: E402

from filodb.gateway import (  # noqa: E402
    graphite,
    graphite_fast,
    graphite_keys,
    influx,
    influx_fast,
    influx_keys,
)
from filodb.model import fastkeys  # noqa: E402
from filodb.model.batch import SampleBatch  # noqa: E402
from filodb.model.identity import SeriesKeyCache  # noqa: E402
from filodb.model.labels import intern_labels  # noqa: E402
from filodb.prom import label_spans  # noqa: E402
from filodb.prom import remote_write as rw  # noqa: E402


def _series(n: int, off: int) -> list[list[tuple[str, str]]]:
    return [[("__name__", f"node_metric_{i % 50}"), ("job", "node"),
             ("instance", f"host-{(i + off) // 50}:9100"), ("mode", f"m{i % 7}"),
             ("cpu", str(i % 8))] for i in range(n)]  # fmt: skip


def rw_bodies(n: int, count: int) -> list[bytes]:
    out = []
    for k in range(count):
        series = [intern_labels(sorted(s)) for s in _series(n, (k + 1) * n)]
        batch = SampleBatch(series, np.arange(n, dtype=np.int32),
                            np.full(n, 1_700_000_000_000, np.int64), np.ones(n))  # fmt: skip
        out.append(rw.encode_write_request(batch))
    return out


def influx_bodies(n: int, count: int) -> list[bytes]:
    out = []
    for k in range(count):
        lines = [f"{s[0][1]},{','.join(f'{a}={b}' for a, b in s[1:])} value=1.5 1700000000000000000"
                 for s in _series(n, (k + 1) * n)]  # fmt: skip
        out.append(("\n".join(lines) + "\n").encode())
    return out


def graphite_bodies(n: int, count: int) -> list[bytes]:
    out = []
    for k in range(count):
        lines = [f"{s[0][1]};{';'.join(f'{a}={b}' for a, b in s[1:])} 1.5 1700000000"
                 for s in _series(n, (k + 1) * n)]  # fmt: skip
        out.append(("\n".join(lines) + "\n").encode())
    return out


def _pass(decode: Callable[[bytes], object], cache: SeriesKeyCache, bodies: list[bytes]
          ) -> tuple[float, float]:  # fmt: skip
    cache.forget()
    t = time.perf_counter()
    for b in bodies:
        decode(b)
    new = time.perf_counter() - t
    t = time.perf_counter()
    for b in bodies:
        decode(b)
    return new, time.perf_counter() - t


def _stages(door: str, bodies: list[bytes]) -> tuple[float, float]:
    """(kernels, labels) seconds of the fast path over the keys of ``bodies``."""
    kern = labels = 0.0
    for body in bodies:
        buf = np.frombuffer(body if door != "remote_write" else _raw(body), np.uint8)
        if door == "graphite":
            g = graphite_fast.scan(body)
            t = time.perf_counter()
            got = fastkeys._finish(*graphite_keys._spans(buf, g.key_a, g.key_b, graphite_keys._NAME),
                                   *_WORDS)  # fmt: skip
        elif door == "influx_http":
            f = influx_fast.scan(body, 1_000_000, 1, (2**63 - 1))
            args: tuple = (buf, f.key_a, f.key_b, f.name_a, f.name_b, f.kind, influx_keys._NAME)
            t = time.perf_counter()
            got = fastkeys._finish(*influx_keys._spans(*args), *_WORDS)
        else:
            fields, k = rw._top_fields(buf)
            fields = fields[:k]
            args = (buf, fields[:, 2], fields[:, 3], label_spans._NAME)
            t = time.perf_counter()
            got = fastkeys._finish(*label_spans._spans(*args), *_WORDS)
        t1 = time.perf_counter()
        fastkeys.assemble(*got)
        kern += t1 - t
        labels += time.perf_counter() - t1
    return kern, labels


_WORDS = (fastkeys._NAME, fastkeys._WS, fastkeys._NS)


def _raw(body: bytes) -> bytes:
    import cramjam

    return bytes(cramjam.snappy.decompress_raw(body))


def run(door: str, a: argparse.Namespace) -> None:
    n = a.per_body
    if door == "remote_write":
        bodies = rw_bodies(n, a.bodies + 1)
        decode: Callable[[bytes], object] = rw.decode_write_request
        cache, make = rw.SERIES, rw._fast_series
    elif door == "influx_http":
        bodies = influx_bodies(n, a.bodies + 1)
        decode, cache, make = influx.parse_lines, influx._SERIES, influx_keys.spans
    else:
        bodies = graphite_bodies(n, a.bodies + 1)
        decode, cache, make = graphite.parse_graphite, graphite._SERIES, graphite_keys.spans
    decode(bodies[0])  # numba's kernels loaded
    _stages(door, bodies[:1])
    bodies = bodies[1:]
    series = n * len(bodies)
    ctx = {"door": door, "series": series, "per_body": n}
    for path in ("fast", "python"):
        cache.fast = make if path == "fast" else None
        try:
            best = min((_pass(decode, cache, bodies) for _ in range(a.repeat)), key=lambda x: x[0])
        finally:
            cache.fast = make
        emit("door_new_series_us", best[0] / series * 1e6, "us", path=path, **ctx)
        emit("door_seen_series_us", best[1] / series * 1e6, "us", path=path, **ctx)
    kern, labels = min((_stages(door, bodies) for _ in range(a.repeat)), key=sum)
    emit("new_series_stage_us", kern / series * 1e6, "us", stage="kernels", **ctx)
    emit("new_series_stage_us", labels / series * 1e6, "us", stage="labels", **ctx)


_DOORS = ["remote_write", "influx_http", "graphite"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--per-body", type=int, default=2000)
    ap.add_argument("--bodies", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--only", choices=_DOORS, action="append")
    a = ap.parse_args()
    for door in a.only or _DOORS:
        run(door, a)


if __name__ == "__main__":
    main()
