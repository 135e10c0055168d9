"""Fuzz the web tier over HTTP: no 5xx, no hang, nothing lost, nothing written outside.

Starts its own ``filodb up`` (or uses ``--url``), writes a known set of samples through remote
write and waits until they answer, then sends ``--requests`` generated requests: every route
of the Flask url map (and random paths), every method, hostile parameters (absurd numbers,
NaN, huge and negative times and steps, unicode, repeated parameters, ``match[]`` lists),
headers (content types, encodings, tokens) and bodies (truncated and corrupted protobuf and
snappy, gzip garbage, huge and deeply nested PromQL, hostile dataset names, line protocol),
plus a few raw-socket requests that lie about their length. Every request is generated from
``random.Random(f"{seed}:{i}")``, so ``--only I`` replays request ``I`` alone.

Prints one JSON object per line: ``{"metric", "value", "unit", ...context}``:
``fuzz_requests`` (with the rate), ``fuzz_5xx`` and ``fuzz_hangs`` (no answer in 30 s; both
with the first examples), ``fuzz_healthy_after`` (1: ``/admin/health`` answers 200 after the
run), ``fuzz_samples_intact`` (1: every known sample answers with its value) and
``fuzz_files_outside_data_dir`` (paths created beside the data directory; ``null`` with
``--url``); also ``fuzz_timeouts_asked`` (503 to a request whose own ``timeout`` expired, as
Prometheus answers), ``fuzz_dropped`` (a well-formed request closed without a status),
``fuzz_peak_rss_mb`` and ``fuzz_processes_restarted`` (a process of ``filodb up`` killed, say
by the kernel for memory, and restarted). Exit status 1 when any of them is bad.

The node runs with an admin token the fuzzer does not know: dataset creation and
``stopshards`` answer 401, so the run cannot create unbounded datasets nor stop the shards
holding the known samples. Influx and remote-write requests may add series to the default
dataset (bounded: at most 64 series per request).

    python bench/fuzz_http.py --requests 2000 --seed 1
    python bench/fuzz_http.py --quick                  # 300 requests
    python bench/fuzz_http.py --only 1234 --seed 1     # print request 1234 and its answer
"""

from __future__ import annotations

import argparse
import base64
import gzip
import http.client
import json
import math
import os
import random
import secrets
import socket
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlsplit

import cramjam
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from filodb.prom.proto import ReadRequest, WriteRequest  # noqa: E402
from filodb.prom.proto import field as pb_field  # noqa: E402
from filodb.testing.cluster import UpProcess  # noqa: E402
from filodb.testing.wait import wait_for  # noqa: E402

