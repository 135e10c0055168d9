#!/usr/bin/env python3
"""Preview the UI without the real backend: serves filodb/web/static and fake JSON answers.

    python scripts/ui_preview.py [--port 8099] [--host 127.0.0.1]

Then open http://127.0.0.1:8099/ (query page) or /cluster. The fake PromQL endpoints answer any
expression with sine waves; a few words in the expression change the answer:

- unbalanced parentheses or the word ``error``: a 400 ``bad_data`` parse error
- ``timeout``: a 503 ``timeout`` error;  ``warn``: a warning next to the data
- ``empty``: no series;  ``gaps``: series with missing steps
- ``n="300"`` (anywhere): that many series (default 3)
- a bare number: a scalar; a quoted string: a string result
"""

from __future__ import annotations

import argparse
import math
import re
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

from flask import Flask, Response, jsonify, request, send_from_directory

STATIC = Path(__file__).resolve().parents[1] / "filodb" / "web" / "static"
MAX_POINTS = 11_000

app = Flask(__name__, static_folder=None)


# ---- pages and assets ---------------------------------------------------------------------------


@app.get("/")
def index() -> Response:
    return send_from_directory(STATIC, "index.html")


@app.get("/cluster")
def cluster_page() -> Response:
    return send_from_directory(STATIC, "cluster.html")


@app.get("/static/<path:name>")
def static_file(name: str) -> Response:
    resp = send_from_directory(STATIC, name)
    resp.headers["Cache-Control"] = "no-store"
    return resp


# ---- fake PromQL --------------------------------------------------------------------------------


def _error(kind: str, msg: str, code: int) -> tuple[Response, int]:
    return jsonify({"status": "error", "errorType": kind, "error": msg}), code


def _ok(data: object, warnings: list[str] | None = None) -> Response:
    body: dict[str, object] = {"status": "success", "data": data}
    if warnings:
        body["warnings"] = warnings
    return jsonify(body)


def _fmt(v: float) -> str:
    if math.isnan(v):
        return "NaN"
    return repr(round(v, 6))


def _parse_time(raw: str | None, default: float) -> float:
    if raw is None or raw == "":
        return default
    return float(raw)


def _parse_step(raw: str) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)?", raw.strip())
    if not m:
        raise ValueError(f'cannot parse "{raw}" to a valid duration')
    mult = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, None: 1}[m.group(2)]
    return float(m.group(1)) * mult


def _check(query: str) -> tuple[Response, int] | None:
    if not query.strip():
        return _error(
            "bad_data",
            'invalid parameter "query": 1:1: parse error: no expression found in input',
            400,
        )
    depth = 0
    for i, ch in enumerate(query):
        depth += ch == "("
        depth -= ch == ")"
        if depth < 0:
            return _error(
                "bad_data", f"1:{i + 1}: parse error: unexpected right parenthesis ')'", 400
            )
    if depth > 0:
        return _error(
            "bad_data", f"1:{len(query) + 1}: parse error: unclosed left parenthesis", 400
        )
    if "error" in query:
        col = query.index("error") + 1
        return _error("bad_data", f'parse error at char {col}: unexpected identifier "error"', 400)
    if "timeout" in query:
        return _error("timeout", "query timed out in expression evaluation", 503)
    return None


def _series(query: str) -> list[dict[str, str]]:
    if "empty" in query:
        return []
    m = re.search(r'n="(\d+)"', query)
    n = min(int(m.group(1)), 5000) if m else 3
    name_m = re.search(r"[a-zA-Z_:][a-zA-Z0-9_:]*", query)
    name = name_m.group(0) if name_m else "fake_metric"
    if name in {"sum", "rate", "avg", "max", "min", "count", "topk", "irate", "increase"}:
        name = ""  # aggregations drop the metric name
    modes = ["user", "system", "idle", "iowait", "steal", "nice", "irq", "softirq"]
    out = []
    for i in range(n):
        labels = {
            "instance": f"host-{i // len(modes) + 1}:9100",
            "job": "node",
            "mode": modes[i % len(modes)],
        }
        if name:
            labels = {"__name__": name, **labels}
        out.append(labels)
    return out


def _value(query: str, i: int, t: float) -> float:
    seed = zlib.crc32(query.encode()) % 1000
    period = 600 + 137 * (i % 11) + seed
    amp = 10 ** (1 + (i % 4)) if "big" in query else 1 + (i % 7)
    return amp * (1.5 + math.sin(2 * math.pi * t / period + i * 0.7)) + 0.1 * i


def _is_gap(query: str, i: int, k: int) -> bool:
    return "gaps" in query and (k + 7 * i) % 40 < 6


@app.route("/api/v1/query", methods=["GET", "POST"])
@app.route("/promql/<dataset>/api/v1/query", methods=["GET", "POST"])
def query(dataset: str = "prometheus") -> Response | tuple[Response, int]:
    q = request.values.get("query", "")
    if (err := _check(q)) is not None:
        return err
    t = _parse_time(request.values.get("time"), time.time())
    warnings = (
        ["fake warning: results may be incomplete (shard 3 is recovering)"] if "warn" in q else None
    )
    if re.fullmatch(r"\s*-?\d+(\.\d+)?\s*", q):
        return _ok({"resultType": "scalar", "result": [t, _fmt(float(q))]}, warnings)
    if m := re.fullmatch(r'\s*"(.*)"\s*', q):
        return _ok({"resultType": "string", "result": [t, m.group(1)]}, warnings)
    if q.rstrip().endswith("]"):  # a bare range selector: a matrix
        result = [{"metric": s, "values": [[t - 15 * k, _fmt(_value(q, i, t - 15 * k))] for k in range(3, -1, -1)]}
                  for i, s in enumerate(_series(q))]  # fmt: skip
        return _ok({"resultType": "matrix", "result": result}, warnings)
    result = [{"metric": s, "value": [t, _fmt(_value(q, i, t))]} for i, s in enumerate(_series(q))]
    return _ok({"resultType": "vector", "result": result}, warnings)


