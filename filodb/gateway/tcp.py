"""TCP doors of the gateway: Influx line protocol and Graphite plaintext, newline-delimited.

Design: a threaded server (``socketserver.ThreadingTCPServer``), one thread per connection and
one listening thread per door. A connection's thread reads, cuts complete lines, parses them
and writes them through the process's single :class:`~filodb.gateway.router.IngestRouter`
(thread-safe). Parsing is Python either way, so threads cost no throughput against asyncio,
and a blocking log write naturally stalls only its own connection: the client's TCP window
fills and it slows down (back-pressure) while the other connections go on.

Per connection:

* **Batching.** Complete lines gather in a buffer that is parsed and written when it holds
  ``max_batch_lines`` (10 000) lines or ``max_batch_bytes`` (1 MiB), when the oldest line in it
  has waited ``max_delay_s`` (50 ms; also when no more data comes), and when the connection
  closes or the server stops. A line cut by a read boundary is carried over to the next read,
  never split. Big batches matter: each costs a parse set-up (series keys are parsed once per
  batch), a shard split and a log round trip; 64 KiB batches ran at a third of the speed.
* **Huge lines.** Bytes without a newline beyond ``max_line_bytes`` are dropped up to the next
  newline and counted as one ``too_long`` line; the connection stays open (it resynchronises
  at that newline) and the good lines before and after are written.
* **Bad lines.** There is no reply channel, so a malformed line is counted
  (``malformed``, or ``not_utf8``) and reported by a rate-limited warning in the process log.
* **Log failures** (Redis down): the batch is retried with backoff for up to ``retry_s``
  seconds, holding that connection's reads (back-pressure); after that it is dropped and its
  lines and samples are counted as ``write_failed``. Neither protocol has acknowledgements,
  so a sender cannot know; that is the protocols' contract, not ours to fix. A retry after a
  partly applied write may append some samples twice (a duplicate of an existing
  timestamp, which the memstore ignores as out of order).

**Limits** of the dataset (:mod:`filodb.gateway.limits`), with no reply channel: samples of
new series past a series limit are dropped and counted (``lines_rejected`` under the limit's
key, in samples); past the ingest rate, the connection waits for the bucket (back-pressure,
as for a log outage) up to ``retry_s``, after which the batch is dropped as
``ingest_samples_per_s``. Both are also counted cluster-wide (``filodb status``).

**Out-of-order samples** (:func:`~filodb.gateway.door.without_late`): samples more than
``ooo_window_ms`` older than the newest this process wrote for their series (and dataset) are
dropped before the write and counted (``lines_rejected`` under ``out_of_order``, or
``too_old`` with a window, in samples): the workers would drop them anyway, and the sender
cannot be told. Per process, as the HTTP doors' check; only with ``epochs`` (what
:func:`gateway_from_config` gives: a deletion of series bumps them).

**Tokens.** A door given a token (the auth file's ``[gateway] influx_token`` /
``graphite_token``, naming a ``[[tokens]]`` entry with the write scope) reads the first line of
each connection as ``auth <token>``; a wrong or missing token, or none within
``auth_timeout_s`` (10 s), closes the connection, counted as ``connections_rejected``. Nothing
is answered either way (the protocols have no reply channel). The token line is not data.

Doors whose port is 0 or negative are off. :class:`GatewayStats` keeps the counters per door
(``lines_accepted``, ``samples_written``, ``lines_rejected`` by reason, ``batches_retried``,
``connections``); :meth:`GatewayStats.snapshot` reads them, and ``filodb gateway`` serves them
as Prometheus metrics (:mod:`filodb.gateway.metrics`).

Measured with ``python bench/tcp_doors.py`` (own redis-server, 2-core machine under load,
+-30 %): Influx ~800 k lines/s on one connection and over 50; Graphite 1.9 M on one, 190 k
over 50 (each of those connections brings 1 000 new series). See docs/gateway.md.
"""

from __future__ import annotations

import hmac
import logging
import socket
import socketserver
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import redis