TIMEOUT_S = 30.0
# A redirect echoes a long URL in Location; http.client refuses header lines over 64 KiB
http.client._MAXLINE = 1 << 22  # type: ignore[attr-defined]
KNOWN_METRIC = "filodb_fuzz_known"  # never generated: the fuzzer cannot overwrite these
KNOWN_SERIES, KNOWN_SAMPLES, KNOWN_STEP_MS = 16, 40, 10_000
DEFAULT_DATASET = "prometheus"
METHODS = ["GET"] * 6 + ["POST"] * 6 + ["PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "HEAD"]


def url_rules() -> list[tuple[str, set[str]]]:
    """Every route of the web tier (rule text, methods), read from the blueprints' url map."""
    from flask import Flask

    from filodb.web import blueprints

    app = Flask("fuzz")
    for bp in blueprints():
        app.register_blueprint(bp)
    return [(r.rule, set(r.methods or ())) for r in app.url_map.iter_rules()
            if r.endpoint != "static"]  # fmt: skip


# ---------------------------------------------------------------------------- values


@dataclass
class Req:
    i: int
    method: str
    path: str  # already percent-encoded, without the query string
    params: list[tuple[str, str]] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    raw: bytes | None = None  # a raw-socket request (the whole bytes on the wire)

    def describe(self) -> dict:
        out = {"i": self.i, "method": self.method, "path": self.path[:300],
               "params": [(k[:80], v[:200]) for k, v in self.params[:10]],
               "headers": {k: v[:100] for k, v in self.headers.items()}}  # fmt: skip
        if self.body is not None:
            out["body"] = repr(self.body[:200])
            out["body_len"] = len(self.body)
        if self.raw is not None:
            out["raw"] = repr(self.raw[:300])
        return out


class Gen:
    """Generates one request from a seeded RNG."""

    FUNCS = ["rate", "irate", "increase", "delta", "idelta", "deriv", "sum_over_time",
             "avg_over_time", "min_over_time", "max_over_time", "count_over_time",
             "stddev_over_time", "last_over_time", "present_over_time", "changes", "resets",
             "absent_over_time", "quantile_over_time", "predict_linear", "holt_winters",
             "double_exponential_smoothing", "abs", "ceil", "floor", "exp", "ln", "sqrt",
             "round", "clamp", "clamp_min", "clamp_max", "sort", "sort_desc", "sort_by_label",
             "timestamp", "vector", "scalar", "time", "absent", "label_replace", "label_join",
             "histogram_quantile", "histogram_fraction", "histogram_count", "minute", "year",
             "days_in_month", "sgn", "info", "nonexistent_fn", "pi", "sin", "atan2"]  # fmt: skip
    AGGS = ["sum", "avg", "min", "max", "count", "stddev", "stdvar", "topk", "bottomk",
            "quantile", "count_values", "group", "limitk", "limit_ratio"]  # fmt: skip
    BINOPS = ["+", "-", "*", "/", "%", "^", "==", "!=", ">", "<", ">=", "<=", "and", "or",
              "unless", "atan2", "== bool", "> bool"]  # fmt: skip
    METRICS = ["up", "http_requests_total", "fuzz_a", "fuzz_b_bucket", "x", "métrique",
               "a:b:c", "_", "__name__"]  # fmt: skip
    LABELS = ["job", "instance", "le", "i", "kind", "__name__", "a", "é", "x-y", "1bad", ""]
    PARAMS = ["query", "time", "start", "end", "step", "timeout", "match[]", "limit",
              "lookback_delta", "stats", "dataset", "db", "bucket", "precision", "shards",
              "spread", "retention", "metric", "format", "dedup", "partial_response",
              "max_source_resolution", "u", "p", "rp", "org", "consistency", "window"]  # fmt: skip
    CONTENT_TYPES = ["application/x-www-form-urlencoded", "application/json",
                     "application/x-protobuf", "text/plain", "text/plain; charset=utf-8",
                     "multipart/form-data", "multipart/form-data; boundary=",
                     "multipart/form-data; boundary=xyz", "application/x-www-form-urlencoded; charset=utf-7",
                     "application/x-www-form-urlencoded; charset=nonsense", "", ";;;", "*/*",
                     "application/x-protobuf;proto=prometheus.WriteRequest", "é/é"]  # fmt: skip
    ENCODINGS = ["snappy", "gzip", "deflate", "br", "identity", "zstd", "gzip, gzip", "x" * 300,
                 "GZIP", ""]  # fmt: skip

    def __init__(self, rng: random.Random, rules: list[tuple[str, set[str]]], now_s: float):
        self.r = rng
        self.rules = rules
        self.now_s = now_s

    def pick(self, seq):  # type: ignore[no-untyped-def]
        return seq[self.r.randrange(len(seq))]

    def chance(self, p: float) -> bool:
        return self.r.random() < p

    # --- scalars
    def ustring(self, n: int | None = None) -> str:
        n = self.r.choice([0, 1, 3, 8, 40, 300, 5000]) if n is None else n
        alphabet = ("abcXYZ019_:-./\\ \"'`{}[]()=~!,%&?#@$^*+|<>;\t\n\r\x00\x01\x7f"
                    "éßøΩжЖ中文日本語🙂🚀\u200b\u202e\ufeff\uffff")  # fmt: skip
        return "".join(self.r.choice(alphabet) for _ in range(n))

    def number(self) -> str:
        specials = ["0", "-0", "1", "-1", "1e308", "-1e308", "1e309", "-1e309", "NaN", "nan",
                    "Inf", "+Inf", "-Inf", "inf", "Infinity", "9223372036854775807",
                    "9223372036854775808", "-9223372036854775809", "18446744073709551616",
                    "1e-400", "4.9e-324", "0x1F", "0b101", "1_000", "١٢٣", " 7 ", "", "1e",
                    "--1", "1.5.5", "1e18", "-1e18", "1e+19", "3.4e38", "99999999999999999999999"]  # fmt: skip
        k = self.r.random()
        if k < 0.6:
            return self.pick(specials)
        if k < 0.8:
            return str(self.r.randint(-(2**70), 2**70))
        return repr(self.r.uniform(-1e20, 1e20))

    def time_(self) -> str:
        k = self.r.random()
        if k < 0.3:  # a plausible time: queries do real work
            return f"{self.now_s - self.r.uniform(-600, 7200):.3f}"
        if k < 0.55:
            return self.number()
        if k < 0.75:
            return self.pick(["2025-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "0000-01-01T00:00:00Z",
                              "0001-01-01T00:00:00Z", "2025-13-45T99:99:99Z", "2025-01-01",
                              "2025-01-01T00:00:00.123456789+05:30", "2025-01-01T00:00:00-23:59",
                              "292277026596-12-04T15:30:07Z", "1970-01-01T00:00:00Z", "now",
                              "-1h", "now-1h", "T", "2025-01-01T00:00:00+99:00"])  # fmt: skip
        return self.ustring()

    def duration(self) -> str:
        k = self.r.random()
        if k < 0.6:
            return self.pick(["5m", "1y", "0s", "-5m", "1h30m", "999999999999999d", "5ms", "1.5",
                              "0", "1e9", "0.001", "P1D", "5m5", "1w2d3h4m5s6ms", "10000y",
                              "1e-9", "-1", "NaN", "Inf", "15s", "1m", "1d", "2h", "30s",
                              "9223372036854775807ms", "0.0001"])  # fmt: skip
        if k < 0.8:
            return self.number()
        return f"{self.r.randint(0, 10 ** self.r.randint(1, 12))}{self.pick(['ms', 's', 'm', 'h', 'd', 'w', 'y', ''])}"

    def dataset(self) -> str:
        k = self.r.random()
        if k < 0.55:
            return DEFAULT_DATASET
        return self.pick(["../x", "..", ".", "../../../../tmp/fuzz", "a/b", "x" * 5000, "é✓",
                          "prometheus/../prometheus", "con", "nul", "", " ", "%2e%2e",
                          "with space", "a\x00b", "PROMETHEUS", "fuzzds", "_", "-", "a" * 64,
                          self.ustring(), "..\\x", "~root", "$HOME"])  # fmt: skip

    def label_name(self) -> str:
        return self.pick(self.LABELS) if self.chance(0.8) else self.ustring()

    def metric(self) -> str:
        return self.pick(self.METRICS) if self.chance(0.85) else self.ustring(self.r.randint(1, 30))

    def regex(self) -> str:
        return self.pick(["(a*)*b", ".*.*.*.*.*.*.*.*c", "a{1000}{1000}", "(", "[", "\\",
                          "(?P<x>a)", "(?=a)", "\\1", "a{2,1}", ".+", "", "|".join("abcdefghij"),
                          "(" * 500 + ")" * 500, "[^\\x00-\\x{10FFFF}]", "\\p{Greek}+", "é+",
                          "x{99999}", "(?i)UP", ".*" * 200])  # fmt: skip

    # --- PromQL
    def selector(self) -> str:
        parts = []
        for _ in range(self.r.randint(0, 3)):
            op = self.pick(["=", "!=", "=~", "!~", "==", "~"])
            v = self.regex() if "~" in op else self.ustring(self.r.choice([0, 1, 5, 50]))
            parts.append(f"{self.label_name()}{op}{json.dumps(v, ensure_ascii=self.chance(0.5))}")
        name = (KNOWN_METRIC if self.chance(0.3) else self.metric()) if self.chance(0.85) else ""
        if not name and not parts:
            parts.append('job=~".+"')
        return name + ("{" + ",".join(parts) + "}" if parts or self.chance(0.2) else "")

    def expr(self, depth: int = 0) -> str:
        k = self.r.random()
        if depth > 4 or k < 0.25:
            leaf = self.r.random()
            if leaf < 0.6:
                s = self.selector()
            elif leaf < 0.8:
                s = self.number()
            else:
                s = json.dumps(self.ustring(5))
            if self.chance(0.15):
                s += f" offset {self.duration()}"
            if self.chance(0.1):
                s += f" @ {self.pick([self.number(), 'start()', 'end()'])}"
            return s
        if k < 0.45:
            rng = (
                f"[{self.duration()}]"
                if self.chance(0.8)
                else f"[{self.duration()}:{self.duration()}]"
            )
            inner = self.selector() if self.chance(0.7) else f"({self.expr(depth + 1)})"
            args = [inner + rng]
            fn = self.pick(self.FUNCS)
            if fn in ("quantile_over_time",):
                args.insert(0, self.number())
            if fn in ("predict_linear", "holt_winters", "double_exponential_smoothing"):
                args.append(self.number())
            return f"{fn}({', '.join(args)})"
        if k < 0.6:
            fn = self.pick(self.FUNCS)
            args = [self.expr(depth + 1) for _ in range(self.r.randint(0, 3))]
            if fn == "label_replace":
                args = [self.expr(depth + 1), json.dumps(self.label_name()),
                        json.dumps(self.ustring(4)), json.dumps(self.label_name()),
                        json.dumps(self.regex())]  # fmt: skip
            return f"{fn}({', '.join(args)})"
        if k < 0.78:
            agg = self.pick(self.AGGS)
            param = ""
            if agg in ("topk", "bottomk", "quantile", "limitk", "limit_ratio"):
                param = self.number() + ", "
            elif agg == "count_values":
                param = json.dumps(self.label_name()) + ", "
            mod = ""
            if self.chance(0.5):
                labels = ", ".join(self.label_name() for _ in range(self.r.randint(0, 3)))
                mod = f" {self.pick(['by', 'without'])} ({labels})"
            return f"{agg}{mod}({param}{self.expr(depth + 1)})"
        if k < 0.92:
            op = self.pick(self.BINOPS)
            match = ""
            if self.chance(0.3):
                labels = ", ".join(self.label_name() for _ in range(self.r.randint(0, 2)))
                match = f" {self.pick(['on', 'ignoring'])}({labels})"
                if self.chance(0.5):
                    match += f" {self.pick(['group_left', 'group_right'])}({self.label_name()})"
            return f"{self.expr(depth + 1)} {op}{match} {self.expr(depth + 1)}"
        return f"-({self.expr(depth + 1)})"

    def promql(self) -> str:
        k = self.r.random()
        if k < 0.7:
            return self.expr()
        n = self.r.choice([100, 1000, 5000, 20000, 100000])
        if k < 0.76:
            return "(" * n + "1" + ")" * n
        if k < 0.8:
            return "-" * n + "1"
        if k < 0.84:
            return " + ".join(["up"] * (n // 10 + 1))
        if k < 0.87:
            return "sum(" * (n // 10) + "up" + ")" * (n // 10)
        if k < 0.9:  # subqueries of absurd step counts
            inner = self.pick([KNOWN_METRIC, "vector(1)", "time()", self.expr(3)])
            return f"{self.pick(self.FUNCS[:12])}(({inner})[{self.duration()}:{self.duration()}])"
        if k < 0.93:
            return "rate(" * (n // 50) + "up[5m]" + ")" * (n // 50)
        if k < 0.96:
            return self.ustring()
        e = self.expr()  # truncated or corrupted
        cut = self.r.randint(0, len(e))
        return e[:cut] + self.ustring(self.r.choice([0, 1, 3]))

    # --- requests
    def path(self, method: str) -> str:
        if self.chance(0.08):  # a random path
            segs = [
                quote(self.ustring(self.r.randint(0, 12)), safe="")
                for _ in range(self.r.randint(0, 6))
            ]
            return "/" + "/".join(segs) + ("/" if self.chance(0.2) else "")
        rules = [r for r in self.rules if method in r[1]] if self.chance(0.8) else self.rules
        rule = self.pick(rules or self.rules)[0]
        out = []
        for seg in rule.split("/"):
            if seg == "<dataset>":
                seg = quote(self.dataset(), safe="" if self.chance(0.8) else "/.")
            elif seg == "<name>":
                seg = quote(self.label_name(), safe="")
            elif seg == "<path:name>":
                seg = self.pick(["app.js", "style.css", "../../../../etc/passwd", "..%2f..%2fetc",
                                 quote(self.ustring(), safe=""), "", "index.html", "a/../../b"])  # fmt: skip
            out.append(seg)
        p = "/".join(out)
        if self.chance(0.05):
            p = self.pick([p + "/", p.upper(), p.replace("/", "//"), p + "/extra", p + "%00"])
        return p

    def params(self, path: str) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        names = list(self.PARAMS)
        for _ in range(self.r.choice([0, 1, 2, 3, 4, 5, 8, 30])):
            name = self.pick(names) if self.chance(0.9) else self.ustring(self.r.randint(0, 20))
            if name == "query":
                v = self.promql()
            elif name == "match[]":
                v = self.selector() if self.chance(0.7) else self.promql()
            elif name in ("time", "start", "end"):
                v = self.time_()
            elif name in ("step", "timeout", "lookback_delta", "retention", "window"):
                v = self.duration()
            elif name in ("limit", "shards", "spread"):
                v = self.number()
            elif name in ("db", "bucket", "dataset"):
                v = self.dataset()
            elif name == "precision":
                v = self.pick(["ns", "n", "u", "us", "µ", "ms", "s", "m", "h", "x", "", "NS"])
            else:
                v = self.ustring()
            out.append((name, v))
        if "query_range" in path and self.chance(0.6):  # a plausible range: real work
            end = self.now_s - self.r.uniform(0, 600)
            out += [("query", self.promql()), ("start", f"{end - self.r.uniform(0, 7200):.3f}"),
                    ("end", f"{end:.3f}"), ("step", self.pick(["1", "15", "60", "0.001", "1e-3", "3600"]))]  # fmt: skip
        if path.rstrip("/").endswith("/query") and self.chance(0.5):
            out.append(("query", self.promql()))
        return out

    def headers(self) -> dict[str, str]:
        h: dict[str, str] = {}
        if self.chance(0.35):
            h["Content-Type"] = self.pick(self.CONTENT_TYPES)
        if self.chance(0.2):
            h["Content-Encoding"] = self.pick(self.ENCODINGS)
        if self.chance(0.15):
            h["Accept-Encoding"] = self.pick(self.ENCODINGS)
        if self.chance(0.15):
            h["Authorization"] = self.pick(["Bearer " + secrets.token_hex(8), "Basic !!!notbase64",
                                            "Basic " + base64.b64encode(b"user:pw").decode(),
                                            "Token ", "Bearer", "", "Digest x", "Bearer " + "a" * 5000])  # fmt: skip
        if self.chance(0.1):
            h["X-Prometheus-Remote-Write-Version"] = self.pick(["0.1.0", "2.0.0", "", "x"])
        if self.chance(0.05):
            h["Accept"] = self.pick(["application/openmetrics-text", "*/*", "text/html", "é"])
        if self.chance(0.03):
            h["X-Fuzz-" + secrets.token_hex(2)] = "v" * self.r.choice([1, 100, 8000])
        # requests needs latin-1 header values
        return {k: v.encode("utf-8", "replace").decode("latin-1") for k, v in h.items()}

    def labels(self) -> list[tuple[str, str]]:
        out = [("__name__", self.metric() if self.chance(0.9) else "")]
        for _ in range(self.r.choice([0, 1, 2, 3, 10])):
            out.append((self.label_name(), self.ustring(self.r.choice([0, 1, 5, 50, 5000]))))
        if self.chance(0.1):
            self.r.shuffle(out)
        if self.chance(0.05):
            out.append(out[0])
        return out

    def sample_ts(self) -> int:
        if self.chance(0.6):
            return int(self.now_s * 1000) - self.r.randint(-600_000, 7_200_000)
        return self.pick([0, -1, 2**63 - 1, -(2**63), 1, 10**18, -(10**15), 2**53])

    def sample_value(self) -> float:
        if self.chance(0.7):
            return self.r.uniform(-1e6, 1e6)
        return self.pick([math.nan, math.inf, -math.inf, 1e308, -0.0, 5e-324, 0.0])

    def write_proto(self) -> bytes:
        if self.chance(0.1):  # hand-made fields: invalid UTF-8, bad wire types, lying lengths
            chunks = []
            for _ in range(self.r.randint(1, 5)):
                tag = self.r.choice([1, 2, 3, 15])
                payload = self.r.randbytes(self.r.randint(0, 40))
                if self.chance(0.5):
                    payload = (
                        pb_field(1, pb_field(1, b"__name__") + pb_field(2, b"\xff\xfe\x80"))
                        + payload
                    )
                chunks.append(pb_field(tag, payload))
            return b"".join(chunks)
        req = WriteRequest()
        for _ in range(self.r.choice([0, 1, 2, 5, 20, 64])):
            ts = req.timeseries.add()
            for k, v in self.labels():
                ts.labels.add(name=k, value=v)
            for _ in range(self.r.choice([0, 1, 3, 20])):
                ts.samples.add(value=self.sample_value(), timestamp=self.sample_ts())
        for _ in range(self.r.choice([0, 0, 1, 3])):
            req.metadata.add(type=self.r.randint(0, 9), metric_family_name=self.metric(),
                             help=self.ustring(), unit=self.ustring(3))  # fmt: skip
        return req.SerializeToString()

    def read_proto(self) -> bytes:
        req = ReadRequest()
        for _ in range(self.r.choice([0, 1, 2, 10])):
            start = (
                int(float(self.pick(["0", "-1", "1e18"])))
                if self.chance(0.3)
                else int(self.now_s * 1000) - 3_600_000
            )
            end = self.pick([int(self.now_s * 1000), 2**63 - 1, -(2**63), 0, start - 1])
            q = req.queries.add(start_timestamp_ms=start, end_timestamp_ms=end)
            for _ in range(self.r.choice([0, 1, 2, 4])):
                q.matchers.add(type=self.r.choice([0, 1, 2, 3, 3, 7]), name=self.label_name(),
                               value=self.regex() if self.chance(0.5) else self.metric())  # fmt: skip
        req.accepted_response_types.extend(self.r.choice([[], [0], [1], [0, 1], [5], [1, 1, 1]]))
        return req.SerializeToString()

    def compress(self, raw: bytes) -> bytes:
        k = self.r.random()
        if k < 0.7:
            return bytes(cramjam.snappy.compress_raw(raw))
        if k < 0.8:
            return bytes(cramjam.snappy.compress(raw))  # framed, not block
        if k < 0.9:
            return gzip.compress(raw)
        return raw

    def mutate(self, data: bytes) -> bytes:
        k = self.r.random()
        if k < 0.5 or not data:
            return data
        if k < 0.65:
            return data[: self.r.randrange(len(data))]
        if k < 0.8:
            b = bytearray(data)
            for _ in range(self.r.randint(1, 8)):
                b[self.r.randrange(len(b))] = self.r.randrange(256)
            return bytes(b)
        if k < 0.9:
            at = self.r.randrange(len(data))
            return data[:at] + self.r.randbytes(self.r.randint(1, 64)) + data[at:]
        return self.pick([b"", self.r.randbytes(self.r.choice([1, 16, 4096])),
                          gzip.compress(self.r.randbytes(100))[:40], b"\xff" * 10,
                          b"\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01"])  # fmt: skip

    def influx_field(self) -> str:
        key = self.pick(["value", "f", "x", "", '"q"', "é"])
        val = self.pick(
            [self.number(), self.number() + "i", '"s"', "t", "FALSE", self.number() + "u"]
        )
        return f"{key}={val}"

    def influx(self) -> bytes:
        lines = []
        for _ in range(self.r.choice([0, 1, 3, 20, 64])):
            m = self.pick(
                ["cpu", "mem", "m é", "a,b", "a\\ b", "", "1", "x" * 300, self.ustring(8)]
            )
            tags = "".join(f",{self.pick(['host', 'le', '', '=', 'é'])}={self.ustring(self.r.choice([0, 3]))}"
                           for _ in range(self.r.choice([0, 1, 3])))  # fmt: skip
            fields = ",".join(self.influx_field() for _ in range(self.r.choice([0, 1, 2, 5])))
            ts = self.pick(["", str(int(self.now_s * 1e9)), self.number(), str(2**63), "-1", "1e9"])
            lines.append(f"{m}{tags} {fields} {ts}".rstrip())
        body = "\n".join(lines).encode("utf-8", "surrogatepass")
        if self.chance(0.05):
            body = self.r.randbytes(self.r.randint(0, 200))
        return body

    def raw_request(self, i: int, host: str) -> Req:
        """Bytes a client library would not send: lying lengths, bad chunking, bad lines."""
        path = self.path("POST")
        body = self.r.randbytes(self.r.choice([0, 10, 1000]))
        k = self.r.random()
        if k < 0.25:  # claims more than it sends, then half-closes
            head = f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len(body) + self.r.choice([1, 1000, 10**9])}\r\n\r\n"
        elif k < 0.45:
            size = self.pick(["zz", "-1", "ffffffffffffffffffff", "10", ""])
            head = f"POST {path} HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\n{size}\r\n"
        elif k < 0.6:
            head = f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {self.pick(['-5', 'abc', '1e3', '1, 2', ''])}\r\n\r\n"
        elif k < 0.75:
            head = f"{self.pick(['FOO', 'GET GET', 'get', ''])} {path} HTTP/1.1\r\nHost: {host}\r\nBroken header line\r\n\r\n"
        elif k < 0.9:
            head = f"GET {path}{'?' + 'a' * self.r.choice([9000, 70000])} HTTP/1.1\r\nHost: {host}\r\n\r\n"
        else:
            head = f"GET {path} HTTP/{self.pick(['0.9', '2.0', '1.1x', '9'])}\r\n\r\n"
        return Req(i, "RAW", path, raw=head.encode("utf-8", "replace") + body)

    def request(self, i: int, host: str) -> Req:
        if self.chance(0.03):
            return self.raw_request(i, host)
        method = self.pick(METHODS)
        path = self.path(method)
        req = Req(i, method, path, self.params(path), self.headers())
        if method in ("GET", "HEAD", "OPTIONS", "DELETE") and not self.chance(0.1):
            return req
        p = path.rstrip("/")
        if p.endswith("/api/v1/write"):
            req.body = self.mutate(self.compress(self.write_proto()))
        elif p.endswith("/api/v1/read"):
            req.body = self.mutate(self.compress(self.read_proto()))
        elif p.endswith("/write"):
            body = self.influx()
            if self.chance(0.2):
                body = gzip.compress(body)
                req.headers["Content-Encoding"] = "gzip"
            req.body = self.mutate(body)
        elif p.startswith("/api/v1/cluster"):
            req.body = self.json_body()
            req.headers.setdefault("Content-Type", "application/json")
        elif self.chance(0.6):  # form body
            form = self.params(path)
            req.body = "&".join(f"{quote(k)}={quote(v)}" for k, v in form).encode()
            req.headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
            if self.chance(0.1):
                req.body = self.mutate(req.body)
        else:
            req.body = self.mutate(self.r.randbytes(self.r.choice([0, 10, 1000])))
        return req

    def json_body(self) -> bytes:
        k = self.r.random()
        if k < 0.2:
            n = self.r.choice([100, 10000, 200000])
            return b"[" * n + b"]" * n
        if k < 0.3:
            return self.r.randbytes(50)
        body = {"shards": self.number(), "spread": self.number(),
                "retention": self.pick([self.duration(), 1e308, -1, None, [], {}]),
                "spread_overrides": self.pick([[], [{"x": 1}], "a", [[1, 2]], None]),
                "limits": self.pick([{}, {"max_series": self.number()}, None, "x", [1],
                                     {"query_timeout": self.duration()}, {"nope": 1},
                                     {"ingest_samples_per_s": 1e308, "max_query_concurrency": -1},
                                     {"max_series_per_metric": "1e400", "query_timeout": 1e300}])}  # fmt: skip
        return json.dumps(body).encode()


# ---------------------------------------------------------------------------- sending


@dataclass
class Outcome:
    req: Req
    status: int | None  # None: no status (connection closed)
    seconds: float
    body: bytes = b""
    error: str = ""
    hang: bool = False


_local = threading.local()


def _session() -> requests.Session:
    s = getattr(_local, "session", None)
    if s is None:
        s = _local.session = requests.Session()
    return s


def asked_timeout(o: Outcome) -> bool:
    """A 503 ``timeout`` answer to a request that set its own ``timeout``: Prometheus's answer
    too, so not a server fault."""
    if o.status != 503 or (o.req.method != "HEAD" and b'"errorType":"timeout"' not in o.body):
        return False  # a HEAD answer has no body to show its errorType
    form = o.req.body or b""
    return any(k == "timeout" for k, _ in o.req.params) or b"timeout=" in form


def send(base: str, req: Req) -> Outcome:
    t0 = time.monotonic()
    if req.raw is not None:
        return _send_raw(base, req, t0)
    try:
        r = _session().request(req.method, base + req.path, params=req.params, data=req.body,
                               headers=req.headers, timeout=TIMEOUT_S, stream=True,
                               allow_redirects=False)  # fmt: skip
    except requests.Timeout as e:
        _local.session = None
        return Outcome(req, None, time.monotonic() - t0, error=str(e)[:300], hang=True)
    except requests.RequestException as e:
        _local.session = None
        return Outcome(req, None, time.monotonic() - t0, error=str(e)[:300])
    body = bytearray()
    hang = False
    try:
        for chunk in r.raw.stream(65536, decode_content=False):
            body += chunk[: max(0, 4096 - len(body))]
            if "text/event-stream" in r.headers.get("Content-Type", ""):
                break  # the stream answered; it lasts SSE_STREAM_S by design
            if time.monotonic() - t0 > TIMEOUT_S:  # a stream that never ends
                hang = True
                break
    except Exception as e:  # noqa: BLE001 - a broken body is an outcome, not a crash
        hang = "timed out" in str(e).lower()
        r.close()
        _local.session = None
        return Outcome(req, r.status_code, time.monotonic() - t0, bytes(body), str(e)[:300], hang)
    r.close()
    return Outcome(req, r.status_code, time.monotonic() - t0, bytes(body), hang=hang)


def _send_raw(base: str, req: Req, t0: float) -> Outcome:
    u = urlsplit(base)
    data = b""
    try:
        with socket.create_connection((u.hostname, u.port), timeout=TIMEOUT_S) as s:
            s.sendall(req.raw or b"")
            s.shutdown(socket.SHUT_WR)
            while len(data) < 4096:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
                if b"\r\n\r\n" in data:
                    break
    except TimeoutError:
        return Outcome(req, None, time.monotonic() - t0, data, "no answer", hang=True)
    except OSError as e:
        return Outcome(req, None, time.monotonic() - t0, data, str(e)[:300])
    status = None
    parts = data.split(b" ", 2)
    if len(parts) >= 2 and parts[0].startswith(b"HTTP/") and parts[1].isdigit():
        status = int(parts[1])
    return Outcome(req, status, time.monotonic() - t0, data[data.find(b"\r\n\r\n") + 4 :][:4096])


# ---------------------------------------------------------------------------- known samples


def known_series(now_ms: int) -> list[tuple[dict[str, str], list[int], list[float]]]:
    rng = random.Random("known")
    base = (now_ms // 1000) * 1000 - KNOWN_SAMPLES * KNOWN_STEP_MS - 60_000
    out = []
    for s in range(KNOWN_SERIES):
        labels = {"__name__": KNOWN_METRIC, "i": str(s), "kind": "é✓" if s % 2 else "plain"}
        ts = [base + k * KNOWN_STEP_MS for k in range(KNOWN_SAMPLES)]
        vals = [rng.choice([rng.uniform(-1e9, 1e9), float(rng.randint(0, 100)), 1e300, -0.5])
                for _ in range(KNOWN_SAMPLES)]  # fmt: skip
        out.append((labels, ts, vals))
    return out


def write_known(base: str, series: list) -> None:  # type: ignore[type-arg]
    req = WriteRequest()
    for labels, ts, vals in series:
        t = req.timeseries.add()
        for k in sorted(labels):
            t.labels.add(name=k, value=labels[k])
        for a, v in zip(ts, vals, strict=True):
            t.samples.add(timestamp=a, value=v)
    body = bytes(cramjam.snappy.compress_raw(req.SerializeToString()))
    r = requests.post(base + "/api/v1/write", data=body, timeout=TIMEOUT_S,
                      headers={"Content-Type": "application/x-protobuf", "Content-Encoding": "snappy"})  # fmt: skip
    if r.status_code != 204:
        raise RuntimeError(f"writing the known samples: {r.status_code} {r.text[:500]}")


def known_mismatches(base: str, series: list) -> list[str]:  # type: ignore[type-arg]
    """What differs between the known samples and what the node answers (empty: intact)."""
    last = max(ts[-1] for _, ts, _ in series)
    r = requests.get(base + "/api/v1/query", timeout=TIMEOUT_S,
                     params={"query": f"{KNOWN_METRIC}[1h]", "time": f"{last / 1000 + 1:.3f}"})  # fmt: skip
    if r.status_code != 200:
        return [f"query answered {r.status_code}: {r.text[:300]}"]
    got = {tuple(sorted(x["metric"].items())): x["values"] for x in r.json()["data"]["result"]}
    bad = []
    for labels, ts, vals in series:
        key = tuple(sorted(labels.items()))
        if key not in got:
            bad.append(f"{labels} missing")
            continue
        want = [(a / 1000, v) for a, v in zip(ts, vals, strict=True)]
        have = [(float(t), float(v)) for t, v in got[key]]
        if have != want:
            diff = next((k for k in range(len(want)) if k >= len(have) or have[k] != want[k]), None)
            bad.append(f"{labels}: {len(have)} samples, first difference at sample {diff}")
    return bad


# ---------------------------------------------------------------------------- run


def snapshot(top: Path, inside: Path, ignore: set[Path]) -> set[str]:
    out = set()
    for dirpath, dirnames, filenames in os.walk(top):
        d = Path(dirpath)
        if d == inside:
            dirnames[:] = []
            continue
        for name in dirnames + filenames:
            p = d / name
            if p != inside and p not in ignore:
                out.add(str(p))
    return out


def rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class PeakRss(threading.Thread):
    """The largest resident size any process of ``up`` reached, sampled every 0.5 s."""

    def __init__(self, up: UpProcess) -> None:
        super().__init__(daemon=True)
        self.up, self.peak, self.stop = up, 0.0, threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.5):
            self.peak = max([self.peak, *(rss_mb(p) for p in self.up.pids("filodb"))])


def emit(metric: str, value: object, unit: str = "", **ctx: object) -> None:
    print(json.dumps({"metric": metric, "value": value, "unit": unit, **ctx}, ensure_ascii=False),
          flush=True)  # fmt: skip


def fuzz(
    base: str, n: int, seed: int, concurrency: int, now_s: float, start: int = 0
) -> list[Outcome]:
    rules = url_rules()
    host = urlsplit(base).netloc

    def one(i: int) -> Outcome:
        req = Gen(random.Random(f"{seed}:{i}"), rules, now_s).request(i, host)
        out = send(base, req)
        if out.status is not None and out.status < 500 and not out.hang and out.seconds < 5:
            out.req, out.body = Req(i, req.method, req.path[:200]), b""  # keep memory flat
        return out

    with ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(one, range(start, start + n)))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--url", help="fuzz this running server instead of starting filodb up")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--quick", action="store_true", help="300 requests")
    ap.add_argument("--only", type=int, help="send request I of the seed alone and print it")
    ap.add_argument("--examples", type=int, default=5)
    args = ap.parse_args()
    n = 300 if args.quick else args.requests

    top = Path(tempfile.mkdtemp(prefix="filodb-fuzz-"))
    parent = top / "a" / "b"
    data_dir = parent / "data"
    up = None
    old_cwd = os.getcwd()
    try:
        if args.url:
            base = args.url.rstrip("/")
        else:
            parent.mkdir(parents=True)
            os.chdir(parent)  # the server's cwd: a relative path it writes lands under top
            up = UpProcess(data_dir, shards=4, env={"FILODB_ADMIN_TOKEN": secrets.token_hex(16)})
            up.start(120)
            base = up.url
        now_s = time.time()
        if args.only is not None:
            req = Gen(random.Random(f"{args.seed}:{args.only}"), url_rules(), now_s).request(
                args.only, urlsplit(base).netloc
            )
            out = send(base, req)
            print(json.dumps({**req.describe(), "status": out.status, "seconds": round(out.seconds, 3),
                              "answer": out.body[:2000].decode("utf-8", "replace"), "error": out.error},
                             ensure_ascii=False, indent=1))  # fmt: skip
            return 0
        series = known_series(int(now_s * 1000))
        write_known(base, series)
        wait_for(lambda: not known_mismatches(base, series), 60, "known samples queryable",
                 up.log_tail if up else None)  # fmt: skip
        before = snapshot(top, data_dir, {up.log_path} if up else set()) if up else set()
        pids_before = set(up.pids("filodb")) if up else set()

        peak = PeakRss(up) if up else None
        if peak:
            peak.start()
        t0 = time.monotonic()
        outcomes = fuzz(base, n, args.seed, args.concurrency, now_s)
        took = time.monotonic() - t0
        if peak:
            peak.stop.set()

        asked = [o for o in outcomes if asked_timeout(o)]
        fives = [
            o for o in outcomes if o.status is not None and o.status >= 500 and not asked_timeout(o)
        ]
        hangs = [o for o in outcomes if o.hang]
        dropped = [o for o in outcomes if o.status is None and not o.hang and o.req.raw is None]
        statuses: dict[str, int] = {}
        for o in outcomes:
            k = str(o.status) if o.status is not None else "none"
            statuses[k] = statuses.get(k, 0) + 1
        slowest = max(outcomes, key=lambda o: o.seconds) if outcomes else None

        def example(o: Outcome) -> dict:
            return {**o.req.describe(), "status": o.status, "seconds": round(o.seconds, 2),
                    "answer": o.body[:300].decode("utf-8", "replace"), "error": o.error}  # fmt: skip

        try:
            health = requests.get(base + "/admin/health", timeout=TIMEOUT_S)
            healthy = int(health.status_code == 200)
        except requests.RequestException:
            healthy = 0
        bad = known_mismatches(base, series)
        restarted = len(pids_before - set(up.pids("filodb"))) if up else None
        outside = sorted(snapshot(top, data_dir, {up.log_path}) - before) if up else None

        emit("fuzz_requests", len(outcomes), "requests", seconds=round(took, 1),
             rate=round(len(outcomes) / took, 1) if took else None, seed=args.seed,
             concurrency=args.concurrency, statuses=dict(sorted(statuses.items())),
             slowest_s=round(slowest.seconds, 2) if slowest else None,
             slowest=example(slowest) if slowest and slowest.seconds > 5 else None)  # fmt: skip
        emit(
            "fuzz_5xx",
            len(fives),
            "responses",
            examples=[example(o) for o in fives[: args.examples]],
        )
        emit(
            "fuzz_timeouts_asked",
            len(asked),
            "responses",
            note="503 timeout to a request whose own timeout parameter expired (as Prometheus)",
        )
        emit(
            "fuzz_hangs",
            len(hangs),
            "requests",
            examples=[example(o) for o in hangs[: args.examples]],
        )
        emit("fuzz_dropped", len(dropped), "requests", examples=[example(o) for o in dropped[: args.examples]],
             note="a well-formed request whose connection closed without a status")  # fmt: skip
        emit("fuzz_peak_rss_mb", round(peak.peak) if peak else None, "MB",
             note="the largest resident size of one process of filodb up during the run")  # fmt: skip
        emit("fuzz_healthy_after", healthy, "bool")
        emit("fuzz_processes_restarted", restarted, "processes",
             note="web, worker or gateway processes of filodb up that died during the run")  # fmt: skip
        emit("fuzz_samples_intact", int(not bad), "bool", problems=bad[:5])
        emit("fuzz_files_outside_data_dir", None if outside is None else len(outside), "files",
             examples=(outside or [])[:10])  # fmt: skip
        ok = not fives and not hangs and not dropped and healthy and not bad and not outside
        ok = ok and not restarted
        return 0 if ok else 1
    finally:
        os.chdir(old_cwd)
        if up is not None:
            up.stop()
        if not args.url:
            import shutil

            shutil.rmtree(top, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
