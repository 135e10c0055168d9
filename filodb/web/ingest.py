"""Ingestion routes: Prometheus remote write and Influx line protocol over HTTP.

The routes decode; writing is their door's (:class:`~filodb.gateway.door.IngestDoor`, one per
protocol, kept in ``app.extensions["filodb_doors"]``): durable in the log, metadata kept,
samples counted. A write is acknowledged (204) only after every sample is in the log.
Malformed bodies get 400 with a message naming the problem; nothing of a rejected
remote-write request is written. For line protocol, good lines are written and bad ones are
reported (400 listing them when any).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, Response, current_app, request
from werkzeug.exceptions import ClientDisconnected, RequestEntityTooLarge
from werkzeug.wrappers import Request

from filodb.errors import BadInputError, SamplesRefusedError
from filodb.gateway import influx
from filodb.gateway.door import Epochs, IngestCounter, IngestDoor
from filodb.gateway.influx import gunzip_if_needed, parse_lines
from filodb.gateway.joiner import Steps, run_steps
from filodb.gateway.limits import IngestLimiter
from filodb.gateway.router import CPU_TURN
from filodb.prom.remote_write import decode_write_request_full, warm
from filodb.web.params import now_ms
from filodb.web.services import Services, services

bp = Blueprint("ingest", __name__)
EXTENSION = "filodb_doors"
EPOCHS = "filodb_door_epochs"  # the doors' Epochs: a deletion expires its dataset's at once
DOORS = ("remote_write", "influx_http")

_PRECISIONS = {"ns", "n", "u", "us", "µ", "ms", "s", "m", "h"}


def init_app(app: Flask, svc: Services, counter: IngestCounter) -> None:
    """Give ``app`` its doors, writing through ``svc`` and counting into ``counter``; they
    check the datasets' limits (one limiter shared by the doors) and refuse samples older
    than the newest they routed beyond ``ooo_window`` (:mod:`filodb.gateway.door`)."""
    limiter = IngestLimiter(svc.limits, svc.cfg)
    epochs = app.extensions[EPOCHS] = Epochs(svc.results_cache.client)
    window_ms = round(float(getattr(svc.cfg, "ooo_window", 0.0)) * 1000)
    warm()  # the decoders' first-call cost, before the first write rather than during it
    influx.warm()
    app.extensions[EXTENSION] = {
        name: IngestDoor(name, svc.router, svc.metadata, counter, limiter, window_ms, epochs)
        for name in DOORS
    }


def _door(name: str) -> IngestDoor:
    return current_app.extensions[EXTENSION][name]


def read_body(env: dict[str, Any], limit: int, req: Request | None = None) -> bytes:
    """The body of the WSGI request ``env``, at most ``limit`` bytes. Read in one call when
    the server terminated the stream at its Content-Length (ours does: :func:`read_sized`),
    else by werkzeug (``req``, the request when the caller has one; built here otherwise),
    which answers 413 when the Content-Length says more but cuts a body of unknown length
    (chunked, which the server dechunks and marks ``wsgi.input_terminated``) at the limit
    silently: such a body is refused whole (413), not written in part."""
    data = read_sized(env, limit)
    if data is not None:
        return data
    if req is None:
        req = Request(env)
        req.max_content_length = limit
    data = req.get_data(cache=False)
    if len(data) >= limit and env.get("wsgi.input_terminated"):
        if env["wsgi.input"].read(1):
            raise RequestEntityTooLarge()
    return data


def read_sized(env: dict[str, Any], limit: int) -> bytes | None:
    """The body of the WSGI request ``env`` read in one call when its Content-Length is known
    and the server terminated the stream there (ours does; werkzeug's stream reads it 64 KiB
    at a time into a growing buffer: 0.17 ms a 120 KB body, a tenth of the web process's CPU
    per Influx body); 413 past ``limit``. None when that does not apply (chunked, or a server
    that does not terminate the stream): then werkzeug reads it."""
    size = env.get("CONTENT_LENGTH") or ""
    if not (env.get("wsgi.input_terminated") and size.isascii() and size.isdigit()
            and "chunked" not in env.get("HTTP_TRANSFER_ENCODING", "").lower()):  # fmt: skip
        return None
    if int(size) > limit:
        raise RequestEntityTooLarge()
    data = env["wsgi.input"].read(int(size))
    if len(data) != int(size):
        raise ClientDisconnected()
    return data


def write_remote(door: IngestDoor, body: bytes, dataset: str, limit: int) -> None:
    """Decode a remote-write ``body`` (at most ``limit`` bytes decompressed) and write it to
    ``dataset``; a body that does not decode is counted and raised before anything is
    written. Decoding takes the process's :data:`~filodb.gateway.router.CPU_TURN`."""
    run_steps(write_remote_steps(door, body, dataset, limit))