from filodb.auth import load_auth_file
from filodb.errors import BadInputError, FiloError, RateLimitedError, UnavailableError
from filodb.gateway.door import (
    EpochOf,
    Epochs,
    late_message,
    late_reason,
    note_routed,
    without_late,
)
from filodb.gateway.graphite import parse_graphite
from filodb.gateway.graphite import warm as graphite_warm
from filodb.gateway.influx import parse_lines
from filodb.gateway.influx import warm as influx_warm
from filodb.gateway.limits import IngestLimiter
from filodb.gateway.parsed import ParseResult
from filodb.gateway.router import IngestRouter
from filodb.model.batch import SampleBatch
from filodb.model.dataset import Dataset
from filodb.shards.metadata import MetadataStore, TypesKept

log = logging.getLogger("filodb.gateway")

MAX_BATCH_LINES = 10_000
MAX_BATCH_BYTES = 1 << 20
MAX_DELAY_S = 0.05
MAX_LINE_BYTES = 1 << 20
RETRY_S = 30.0
READ_BYTES = 64 << 10
AUTH_LINE_BYTES = 4096  # the first line of a door that needs a token: "auth <token>\n"
AUTH_TIMEOUT_S = 10.0
_BACKOFF_S = (0.05, 0.1, 0.2, 0.5, 1.0, 2.0)
_WARN_EVERY_S = 10.0


# --- parsers of the doors -------------------------------------------------------------------
def _influx(body: bytes, now_ms: int) -> ParseResult:
    return parse_lines(body, "ns", now_ms)


DOORS: dict[str, Callable[[bytes, int], ParseResult]] = {
    "influx": _influx,
    "graphite": parse_graphite,
}


# --- counters -------------------------------------------------------------------------------
@dataclass
class DoorStats:
    lines_accepted: int = 0
    samples_written: int = 0
    lines_rejected: dict[str, int] = field(default_factory=dict)
    batches_retried: int = 0
    connections: int = 0
    connections_open: int = 0
    connections_rejected: int = 0  # closed at once: no valid "auth <token>" first line


class GatewayStats:
    """Counters of every door, safe to update from many threads."""

    def __init__(self, doors: tuple[str, ...] = tuple(DOORS)) -> None:
        self._lock = threading.Lock()
        self._doors = {d: DoorStats() for d in doors}

    def add(self, door: str, **deltas: int) -> None:
        with self._lock:
            st = self._doors[door]
            for k, v in deltas.items():
                setattr(st, k, getattr(st, k) + v)

    def reject(self, door: str, reason: str, lines: int = 1) -> None:
        if lines:
            with self._lock:
                r = self._doors[door].lines_rejected
                r[reason] = r.get(reason, 0) + lines

    def snapshot(self) -> dict[str, dict]:
        """``{door: {lines_accepted, samples_written, lines_rejected: {reason: n}, ...}}``."""
        with self._lock:
            return {d: {"lines_accepted": s.lines_accepted, "samples_written": s.samples_written,
                        "lines_rejected": dict(s.lines_rejected),
                        "batches_retried": s.batches_retried, "connections": s.connections,
                        "connections_open": s.connections_open,
                        "connections_rejected": s.connections_rejected}
                    for d, s in self._doors.items()}  # fmt: skip


class _RateLimitedWarning:
    """At most one warning per ``every_s`` per door; says how many were held back."""

    def __init__(self, every_s: float = _WARN_EVERY_S) -> None:
        self.every_s = every_s
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}
        self._lock = threading.Lock()

    def __call__(self, door: str, msg: str) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._last.get(door, -1e9) < self.every_s:
                self._held[door] = self._held.get(door, 0) + 1
                return
            held = self._held.pop(door, 0)
            self._last[door] = now
        more = f" ({held} similar warnings held back)" if held else ""
        log.warning("%s door: %s%s", door, msg, more)


# --- the server -----------------------------------------------------------------------------
@dataclass
class GatewayOptions:
    max_batch_lines: int = MAX_BATCH_LINES
    max_batch_bytes: int = MAX_BATCH_BYTES
    max_delay_s: float = MAX_DELAY_S
    max_line_bytes: int = MAX_LINE_BYTES
    retry_s: float = RETRY_S
    auth_timeout_s: float = AUTH_TIMEOUT_S
    ooo_window_ms: int = 0  # samples older than their series' newest routed by more: dropped


