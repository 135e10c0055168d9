"""``filodb import FILE``: stream a file of samples into a dataset over remote write.

Formats (``--format auto`` picks one from the file, see :func:`detect_format`):

* ``prom``: Prometheus text exposition (timestamps in **milliseconds**) or OpenMetrics text
  (timestamps in **seconds** with a fraction). A file whose last non-blank line is ``# EOF``
  is OpenMetrics, any other is Prometheus text. ``# TYPE``/``# HELP``/``# UNIT`` lines are
  sent as remote-write metadata (so ``/api/v1/metadata`` answers for them). A sample without
  a timestamp is stamped with the time the import started.
* ``influx``: Influx line protocol, parsed by the gateway's parser (``--precision``, default
  ns, as Influx's own default).
* ``remote-write``: a dump of framed remote-write bodies (:mod:`filodb.tools.rwdump`), sent
  frame by frame as they are.

Auto-detection: a dump when the first 4 bytes are a plausible length followed by a snappy
preamble; OpenMetrics when the file ends with ``# EOF``; Prometheus text when it has a
``# HELP``/``# TYPE`` line or its first sample line is ``name[{...}] number``; Influx when the
first sample line has ``field=value`` after its key.

Text files are read in blocks of whole lines (4 MiB by default), so a file of any size streams
with bounded memory; each block becomes one remote-write request. Malformed lines are reported
with their line numbers and skipped; a block the server refuses (4xx) is reported as rejected
and the import goes on; a server that fails (5xx) or cannot be reached stops it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

import requests
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

from filodb.errors import BadInputError
from filodb.gateway.influx import parse_lines
from filodb.model.batch import SampleBatch
from filodb.prom.remote_write import decode_write_request_full, encode_write_request
from filodb.prom.text import PromTextParser
from filodb.tools.client import RW_HEADERS, SendError, auth_headers, post, write_url
from filodb.tools.rwdump import looks_like_dump, read_frames

FORMATS = ("auto", "prom", "influx", "remote-write")
BLOCK_BYTES = 4 << 20


@dataclass
class ImportOptions:
    path: str
    fmt: str = "auto"
    url: str = "http://127.0.0.1:8080"
    dataset: str = "prometheus"
    precision: str = "ns"
    block_bytes: int = BLOCK_BYTES
    token: str | None = None  # sent as "Authorization: Bearer <token>"


@dataclass
class ImportReport:
    """What an import did; ``rejected`` holds ``(where, reason)`` such as ``("line 7", ...)``."""

    fmt: str = ""
    series: set = field(default_factory=set)
    samples: int = 0
    requests: int = 0
    bytes_read: int = 0
    rejected: list[tuple[str, str]] = field(default_factory=list)
    metadata: int = 0
    seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        return 1 if self.rejected else 0


def detect_format(path: str) -> str:
    """``openmetrics``, ``prom``, ``influx`` or ``remote-write`` (see the module docstring)."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(64 << 10)
        f.seek(max(0, size - 4096))
        tail = f.read()
    return detect(head, tail)


def detect(head: bytes, tail: bytes) -> str:
    """``remote-write``, ``openmetrics``, ``prom`` or ``influx`` from a file's first and last
    bytes (the rules are in this module's docstring)."""
    if looks_like_dump(head):
        return "remote-write"
    last = [ln.strip() for ln in tail.split(b"\n") if ln.strip()]
    if last and last[-1] == b"# EOF":
        return "openmetrics"
    for raw in head.split(b"\n")[:-1] or [head]:
        line = raw.strip()
        if not line:
            continue
        if line.startswith((b"# HELP ", b"# TYPE ", b"# UNIT ")):
            return "prom"
        if line.startswith(b"#"):
            continue
        return "influx" if _influx_like(line) else "prom"
    return "prom"


def _influx_like(line: bytes) -> bool:
    """An Influx line has ``field=value`` after the key; a Prometheus line has a number."""
    if b"{" in line.split(b" ", 1)[0]:
        return False
    parts = line.split(b" ")
    return len(parts) >= 2 and (b"=" in parts[1] or b"," in parts[0])


def _text_blocks(f: BinaryIO, block_bytes: int) -> Iterator[bytes]:
    """Blocks of whole lines (the last block may lack its final newline)."""
    rest = b""
    while True:
        data = f.read(block_bytes)
        if not data:
            if rest:
                yield rest
            return
        data = rest + data
        cut = data.rfind(b"\n")
        if cut < 0:
            rest = data
            continue
        yield data[: cut + 1]
        rest = data[cut + 1 :]


