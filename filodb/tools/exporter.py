"""``filodb export SELECTOR``: raw samples from ``/api/v1/export`` to OpenMetrics text (or a
remote-write dump).

OpenMetrics output: for each metric family that has metadata on the server
(``/api/v1/metadata``), its ``# TYPE``/``# HELP``/``# UNIT`` lines before its first series;
then ``name{labels} value timestamp`` lines (timestamps in seconds with 3 decimals, values
as Prometheus prints them: ``NaN``, ``+Inf``, ``-Inf``, shortest round-trip decimals); then
``# EOF``. The server answers window by window (1 h of samples at a time), so over a long range
a series comes back in several pieces; each piece is written where it arrives, which keeps
memory bounded but means a family's lines may be split by other families' lines (our importer
accepts that; strict OpenMetrics parsers do not).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TextIO

import numpy as np
import orjson
import requests

from filodb.errors import BadInputError
from filodb.model.batch import SampleBatch
from filodb.model.labels import Labels, make_labels
from filodb.prom.remote_write import encode_write_request
from filodb.prom.text import family_of, metadata_text, samples_text
from filodb.tools.client import SendError, auth_headers, server_message
from filodb.tools.rwdump import write_frame

_SPECIAL = {"NaN": np.nan, "+Inf": np.inf, "-Inf": -np.inf}


@dataclass
class ExportTotals:
    series: int = 0
    samples: int = 0


def _values(raw: list) -> np.ndarray:
    """JSON values: numbers, and the strings ``NaN``/``+Inf``/``-Inf`` for the rest."""
    try:
        return np.array(raw, np.float64)
    except (ValueError, TypeError):
        return np.array([_SPECIAL[v] if isinstance(v, str) else v for v in raw], np.float64)


def fetch(url: str, dataset: str, selector: str, start: str, end: str, token: str | None = None
          ) -> Iterator[tuple[Labels, np.ndarray, np.ndarray]]:  # fmt: skip
    """Stream ``(labels, ts ms, values)`` pieces from the export route."""
    route = f"{url.rstrip('/')}/promql/{dataset}/api/v1/export"
    try:
        r = requests.post(route, data={"match[]": selector, "start": start, "end": end},
                          headers=auth_headers(token), stream=True, timeout=(10, 600))  # fmt: skip
    except requests.RequestException as e:
        raise SendError(f"cannot reach {route}: {e}") from e
    with r:
        if r.status_code != 200:
            raise SendError(f"{r.status_code} from {route}: {server_message(r)}", r.status_code)
        for line in r.iter_lines():
            if not line:
                continue
            item = orjson.loads(line)
            if "error" in item:
                raise SendError(f"export stopped: {item['error']}", 500)
            yield (
                make_labels(item["metric"]),
                np.array(item["timestamps"], np.int64),
                _values(item["values"]),
            )


def fetch_metadata(url: str, dataset: str, token: str | None = None) -> dict[str, dict[str, str]]:
    """Family name -> the first metadata entry the server has for it (empty when none)."""
    try:
        r = requests.get(f"{url.rstrip('/')}/promql/{dataset}/api/v1/metadata",
                         headers=auth_headers(token), timeout=30)  # fmt: skip
        data = r.json().get("data") or {}
    except (requests.RequestException, ValueError):
        return {}
    return {name: entries[0] for name, entries in data.items() if entries}


def write_openmetrics(pieces: Iterator[tuple[Labels, np.ndarray, np.ndarray]],
                      meta: dict[str, dict[str, str]], out: TextIO) -> ExportTotals:  # fmt: skip
    tot = ExportTotals()
    seen: set[Labels] = set()
    typed: set[str] = set()
    for labels, ts, vals in pieces:
        name = dict(labels).get("__name__", "")
        fam = family_of(name, meta)
        if fam in meta and fam not in typed:
            typed.add(fam)
            out.write(metadata_text(fam, meta[fam]))
        out.write(samples_text(labels, ts, vals))
        if labels not in seen:
            seen.add(labels)
            tot.series += 1
        tot.samples += len(ts)
    out.write("# EOF\n")
    return tot


def write_dump(pieces: Iterator[tuple[Labels, np.ndarray, np.ndarray]],
               meta: dict[str, dict[str, str]], out, per_frame: int = 100_000) -> ExportTotals:  # fmt: skip
    """Pieces as remote-write frames of about ``per_frame`` samples; metadata in the first."""
    tot = ExportTotals()
    seen: set[Labels] = set()
    buf: list[tuple[Labels, np.ndarray, np.ndarray]] = []
    entries = [{"metric": k, **v} for k, v in meta.items()]

    def flush() -> None:
        nonlocal entries
        if not buf and not entries:
            return
        lens = [len(t) for _, t, _ in buf]
        batch = SampleBatch([lb for lb, _, _ in buf], np.repeat(np.arange(len(buf)), lens),
                            np.concatenate([t for _, t, _ in buf] or [np.zeros(0, np.int64)]),
                            np.concatenate([v for _, _, v in buf] or [np.zeros(0)]))  # fmt: skip
        write_frame(out, encode_write_request(batch, entries or None))
        entries = []
        buf.clear()

    n = 0
    for piece in pieces:
        buf.append(piece)
        n += len(piece[1])
        tot.samples += len(piece[1])
        if piece[0] not in seen:
            seen.add(piece[0])
            tot.series += 1
        if n >= per_frame:
            flush()
            n = 0
    flush()
    return tot


def check_format(fmt: str) -> None:
    if fmt not in ("openmetrics", "remote-write"):
        raise BadInputError(f"unknown export format {fmt!r} (use openmetrics or remote-write)")