class _DoorServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True  # the gateway joins them itself, with a bound, in stop()
    request_queue_size = 1024

    def __init__(self, addr: tuple[str, int], door: str, gw: TcpGateway,
                 inherited: socket.socket | None = None) -> None:  # fmt: skip
        self.door = door
        self.gw = gw
        super().__init__(addr, _Connection, bind_and_activate=inherited is None)
        if inherited is not None:  # listening already (the supervisor bound it)
            self.socket.close()
            self.socket = inherited
            self.server_address = inherited.getsockname()


class _Connection(socketserver.BaseRequestHandler):
    server: _DoorServer

    def handle(self) -> None:
        gw, door = self.server.gw, self.server.door
        gw.stats.add(door, connections=1, connections_open=1)
        gw._conn_started()
        try:
            first = b""
            token = gw.tokens.get(door)
            if token is not None:
                got = _handshake(self.request, token, gw)
                if got is None:
                    gw.stats.add(door, connections_rejected=1)
                    gw.warn(door, f"connection from {self.client_address[0]} closed: "
                                  "no valid 'auth <token>' first line")  # fmt: skip
                    return
                first = got
            _serve_connection(self.request, door, gw, first)
        except OSError as e:
            log.debug("%s connection from %s ended: %s", door, self.client_address, e)
        finally:
            gw.stats.add(door, connections_open=-1)
            gw._conn_ended()


def _handshake(sock: socket.socket, token: bytes, gw: TcpGateway) -> bytes | None:
    """Read the first line, ``auth <token>``: the bytes after it when the token is right,
    ``None`` when it is wrong, missing, longer than :data:`AUTH_LINE_BYTES` or not complete
    within ``auth_timeout_s``. Compared in constant time."""
    buf = bytearray()
    deadline = time.monotonic() + gw.options.auth_timeout_s
    while b"\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0 or len(buf) > AUTH_LINE_BYTES or gw._stop.is_set():
            return None
        sock.settimeout(min(left, 0.25))
        try:
            data = sock.recv(AUTH_LINE_BYTES)
        except TimeoutError:
            continue
        if not data:
            return None
        buf += data
    line, _, rest = bytes(buf).partition(b"\n")
    verb, _, presented = line.rstrip(b"\r").partition(b" ")
    ok = hmac.compare_digest(presented.strip(), token)
    return rest if verb == b"auth" and ok else None


def _serve_connection(sock: socket.socket, door: str, gw: TcpGateway, first: bytes = b"") -> None:
    o = gw.options
    pending = bytearray()  # complete lines (each ends with b"\n") not yet written
    pending_lines = 0
    first_at = 0.0  # monotonic time of the oldest pending line
    partial = bytearray()  # bytes after the last newline
    skipping = False  # inside a too-long line: drop until the next newline
    closed = False
    while not closed:
        if pending:
            wait = first_at + o.max_delay_s - time.monotonic()
            if wait <= 0:
                gw._write(door, bytes(pending))
                pending.clear()
                pending_lines = 0
                continue
            sock.settimeout(min(wait, 0.25))
        else:
            sock.settimeout(0.25)
        try:
            data, first = (first, b"") if first else (sock.recv(READ_BYTES), b"")
        except TimeoutError:
            if gw._stop.is_set():
                break
            continue
        if not data:
            closed = True
            if partial and not skipping:  # a last line without a newline still counts
                data = b"\n"
            else:
                break
        start = 0
        if skipping:
            nl = data.find(b"\n")
            if nl < 0:
                continue
            skipping = False
            start = nl + 1
        last = data.rfind(b"\n", start)
        if last < 0:
            partial += data[start:] if start else data
            if len(partial) > o.max_line_bytes:
                gw._reject(door, "too_long", f"line over {o.max_line_bytes} bytes dropped")
                partial.clear()
                skipping = True
            continue
        if not pending:
            first_at = time.monotonic()
        if partial:
            pending += partial
            partial.clear()
        pending += memoryview(data)[start : last + 1]
        pending_lines += data.count(b"\n", start, last + 1)
        if last + 1 < len(data):
            partial += memoryview(data)[last + 1 :]
            if len(partial) > o.max_line_bytes:
                gw._reject(door, "too_long", f"line over {o.max_line_bytes} bytes dropped")
                partial.clear()
                skipping = True
        if pending_lines >= o.max_batch_lines or len(pending) >= o.max_batch_bytes:
            gw._write(door, bytes(pending))
            pending.clear()
            pending_lines = 0
        if gw._stop.is_set():
            break
    if pending:
        gw._write(door, bytes(pending))