def _utf8(block: bytes, first_line: int) -> tuple[str, list[tuple[int, str]]]:
    """The block as text; a line that is not UTF-8 becomes blank and is reported."""
    try:
        return block.decode(), []
    except UnicodeDecodeError:
        pass
    lines, errors = [], []
    for i, raw in enumerate(block.split(b"\n")):
        try:
            lines.append(raw.decode())
        except UnicodeDecodeError as e:
            lines.append("")
            errors.append((first_line + i, f"not valid UTF-8: {e.reason}"))
    return "\n".join(lines), errors


class Importer:
    """Runs one import: parse block, send block, count, report."""

    def __init__(self, opts: ImportOptions, console: Console) -> None:
        self.opts = opts
        self.console = console
        self.report = ImportReport()
        self.session = requests.Session()
        self.session.headers.update(auth_headers(opts.token))
        self.url = write_url(opts.url, opts.dataset, "remote-write")

    def run(self) -> ImportReport:
        """Import the whole file; raises SendError when the server fails or is unreachable,
        BadInputError (or OSError) when the file cannot be read as the format."""
        fmt = self.opts.fmt
        if fmt not in FORMATS:
            raise BadInputError(f"unknown format {fmt!r} (use {', '.join(FORMATS)})")
        found = detect_format(self.opts.path)
        if fmt == "auto":
            fmt = found
        elif fmt == "prom":
            fmt = "openmetrics" if found == "openmetrics" else "prom"
        self.report.fmt = fmt
        total = os.path.getsize(self.opts.path)
        cols = (TextColumn(f"[bold]import[/bold] {fmt}"), BarColumn(), DownloadColumn(),
                TextColumn("{task.fields[samples]} samples"), TimeRemainingColumn())  # fmt: skip
        started = time.perf_counter()
        with open(self.opts.path, "rb") as f, Progress(*cols, console=self.console) as prog:
            task = prog.add_task("import", total=total, samples=0)

            def tick() -> None:
                self.report.bytes_read = f.tell()
                prog.update(task, completed=f.tell(), samples=f"{self.report.samples:,}")

            if fmt == "remote-write":
                self._dump(f, tick)
            else:
                self._text(f, fmt, tick)
        self.report.seconds = time.perf_counter() - started
        return self.report

    def _send(self, body: bytes, where: str) -> bool:
        try:
            post(self.session, self.url, body, RW_HEADERS)
        except SendError as e:
            if not e.rejected:
                raise
            self.report.rejected.append((where, str(e)))
            return False
        self.report.requests += 1
        return True

    def _count(self, batch: SampleBatch) -> None:
        self.report.samples += len(batch)
        self.report.series.update(batch.series[i] for i in set(batch.sidx.tolist()))

    def _dump(self, f: BinaryIO, tick) -> None:
        try:
            for n, body in read_frames(f):
                try:
                    batch, meta = decode_write_request_full(body)
                except BadInputError as e:
                    self.report.rejected.append((f"frame {n}", str(e)))
                    continue
                if self._send(body, f"frame {n}"):
                    self._count(batch)
                    self.report.metadata += len(meta)
                tick()
        except BadInputError as e:
            self.report.rejected.append(("end of file", str(e)))

    def _text(self, f: BinaryIO, fmt: str, tick) -> None:
        now = int(time.time() * 1000)
        parser = PromTextParser(fmt == "openmetrics", now) if fmt != "influx" else None
        line = 1
        for block in _text_blocks(f, self.opts.block_bytes):
            text, bad = _utf8(block, line)
            n_lines = block.count(b"\n") + (0 if block.endswith(b"\n") else 1)
            if parser is not None:
                chunk = parser.feed(text)
                batch, meta, errors = chunk.batch, chunk.metadata, chunk.errors
            else:
                parsed = parse_lines(text.encode(), precision=self.opts.precision, now_ms=now)
                batch, meta = parsed.batch, []
                errors = [(line + k - 1, msg) for k, msg in parsed.errors]
            self.report.rejected += [(f"line {k}", msg) for k, msg in sorted(bad + errors)]
            if len(batch) or meta:
                where = f"lines {line}-{line + n_lines - 1}"
                if self._send(encode_write_request(batch, meta or None), where):
                    self._count(batch)
                    self.report.metadata += len(meta)
            line += n_lines
            tick()


def summary_lines(rep: ImportReport, shown: int = 10) -> list[str]:
    rate = rep.samples / max(rep.seconds, 1e-9)
    out = [f"imported {len(rep.series):,} series, {rep.samples:,} samples ({rep.fmt}; "
           f"{rep.metadata} metadata entries) in {rep.requests:,} requests, "
           f"{rep.seconds:.1f} s: {rate:,.0f} samples/s"]  # fmt: skip
    if rep.rejected:
        out.append(f"rejected: {len(rep.rejected)}")
        out += [f"  {where}: {why}" for where, why in rep.rejected[:shown]]
        if len(rep.rejected) > shown:
            out.append(f"  ... and {len(rep.rejected) - shown} more")
    return out