def write_remote_steps(door: IngestDoor, body: bytes, dataset: str, limit: int) -> Steps[None]:
    """:func:`write_remote`, yielding where the log's append is waited for."""
    try:
        with CPU_TURN:
            batch, meta = decode_write_request_full(body, limit)
    except BadInputError as e:
        door.reject_request(e)
        raise
    yield from door.write_steps(dataset, batch, meta)


def influx_precision(arg: str | None) -> str:
    """The ``precision`` query parameter as :func:`parse_lines` names it (400 when unknown)."""
    precision = arg or "ns"
    if precision not in _PRECISIONS:
        raise BadInputError(f"invalid precision {precision!r} (use ns, u, ms, s, m or h)")
    return {"n": "ns", "µ": "us"}.get(precision, precision)


def write_influx(door: IngestDoor, body: bytes, encoding: str | None, precision: str,
                 dataset: str, limit: int) -> None:  # fmt: skip
    """Write the good lines of a line-protocol ``body`` (gzip when ``encoding`` says so) to
    ``dataset``; 400 listing the bad ones, after the good ones were written."""
    run_steps(write_influx_steps(door, body, encoding, precision, dataset, limit))


def write_influx_steps(door: IngestDoor, body: bytes, encoding: str | None, precision: str,
                       dataset: str, limit: int) -> Steps[None]:  # fmt: skip
    """:func:`write_influx`, yielding where the log's append is waited for."""
    with CPU_TURN:
        parsed = parse_lines(gunzip_if_needed(body, encoding, limit), precision=precision,
                             now_ms=now_ms())  # fmt: skip
    refused: SamplesRefusedError | None = None
    try:
        yield from door.write_steps(dataset, parsed.batch)
    except SamplesRefusedError as e:  # the rest was written: the bad lines are still told
        refused = e
    door.reject_samples("malformed_line", len(parsed.errors))
    if parsed.errors:
        shown = "; ".join(f"line {n}: {msg}" for n, msg in parsed.errors[:10])
        more = f" (and {len(parsed.errors) - 10} more)" if len(parsed.errors) > 10 else ""
        written = "" if refused else f", {len(parsed.batch)} samples written"
        also = f"; {refused}" if refused else ""
        raise BadInputError(
            f"{len(parsed.errors)} malformed line(s) rejected{written}: {shown}{more}{also}"
        )
    if refused is not None:
        raise refused


@bp.post("/api/v1/write")
@bp.post("/promql/<dataset>/api/v1/write")
def remote_write(dataset: str | None = None) -> Response:
    cfg = services().cfg
    write_remote(_door("remote_write"), read_body(request.environ, cfg.max_body_bytes, request),
                 dataset or cfg.dataset, cfg.max_body_bytes)  # fmt: skip
    return Response(status=204)


def _influx(dataset: str) -> Response:
    precision = influx_precision(request.args.get("precision"))
    body = read_body(request.environ, services().cfg.max_body_bytes, request)
    write_influx(_door("influx_http"), body, request.headers.get("Content-Encoding"), precision,
                 dataset, services().cfg.max_body_bytes)  # fmt: skip
    return Response(status=204)


@bp.post("/influx/<dataset>/write")
def influx_write(dataset: str) -> Response:
    return _influx(dataset)


@bp.post("/write")
def influx_v1_write() -> Response:
    return _influx(request.args.get("db") or services().cfg.dataset)


@bp.post("/api/v2/write")
def influx_v2_write() -> Response:
    return _influx(request.args.get("bucket") or services().cfg.dataset)