class TcpGateway:
    """The Influx and Graphite doors of one process, writing to ``dataset`` through ``router``.

    ``ports`` maps a door name to its port (0 or negative: the door is off). ``tokens`` maps a
    door to the token its connections must send as their first line, ``auth <token>``. ``start`` binds
    every door (an ``OSError`` names the door when a port is taken) and serves in background
    threads; ``stop`` stops accepting, flushes every connection's pending lines and returns.
    """

    def __init__(self, router: IngestRouter, dataset: str, host: str, ports: dict[str, int],
                 options: GatewayOptions | None = None, stats: GatewayStats | None = None,
                 tokens: dict[str, bytes] | None = None,
                 limiter: IngestLimiter | None = None,
                 metadata: MetadataStore | None = None,
                 epochs: EpochOf | None = None,
                 sockets: dict[str, socket.socket] | None = None) -> None:  # fmt: skip
        unknown = set(ports) - set(DOORS)
        if unknown:
            raise BadInputError(f"unknown gateway doors {sorted(unknown)} (have {sorted(DOORS)})")
        self.router = router
        self.limiter = limiter
        self.epochs = epochs  # None: no late check (see the module docstring)
        self.types = TypesKept(metadata) if metadata is not None else None  # types lines imply
        self.dataset = dataset
        self.host = host
        self.wanted = {d: p for d, p in ports.items() if p and p > 0}
        self.sockets = dict(sockets or {})  # door -> a listening socket it was handed
        self.tokens = dict(tokens or {})  # door -> the token its connections must send first
        self.options = options or GatewayOptions()
        self.stats = stats or GatewayStats()
        self.warn = _RateLimitedWarning()
        self.servers: dict[str, _DoorServer] = {}
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._open = 0
        self._open_cv = threading.Condition()

    @property
    def ports(self) -> dict[str, int]:
        """The bound port of each door that is on."""
        return {d: s.server_address[1] for d, s in self.servers.items()}

    def start(self) -> TcpGateway:
        if "influx" in self.wanted:
            influx_warm()  # numba's first-call cost before the first connection's lines
        if "graphite" in self.wanted:
            graphite_warm()
        try:
            for door, port in self.wanted.items():
                try:
                    self.servers[door] = _DoorServer((self.host, port), door, self,
                                                     self.sockets.get(door))  # fmt: skip
                except OSError as e:
                    raise OSError(e.errno, f"{door} door cannot listen on {self.host}:{port}: "
                                           f"{e.strerror or e}") from e  # fmt: skip
        except OSError:
            for s in self.servers.values():
                s.server_close()
            self.servers.clear()
            raise
        for door, s in self.servers.items():
            t = threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.2},
                                 name=f"gateway-{door}", daemon=True)  # fmt: skip
            t.start()
            self._threads.append(t)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop accepting, let open connections flush what they hold (up to ``timeout``)."""
        self._stop.set()
        for s in self.servers.values():
            s.shutdown()
            s.server_close()
        for t in self._threads:
            t.join(timeout)
        deadline = time.monotonic() + timeout
        with self._open_cv:
            while self._open and time.monotonic() < deadline:
                self._open_cv.wait(0.1)

    def __enter__(self) -> TcpGateway:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- called from connection threads --------------------------------------------------
    def _conn_started(self) -> None:
        with self._open_cv:
            self._open += 1

    def _conn_ended(self) -> None:
        with self._open_cv:
            self._open -= 1
            self._open_cv.notify_all()

    def _reject(self, door: str, reason: str, msg: str, lines: int = 1) -> None:
        self.stats.reject(door, reason, lines)
        self.warn(door, msg)

    def _write(self, door: str, body: bytes) -> None:
        """Parse complete lines and write the good ones; never raises for bad data."""
        now_ms = int(time.time() * 1000)
        body, bad_utf8 = _drop_non_utf8(body)
        if bad_utf8:
            self._reject(door, "not_utf8", f"{bad_utf8} line(s) that are not UTF-8 dropped",
                         bad_utf8)  # fmt: skip
        try:
            parsed = DOORS[door](body, now_ms)
        except BadInputError as e:  # not expected after the UTF-8 filter; count, never crash
            self._reject(door, "malformed", str(e), _count_lines(body))
            return
        if parsed.errors:
            n, msg = parsed.errors[0]
            more = (
                f" (and {len(parsed.errors) - 1} more in this batch)"
                if len(parsed.errors) > 1
                else ""
            )
            self._reject(
                door, "malformed", f"malformed line dropped: {msg}{more}", len(parsed.errors)
            )
        good = parsed.lines - parsed.blank - len(parsed.errors)
        batch = parsed.batch
        if len(batch) == 0:
            self.stats.add(door, lines_accepted=good)
            return
        deadline = time.monotonic() + self.options.retry_s
        attempt = 0
        limited = self.limiter is None
        checked = self.epochs is None
        epoch: int | None = None
        while True:
            try:
                desc = self.router.dataset(self.dataset)
                if not checked:
                    assert self.epochs is not None
                    epoch = self.epochs(self.dataset)
                    batch, good = self._without_late(door, desc, batch, good, epoch)
                    checked = True
                if not limited:
                    batch, good = self._within_limits(door, desc, batch, good)
                    limited = True
                self.router.write(self.dataset, batch, desc)
                note_routed(desc, batch, epoch)
                self.stats.add(door, lines_accepted=good, samples_written=len(batch))
                self._keep_types(door, batch.types)
                return
            except RateLimitedError as e:  # wait for the bucket: back-pressure
                if time.monotonic() + e.retry_after_s > deadline or self._stop.is_set():
                    self._refused(door, "ingest_samples_per_s", len(batch), str(e))
                    return
                time.sleep(e.retry_after_s)
                continue
            except FiloError as e:
                if not isinstance(e, UnavailableError):  # unknown dataset etc.: retrying won't help
                    self._reject(door, "write_failed", f"batch dropped: {e}", good)
                    return
                err: Exception = e
            except Exception as e:  # noqa: BLE001 - a log backend's connection errors vary
                err = e
            if time.monotonic() >= deadline or (self._stop.is_set() and attempt >= 3):
                self._reject(door, "write_failed", f"batch of {len(batch)} samples dropped after "
                             f"{attempt + 1} attempts: {err}", good)  # fmt: skip
                return
            self.stats.add(door, batches_retried=1)
            if attempt == 0:
                log.warning("%s door: log write failed (%s); retrying for up to %.0f s",
                            door, err, self.options.retry_s)  # fmt: skip
            time.sleep(_BACKOFF_S[min(attempt, len(_BACKOFF_S) - 1)])
            attempt += 1

    def _keep_types(self, door: str, types: dict[str, str]) -> None:
        """Metric types the lines imply become metadata; Redis trouble here drops no sample."""
        if self.types is None or not types:
            return
        try:
            self.types.keep(self.dataset, types)
        except Exception as e:  # noqa: BLE001 - the samples are written; metadata is best effort
            self.warn(door, f"metric types not kept: {e}")

    def _without_late(self, door: str, desc: Dataset, batch: SampleBatch, good: int,
                      epoch: int | None) -> tuple[SampleBatch, int]:  # fmt: skip
        """The batch without its late samples (counted, see the module docstring), and the
        good lines left."""
        window = self.options.ooo_window_ms
        batch, late = without_late(desc, batch, window, epoch)
        if late:
            msg = f"{late_message(self.dataset, late, window)}: dropped"
            if self.limiter is not None:  # and cluster-wide, as the limits' refusals
                self._refused(door, late_reason(window), late, msg)
            else:
                self._reject(door, late_reason(window), msg, late)
        return batch, max(0, good - late)

    def _within_limits(self, door: str, desc: Dataset, batch: SampleBatch,
                       good: int) -> tuple[SampleBatch, int]:  # fmt: skip
        """The batch without the new series the dataset's series limits refuse (counted), and
        the good lines left; raises :class:`RateLimitedError` past the ingest rate."""
        assert self.limiter is not None
        self.limiter.take_rate(desc, len(batch))
        keep, refusals = self.limiter.admit(desc, batch)
        if keep is None or not refusals:
            return batch, good
        for r in refusals:
            self._refused(door, r.reason, r.samples,
                          f"{r.samples} samples of {r.series} new series dropped: {r.reason}="
                          f"{r.limit} reached")  # fmt: skip
        return batch.take_series(keep), max(0, good - sum(r.samples for r in refusals))

    def _refused(self, door: str, reason: str, n: int, msg: str) -> None:
        assert self.limiter is not None
        self._reject(door, reason, msg, n)
        try:
            self.limiter.store.count_refused(self.dataset, reason, n)
        except Exception:  # noqa: BLE001 - the count is best effort; the local one is kept
            log.warning("%s door: refusal not counted in Redis", door, exc_info=True)


def _count_lines(body: bytes) -> int:
    """Lines that carry data: not blank (``bytes.strip`` whitespace), not ``#`` comments; a few
    numpy calls whatever the number of lines."""
    buf = np.frombuffer(body, np.uint8)
    nl = np.flatnonzero(buf == _NL)
    starts = np.concatenate(([0], nl + 1))
    ends = np.concatenate((nl, [len(buf)]))
    solid = np.flatnonzero(~_BLANK[buf])
    if not len(solid):
        return 0
    k = np.searchsorted(solid, starts)
    first = solid[np.minimum(k, len(solid) - 1)]
    return int(((k < len(solid)) & (first < ends) & (buf[first] != _HASH)).sum())


_NL, _HASH = 10, 35
_BLANK = np.zeros(256, bool)  # what bytes.strip() strips, and the newline
_BLANK[[9, 10, 11, 12, 13, 32]] = True


def _drop_non_utf8(body: bytes) -> tuple[bytes, int]:
    """The body without lines that are not UTF-8, and how many data lines were dropped."""
    if body.isascii():  # the common case, checked without building a string
        return body, 0
    try:
        body.decode("utf-8")
        return body, 0
    except UnicodeDecodeError:
        pass
    keep, dropped = [], 0
    for line in body.split(b"\n"):
        try:
            line.decode("utf-8")
            keep.append(line)
        except UnicodeDecodeError:
            dropped += 1
            keep.append(b"")  # keeps line numbers of the parser's errors meaningful
    return b"\n".join(keep), dropped


def gateway_from_config(cfg, options: GatewayOptions | None = None,
                        sockets: dict[str, socket.socket] | None = None) -> TcpGateway:  # fmt: skip
    """A gateway with its own router over the configured log and shard map, and the doors'
    tokens from the auth file's ``[gateway]`` table (a bad file: :class:`BadInputError`);
    ``sockets``: listening sockets handed over by door (``filodb up`` binds the doors' ports
    itself and starts the gateway at the first connection)."""
    from filodb.ingest import log_from_config
    from filodb.shards.limits import LimitsStore
    from filodb.shards.redis_map import ShardMapStore

    tokens = load_auth_file(cfg.auth_file).door_tokens(cfg.dataset) if cfg.auth_file else {}
    router = IngestRouter(ShardMapStore(cfg.redis_url), log_from_config(cfg))
    limiter = IngestLimiter(LimitsStore(cfg.redis_url), cfg)
    options = options or GatewayOptions()
    if not options.ooo_window_ms:
        options = replace(options, ooo_window_ms=round(float(cfg.ooo_window) * 1000))
    return TcpGateway(router, cfg.dataset, cfg.host,
                      {"influx": cfg.influx_port, "graphite": cfg.graphite_port}, options,
                      tokens=tokens, limiter=limiter, metadata=MetadataStore(cfg.redis_url),
                      epochs=Epochs(redis.Redis.from_url(cfg.redis_url)), sockets=sockets)  # fmt: skip
