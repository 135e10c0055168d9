"""Parser benchmark: the ingestion decoders on one core, no network, no log.

Prints one JSON object per line: ``{"metric", "value", "unit", ...context}``.

    python bench/parsers.py            # every parser
    python bench/parsers.py --only remote_write

* ``remote_write``: :func:`filodb.prom.remote_write.decode_write_request` (snappy included) of
  10 k series x 100 samples (also with 10 % zero values, which proto3 leaves out so strides
  vary) and 10 k series x 1 sample (Prometheus's usual shape); ``cold`` empties the label
  cache before each run, ``warm`` reuses it.
* ``influx``: :func:`filodb.gateway.influx.parse_lines`, 100 k lines of two fields each.
* ``graphite``: :func:`filodb.gateway.graphite.parse_graphite`, 100 k tagged lines.
* ``promtext``: :class:`filodb.prom.text.PromTextParser`, 100 k Prometheus text lines.

Each figure is the best of a few runs after a warm-up. No peer runs here (the HTTP and TCP
doors are compared with Prometheus and VictoriaMetrics in ``bench/ingest.py``).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from store import emit  # noqa: E402

from filodb.gateway.graphite import parse_graphite  # noqa: E402
from filodb.gateway.influx import parse_lines  # noqa: E402
from filodb.model.batch import SampleBatch  # noqa: E402
from filodb.model.labels import make_labels  # noqa: E402
from filodb.prom import remote_write  # noqa: E402
from filodb.prom.text import PromTextParser  # noqa: E402

LINES = 100_000


def best_of(
    fn: Callable[[], object], runs: int = 3, before: Callable[[], None] | None = None
) -> float:
    """Seconds of the fastest of ``runs`` calls (``before`` runs untimed before each)."""
    best = float("inf")
    for _ in range(runs):
        if before:
            before()
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def bench_remote_write() -> None:
    rng = np.random.default_rng(0)
    for n_series, n_samples, zeros in ((10_000, 100, 0.0), (10_000, 100, 0.1), (10_000, 1, 0.0)):
        series = [make_labels({"__name__": f"metric_{i % 100}", "instance": f"host-{i}:9100",
                               "job": "node", "env": "prod"}) for i in range(n_series)]  # fmt: skip
        vals = rng.random(n_series * n_samples) * 100
        vals[rng.random(len(vals)) < zeros] = 0.0
        ts = np.tile(1_700_000_000_000 + 15_000 * np.arange(n_samples), n_series)
        body = remote_write.encode_write_request(
            SampleBatch(series, np.repeat(np.arange(n_series), n_samples), ts, vals)
        )
        ctx = {"series": n_series, "samples_per_series": n_samples, "zeros": zeros}
        for cache in ("cold", "warm"):
            clear = remote_write.SERIES.forget if cache == "cold" else None
            dt = best_of(lambda b=body: remote_write.decode_write_request(b), before=clear)
            emit("remote_write_decode_samples_per_s", n_series * n_samples / dt, "samples/s",
                 labels_cache=cache, **ctx)  # fmt: skip


def bench_influx() -> None:
    body = "".join(f"cpu,host=h{i % 1000},dc=eu usage_user={i * 0.5},usage_idle={i}i "
                   f"{1_700_000_000_000_000_000 + i}\n" for i in range(LINES)).encode()  # fmt: skip
    parse_lines(body)
    dt = best_of(lambda: parse_lines(body))
    emit("influx_parse_lines_per_s", LINES / dt, "lines/s", lines=LINES, fields_per_line=2)


def bench_graphite() -> None:
    body = "".join(f"servers.host{i % 1000}.cpu;dc=eu;role=web {i * 0.5} {1_700_000_000 + i // 1000}\n"
                   for i in range(LINES)).encode()  # fmt: skip
    parse_graphite(body)
    dt = best_of(lambda: parse_graphite(body))
    emit("graphite_parse_lines_per_s", LINES / dt, "lines/s", lines=LINES)


def bench_promtext() -> None:
    text = "".join(f'http_requests_total{{instance="host-{i % 1000}:9100",job="api",code="200"}} '
                   f"{i * 0.5} {1_700_000_000_000 + i}\n" for i in range(LINES))  # fmt: skip

    def parse() -> None:
        PromTextParser(openmetrics=False, now_ms=0).feed(text)

    parse()
    dt = best_of(parse)
    emit("promtext_parse_lines_per_s", LINES / dt, "lines/s", lines=LINES, series=1000)


BENCHES = {"remote_write": bench_remote_write, "influx": bench_influx, "graphite": bench_graphite,
           "promtext": bench_promtext}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", choices=sorted(BENCHES), action="append")
    for name in ap.parse_args().only or list(BENCHES):
        BENCHES[name]()


if __name__ == "__main__":
    main()
