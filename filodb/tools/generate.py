"""FiloDB's test producer (``filodb gen``): exporter-shaped series, written over HTTP.

Each *instance* (``job="node"``, ``instance="host-0000:9100"``) exports 32 series, in this
order (``--series N`` takes the first N of instance after instance, so only the CPU series of
the last instance can be cut short):

=====================================================  =========  ==========================
series                                                 type       values
=====================================================  =========  ==========================
``http_request_duration_seconds_bucket{handler, le}``  histogram  10 classic buckets,
``http_request_duration_seconds_sum/_count``                      cumulative in ``le`` and
                                                                  in time; +Inf == _count
``node_memory_MemAvailable_bytes``                     gauge      sine, 4 KiB pages
``node_load1``                                         gauge      sine + noise, 2 decimals
``node_network_{receive,transmit}_bytes_total``        counter    integer increments
``node_cpu_seconds_total{cpu 0-3, mode}``              counter    idle/user/system/iowait
                                                                  sum to the interval per cpu
=====================================================  =========  ==========================

The shapes are bench/promql.py's (integer-increment counters, one-decimal sine gauges,
histogram buckets ``floor(count * fraction)`` with its ``le`` list and fractions) with
node-exporter names. Values are made for a block of timestamps at a time, as numpy arrays
``[series, time]`` (no per-sample Python), carrying the counters over from block to block, and
sent time-major: every series at the block's first timestamps, then the next block.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

import numpy as np
import requests
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from filodb.model.batch import SampleBatch
from filodb.model.labels import Labels, make_labels
from filodb.model.numfmt import format_values
from filodb.prom.remote_write import encode_write_request
from filodb.tools.client import RW_HEADERS, SendError, auth_headers, post, write_url
from filodb.tools.rwdump import write_frame

LE = ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "+Inf"]
LE_FRACTIONS = np.array([0.02, 0.05, 0.15, 0.3, 0.5, 0.7, 0.85, 0.95, 0.99, 1.0])
CPUS, MODES = 4, ("idle", "user", "system", "iowait")
_MODE_SHAPE = np.array([8.0, 1.5, 1.0, 0.3])  # gamma shapes: mostly idle
PER_INSTANCE = len(LE) + 2 + 2 + 2 + CPUS * len(MODES)  # 32
HIST = "http_request_duration_seconds"

METADATA = [
    {"metric": HIST, "type": "histogram", "help": "HTTP request latency.", "unit": "seconds"},
    {"metric": "node_memory_MemAvailable_bytes", "type": "gauge",
     "help": "Memory information field MemAvailable_bytes.", "unit": ""},
    {"metric": "node_load1", "type": "gauge", "help": "1m load average.", "unit": ""},
    {"metric": "node_network_receive_bytes_total", "type": "counter",
     "help": "Network device statistic receive_bytes.", "unit": ""},
    {"metric": "node_network_transmit_bytes_total", "type": "counter",
     "help": "Network device statistic transmit_bytes.", "unit": ""},
    {"metric": "node_cpu_seconds_total", "type": "counter",
     "help": "Seconds the CPUs spent in each mode.", "unit": ""},
]  # fmt: skip

EXAMPLE_QUERIES = [
    "sum by (mode) (rate(node_cpu_seconds_total[5m]))",
    f"histogram_quantile(0.99, sum by (le) (rate({HIST}_bucket[5m])))",
    "avg by (instance) (node_load1)",
    "topk(5, rate(node_network_receive_bytes_total[5m]))",
    'count({job="node"})',
]


def _instance_series(i: int) -> list[Labels]:
    base = {"job": "node", "instance": f"host-{i:04d}:9100"}
    out = [{"__name__": f"{HIST}_bucket", **base, "handler": "/api", "le": le} for le in LE]
    out += [{"__name__": f"{HIST}_{s}", **base, "handler": "/api"} for s in ("sum", "count")]
    out += [{"__name__": n, **base} for n in ("node_memory_MemAvailable_bytes", "node_load1")]
    out += [{"__name__": f"node_network_{d}_bytes_total", **base, "device": "eth0"}
            for d in ("receive", "transmit")]  # fmt: skip
    out += [{"__name__": "node_cpu_seconds_total", **base, "cpu": str(c), "mode": m}
            for c in range(CPUS) for m in MODES]  # fmt: skip
    return [make_labels(s) for s in out]


@dataclass
class Workload:
    """``n_series`` series and the state that makes their values continue from block to block."""

    n_series: int
    interval_s: float = 15.0
    seed: int = 1
    series: list[Labels] = field(init=False)
    step: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        if self.n_series < 1:
            raise ValueError("need at least one series")
        self.instances = -(-self.n_series // PER_INSTANCE)
        self.series = [lb for i in range(self.instances) for lb in _instance_series(i)][
            : self.n_series
        ]
        n = self.instances
        self.rng = np.random.default_rng(self.seed)
        self.phase = self.rng.uniform(0, 2 * np.pi, (n, 2))
        self.latency = self.rng.uniform(0.05, 0.3, n)
        self.obs = np.zeros(n)  # observations so far
        self.obs_sum = np.zeros(n)
        self.net = self.rng.integers(0, 1 << 30, (n, 2)).astype(np.float64)
        self.cpu = np.zeros((n, CPUS, len(MODES)))

    @property
    def metadata(self) -> list[dict[str, str]]:
        """The metadata of the families that have series."""
        names = {dict(lb)["__name__"] for lb in self.series}
        return [
            m
            for m in METADATA
            if any(n == m["metric"] or n.startswith(m["metric"] + "_") for n in names)
        ]

    def next_values(self, k: int) -> np.ndarray:
        """Values ``[n_series, k]`` of the next ``k`` scrapes."""
        n, rng = self.instances, self.rng
        steps = self.step + np.arange(k)[None, :]
        self.step += k
        inc = rng.integers(0, 50, (n, k)).astype(np.float64)
        obs = self.obs[:, None] + np.cumsum(inc, axis=1)
        osum = np.round(self.obs_sum[:, None] + np.cumsum(inc * self.latency[:, None], axis=1), 3)
        self.obs, self.obs_sum = obs[:, -1], osum[:, -1]
        buckets = np.floor(obs[:, None, :] * LE_FRACTIONS[None, :, None])  # (n, le, k)
        mem = 8e9 + 2e9 * np.sin(steps / 40 + self.phase[:, :1])
        mem = np.round(mem / 4096) * 4096
        load = np.round(
            np.abs(1 + 0.8 * np.sin(steps / 25 + self.phase[:, 1:]) + rng.normal(0, 0.1, (n, k))), 2
        )
        net = self.net[:, :, None] + np.cumsum(rng.integers(10_000, 1_000_000, (n, 2, k)), axis=2)
        self.net = net[:, :, -1]
        g = rng.gamma(_MODE_SHAPE, 1.0, (n, CPUS, k, len(MODES)))
        share = g / g.sum(axis=3, keepdims=True) * self.interval_s
        cpu = np.round(self.cpu[:, :, None, :] + np.cumsum(share, axis=2), 2)  # (n, cpu, k, mode)
        self.cpu = cpu[:, :, -1, :]
        cpu = cpu.transpose(0, 1, 3, 2).reshape(n, CPUS * len(MODES), k)
        block = np.concatenate(
            [buckets, osum[:, None], obs[:, None], mem[:, None], load[:, None], net, cpu], axis=1
        )
        return block.reshape(n * PER_INSTANCE, k)[: self.n_series]


def blocks(w: Workload, t0_ms: int, interval_ms: int, n_samples: int, batch: int
           ) -> Iterator[SampleBatch]:  # fmt: skip
    """Time-major batches of at most about ``batch`` samples (at least one timestamp of a slice
    of the series each)."""
    n = w.n_series
    k = max(1, batch // n)
    per = min(n, max(1, batch))
    for a in range(0, n_samples, k):
        b = min(n_samples, a + k)
        vals = w.next_values(b - a)
        ts = t0_ms + interval_ms * np.arange(a, b, dtype=np.int64)
        for s0 in range(0, n, per):
            s1 = min(n, s0 + per)
            m = s1 - s0
            yield SampleBatch(w.series[s0:s1], np.tile(np.arange(m), b - a), np.repeat(ts, m),
                              vals[s0:s1].T.ravel())  # fmt: skip


def influx_escape(s: str) -> str:
    return s.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def influx_body(b: SampleBatch) -> bytes:
    """Line protocol (ms timestamps) of a batch: ``name,tags value=v ts`` a sample."""
    prefixes = []
    for lb in b.series:
        d = dict(lb)
        tags = "".join(f",{influx_escape(k)}={influx_escape(v)}" for k, v in lb if k != "__name__")
        prefixes.append(influx_escape(d["__name__"]) + tags + " value=")
    pre = np.array(prefixes, dtype=object)[b.sidx].tolist()
    return "".join(map("{}{} {}\n".format, pre, format_values(b.vals), b.ts.tolist())).encode()


@dataclass
class GenOptions:
    series: int
    samples: int
    interval_ms: int
    start_ms: int | None
    url: str
    fmt: str  # remote-write | influx
    dataset: str
    batch: int
    out: str | None = None
    seed: int = 1
    token: str | None = None  # sent as "Authorization: Bearer <token>"


@dataclass
class GenTotals:
    series: int = 0
    samples: int = 0
    requests: int = 0
    bytes: int = 0
    seconds: float = 0.0


def _encoded(opts: GenOptions, w: Workload, t0: int) -> Iterator[tuple[bytes, int]]:
    first = True
    for b in blocks(w, t0, opts.interval_ms, opts.samples, opts.batch):
        if opts.fmt == "influx":
            yield influx_body(b), len(b)
        else:
            yield encode_write_request(b, w.metadata if first else None), len(b)
        first = False


def generate(opts: GenOptions, console: Console) -> GenTotals:
    """Make and write the workload; raises :class:`SendError` on the first refused request."""
    w = Workload(opts.series, opts.interval_ms / 1000, opts.seed)
    t0 = opts.start_ms
    if t0 is None:
        t0 = int(time.time() * 1000) - opts.samples * opts.interval_ms
    tot = GenTotals(series=w.n_series)
    url = write_url(opts.url, opts.dataset, opts.fmt)
    headers = RW_HEADERS if opts.fmt == "remote-write" else {"Content-Type": "text/plain"}
    sink: BinaryIO | None = open(opts.out, "wb") if opts.out else None  # noqa: SIM115
    session = requests.Session()
    session.headers.update(auth_headers(opts.token))
    cols = (TextColumn("[bold]gen[/bold]"), BarColumn(), MofNCompleteColumn(), TextColumn("samples"),
            TextColumn("{task.fields[rate]}"), TimeRemainingColumn())  # fmt: skip
    started = time.perf_counter()
    try:
        with Progress(*cols, console=console, transient=False) as prog:
            task = prog.add_task("gen", total=w.n_series * opts.samples, rate="")
            for body, n in _encoded(opts, w, t0):
                if sink is not None:
                    tot.bytes += (
                        write_frame(sink, body) if opts.fmt == "remote-write" else sink.write(body)
                    )
                else:
                    post(session, url, body, headers)
                    tot.bytes += len(body)
                tot.samples += n
                tot.requests += 1
                el = time.perf_counter() - started
                prog.update(task, advance=n, rate=f"{tot.samples / max(el, 1e-9) / 1e3:,.0f} k/s")
    finally:
        if sink is not None:
            sink.close()
    tot.seconds = time.perf_counter() - started
    return tot


def summary_lines(opts: GenOptions, tot: GenTotals) -> list[str]:
    where = opts.out or f"{opts.url} (dataset {opts.dataset}, {opts.fmt})"
    rate = tot.samples / max(tot.seconds, 1e-9)
    out = [
        f"wrote {tot.series:,} series, {tot.samples:,} samples in {tot.requests:,} "
        f"{'frames' if opts.out else 'requests'} ({tot.bytes / 1e6:,.1f} MB) to {where} "
        f"in {tot.seconds:.1f} s: {rate:,.0f} samples/s",  # fmt: skip
        "try:",
    ]
    out += [f"  filodb query --dataset {opts.dataset} '{q}'" for q in EXAMPLE_QUERIES]
    return out


__all__ = ["GenOptions", "SendError", "Workload", "blocks", "generate", "summary_lines"]