@app.route("/api/v1/query_range", methods=["GET", "POST"])
@app.route("/promql/<dataset>/api/v1/query_range", methods=["GET", "POST"])
def query_range(dataset: str = "prometheus") -> Response | tuple[Response, int]:
    q = request.values.get("query", "")
    if (err := _check(q)) is not None:
        return err
    try:
        start = float(request.values["start"])
        end = float(request.values["end"])
        step = _parse_step(request.values["step"])
    except (KeyError, ValueError) as e:
        return _error("bad_data", f"invalid parameter: {e}", 400)
    if step <= 0:
        return _error(
            "bad_data", "zero or negative query resolution step widths are not accepted", 400
        )
    if (end - start) / step > MAX_POINTS:
        return _error("bad_data", "exceeded maximum resolution of 11,000 points per timeseries. "
                      "Try decreasing the query resolution (?step=XX)", 400)  # fmt: skip
    warnings = (
        ["fake warning: results may be incomplete (shard 3 is recovering)"] if "warn" in q else None
    )
    steps = [start + k * step for k in range(int((end - start) / step) + 1)]
    if re.fullmatch(r"\s*-?\d+(\.\d+)?\s*", q):
        return _ok(
            {
                "resultType": "matrix",
                "result": [{"metric": {}, "values": [[t, _fmt(float(q))] for t in steps]}],
            }
        )
    result = []
    for i, s in enumerate(_series(q)):
        vals = [
            [round(t, 3), _fmt(_value(q, i, t))]
            for k, t in enumerate(steps)
            if not _is_gap(q, i, k)
        ]
        if vals:
            result.append({"metric": s, "values": vals})
    return _ok({"resultType": "matrix", "result": result}, warnings)


@app.get("/api/v1/status/buildinfo")
@app.get("/promql/<dataset>/api/v1/status/buildinfo")
def buildinfo(dataset: str | None = None) -> Response:
    return _ok({"version": "0.0.0-preview", "revision": "", "branch": "main", "buildUser": "ui_preview",
                "buildDate": "", "goVersion": "python"})  # fmt: skip


# ---- fake cluster -------------------------------------------------------------------------------

DATASETS = {"prometheus": {"shards": 8, "spread": 3}, "longterm": {"shards": 4, "spread": 2}}
NODES = ["node-1", "node-2", "node-3"]
BOOT = time.time()


def _shard_rows(dataset: str) -> list[dict[str, object]]:
    now = time.time()
    n = DATASETS[dataset]["shards"]
    rows = []
    for s in range(n):
        node: str | None = NODES[s % 2] if dataset == "prometheus" else NODES[(s + 1) % 2]
        status, progress = "Active", 100
        if dataset == "prometheus" and s == 3:
            progress = int((now - BOOT) * 4) % 100
            status = "Recovery"
        elif dataset == "prometheus" and s == 6:
            status = "Error"
        elif dataset == "longterm" and s == 2:
            status, node, progress = "Unassigned", None, 0
        elif dataset == "longterm" and s == 3:
            status, progress = "Assigned", 0
        end = int(1000 * (now - BOOT + 50) * (s + 1)) // 7
        lag = 0 if status == "Active" else (end // 3 if status == "Recovery" else end)
        rows.append({
            "shard": s, "node": node, "status": status, "progress": progress,
            "ingested_offset": end - lag, "log_end_offset": end, "lag": lag,
            "series": 0 if node is None else 1200 + 37 * s, "samples": (end - lag) * 40,
            "samples_rejected": 0, "updated": now - 5 * s,
        })  # fmt: skip
    return rows


@app.get("/api/v1/cluster")
def cluster() -> Response:
    return _ok([{"dataset": k, **v} for k, v in sorted(DATASETS.items())])


@app.get("/api/v1/cluster/<dataset>/status")
def cluster_status(dataset: str) -> Response | tuple[Response, int]:
    if dataset not in DATASETS:
        return _error("not_found", f"dataset {dataset} not found", 404)
    return _ok(_shard_rows(dataset))


@app.get("/admin/nodes")
def nodes() -> Response:
    now = time.time()
    owned: dict[str, dict[str, list[int]]] = {}
    for ds in DATASETS:
        for r in _shard_rows(ds):
            if r["node"]:
                owned.setdefault(str(r["node"]), {}).setdefault(ds, []).append(int(r["shard"]))  # type: ignore[call-overload]
    out = []
    for i, name in enumerate(NODES):
        alive = i < 2
        out.append({
            "name": name, "host": f"worker-{i + 1}.local", "pid": 4100 + i * 17, "started": BOOT - 3600 + i,
            "alive": alive, "last_heartbeat": now - 0.4 - i if alive else None, "shards": owned.get(name, {}),
        })  # fmt: skip
    return _ok(out)


@app.get("/api/v1/cluster/events")
def events() -> Response:
    def stream() -> Iterator[str]:
        yield ": connected\n\n"
        for k in range(20):
            time.sleep(3)
            ds = "prometheus"
            yield f'data: {{"dataset": "{ds}", "shard": 3, "status": "Recovery", "node": "node-2", "seq": {k}}}\n\n'

    return Response(stream(), mimetype="text/event-stream", headers={"Cache-Control": "no-cache"})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8099)
    args = ap.parse_args()
    app.run(host=args.host, port=args.port, threaded=True, debug=False)


if __name__ == "__main__":
    main()
