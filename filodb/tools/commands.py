"""What ``filodb gen``, ``filodb import`` and ``filodb export`` do; ``filodb.cli`` only parses
their options. Each returns the exit code: 0 success, 1 the server refused or failed (or, for
import, some lines were rejected), 2 bad usage or an unreadable file.
"""

from __future__ import annotations

import sys
from typing import TextIO

from rich.console import Console

from filodb.errors import BadInputError
from filodb.model.timeparse import parse_duration_ms, parse_time_ms
from filodb.tools.client import SendError

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def _fail(msg: str, code: int) -> int:
    err.print(f"[red]error:[/red] {msg}")
    return code


def gen(series: int, samples: int, interval: str, start: str | None, url: str, fmt: str,
        dataset: str, batch: int, out_path: str | None, seed: int,
        token: str | None = None) -> int:  # fmt: skip
    from filodb.tools.generate import GenOptions, generate, summary_lines

    try:
        interval_ms = parse_duration_ms(interval, "interval")
        start_ms = parse_time_ms(start, "start") if start is not None else None
    except BadInputError as e:
        return _fail(str(e), 2)
    if series < 1 or samples < 1 or batch < 1 or interval_ms <= 0:
        return _fail("--series, --samples, --batch and --interval must be positive", 2)
    opts = GenOptions(
        series, samples, interval_ms, start_ms, url, fmt, dataset, batch, out_path, seed, token
    )
    try:
        tot = generate(opts, err)
    except SendError as e:
        return _fail(str(e), 1)
    except OSError as e:
        return _fail(f"cannot write {out_path}: {e}", 2)
    for line in summary_lines(opts, tot):
        out.print(line)
    return 0


def import_file(path: str, fmt: str, url: str, dataset: str, precision: str,
                token: str | None = None) -> int:  # fmt: skip
    from filodb.tools.importer import Importer, ImportOptions, summary_lines

    imp = Importer(ImportOptions(path, fmt, url, dataset, precision, token=token), err)
    try:
        rep = imp.run()
    except (OSError, BadInputError) as e:
        return _fail(f"cannot import {path}: {e}", 2)
    except SendError as e:
        for line in summary_lines(imp.report):
            out.print(line)
        return _fail(f"import stopped: {e}", 1)
    for line in summary_lines(rep):
        out.print(line)
    return rep.exit_code


def export(selector: str, start: str, end: str, url: str, dataset: str, out_path: str | None,
           fmt: str, token: str | None = None) -> int:  # fmt: skip
    from filodb.tools import exporter

    try:
        exporter.check_format(fmt)
    except BadInputError as e:
        return _fail(str(e), 2)
    meta = exporter.fetch_metadata(url, dataset, token)
    pieces = exporter.fetch(url, dataset, selector, start, end, token)
    try:
        if fmt == "remote-write":
            if not out_path:
                return _fail("--format remote-write needs --out FILE", 2)
            with open(out_path, "wb") as fb:
                tot = exporter.write_dump(pieces, meta, fb)
        else:
            sink: TextIO = open(out_path, "w") if out_path else sys.stdout  # noqa: SIM115
            try:
                tot = exporter.write_openmetrics(pieces, meta, sink)
            finally:
                if out_path:
                    sink.close()
    except SendError as e:
        return _fail(str(e), 2 if e.rejected else 1)
    except OSError as e:
        return _fail(f"cannot write {out_path}: {e}", 2)
    err.print(
        f"exported {tot.series:,} series, {tot.samples:,} samples"
        + (f" to {out_path}" if out_path else "")
    )
    return 0
