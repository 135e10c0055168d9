"""The ingestion routes' lean WSGI path answers as Flask's routes do, against a real Redis:
the same paths matched (every other request goes to Flask), and for bad input, refused
tokens, oversized, chunked and gzip bodies the same status, headers and JSON as the Flask
views behind it; counted in the request metrics under the Flask rule's name."""

from __future__ import annotations

import gzip
import io
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import numpy as np
import pytest
from flask import Flask
from werkzeug.test import Client

from filodb.config import Config
from filodb.model.batch import SampleBatch
from filodb.model.labels import make_labels
from filodb.prom.remote_write import encode_write_request
from filodb.web import create_app
from filodb.web.ingest_wsgi import ROUTES, LeanIngest, match

AUTH = """
[[tokens]]
name = "writer"
token = "w-tok"
datasets = ["prometheus"]
scopes = ["write"]
"""


@pytest.fixture
def app(redis_url: str, tmp_path: Path) -> Flask:
    auth_file = tmp_path / "auth.toml"
    auth_file.write_text(AUTH)
    cfg = Config(redis_url=redis_url, auth_file=str(auth_file), max_body_bytes=64 << 10)
    app = create_app(cfg)
    app.extensions["filodb"].shard_map.create_dataset("prometheus", 4, 1)
    return app


def _rw(n: int = 3) -> bytes:
    series = [make_labels({"__name__": "m", "i": str(i)}) for i in range(n)]
    return encode_write_request(SampleBatch(series, np.arange(n), np.arange(n), np.ones(n)))


PATHS = [
    "/api/v1/write", "/promql/prometheus/api/v1/write", "/promql/a%20b/api/v1/write",
    "/influx/prometheus/write", "/influx/d%C3%A9/write", "/write", "/api/v2/write",
    "/api/v1/write/", "//api/v1/write", "/api//v1/write", "/promql//api/v1/write",
    "/promql/a/b/api/v1/write", "/influx//write", "/influx/a/b/write", "/influx/x/write/",
    "/writes", "/api/v1/query", "/", "/influx/prometheus",
]  # fmt: skip


@pytest.mark.parametrize("path", PATHS)
def test_the_lean_path_takes_only_paths_flask_routes_to_the_same_endpoint(
    app: Flask, path: str
) -> None:
    """A path the lean path takes goes to the same endpoint and dataset under Flask; the
    others (``//``, trailing slashes, ...) go to Flask, which answers them as before."""
    decoded = unquote(path)
    hit = match(decoded)
    if path in PATHS[:7]:
        assert hit is not None
    if hit is None:
        return
    rule, args = app.url_map.bind("localhost").match(decoded, "POST", return_rule=True)
    assert rule.rule == hit[0] and ROUTES[hit[0]] == rule.endpoint
    assert hit[1] == args.get("dataset")


def _call(wsgi: Any, app: Flask, method: str, path: str, **kw: Any) -> tuple[int, dict, bytes]:
    resp = Client(wsgi).open(path, method=method, **kw)
    headers = {k: v for k, v in resp.headers.items() if k != "Content-Length"}
    data = resp.get_data()
    if data:
        assert int(resp.headers["Content-Length"]) == len(data)
    return resp.status_code, headers, data


W = {"Authorization": "Bearer w-tok"}
BAD = [  # (path, body, headers): refused before anything is written
    ("/api/v1/write", _rw(), {}),
    ("/api/v1/write", _rw(), {"Authorization": "Bearer nope"}),
    ("/promql/other/api/v1/write", _rw(), W),
    ("/write?db=other", b"m v=1\n", W),
    ("/api/v2/write?bucket=other", b"m v=1\n", W),
    ("/influx/other/write", b"m v=1\n", {"Authorization": "Token w-tok"}),
    ("/api/v1/write", b"not snappy", W),
    ("/api/v1/write", b"x" * (70 << 10), W),
    ("/write?precision=fortnight", b"m v=1\n", W),
    ("/write", gzip.compress(b"m v=1\n" * 20000), {**W, "Content-Encoding": "gzip"}),
    ("/write", b"m v=1\n", {**W, "Content-Encoding": "br"}),
]


@pytest.mark.parametrize("path,body,headers", BAD)
def test_bad_requests_answer_as_the_flask_views_do(
    app: Flask, path: str, body: bytes, headers: dict[str, str]
) -> None:
    lean = app.wsgi_app
    assert isinstance(lean, LeanIngest)
    got = _call(lean, app, "POST", path, data=body, headers=headers)
    want = _call(lean.flask_wsgi, app, "POST", path, data=body, headers=headers)
    assert got == want
    assert 400 <= got[0] < 500
    assert b'"status":"error"' in got[2]


def test_writes_answer_204_as_flask_and_land_once(app: Flask) -> None:
    lean = app.wsgi_app
    assert isinstance(lean, LeanIngest)
    svc = app.extensions["filodb"]
    for path, body, extra in [
        ("/api/v1/write", _rw(5), {}),
        ("/promql/prometheus/api/v1/write", _rw(5), {}),
        ("/influx/prometheus/write?precision=s", b"cpu,h=a v=1 1700000000\n", {}),
        ("/write", gzip.compress(b"cpu,h=b v=2\n"), {"Content-Encoding": "gzip"}),
        ("/api/v2/write?bucket=prometheus", b"cpu,h=c v=3\n", {}),
    ]:
        ends = svc.ingest_log.end_offsets("prometheus", list(range(4)))
        got = _call(lean, app, "POST", path, data=body, headers={**W, **extra})
        mid = svc.ingest_log.end_offsets("prometheus", list(range(4)))
        want = _call(lean.flask_wsgi, app, "POST", path, data=body, headers={**W, **extra})
        after = svc.ingest_log.end_offsets("prometheus", list(range(4)))
        assert got == want and got[0] == 204, (path, got)
        # each answer came after its own append, one append each (not twice, not none)
        assert sum(mid.values()) > sum(ends.values())
        assert sum(after.values()) - sum(mid.values()) == sum(mid.values()) - sum(ends.values())


def test_a_chunked_body_over_the_limit_is_refused_whole(app: Flask) -> None:
    """Waitress dechunks a body and marks it ``wsgi.input_terminated``; werkzeug would cut it
    at the limit silently (and the Influx door write the lines before the cut)."""
    lean = app.wsgi_app
    assert isinstance(lean, LeanIngest)
    log = app.extensions["filodb"].ingest_log
    lines = b"".join(b"cpu,h=h%d v=1\n" % i for i in range(8000))  # 100 KB > 64 KB
    assert len(lines) > 64 << 10
    for path, body, code in (("/api/v1/write", _rw(4), 204), ("/api/v1/write", lines, 413),
                             ("/write", lines, 413), ("/write", lines[: lines.index(b"\n", 30000) + 1], 204)):  # fmt: skip
        for wsgi in (lean, lean.flask_wsgi):
            before = sum(log.end_offsets("prometheus", list(range(4))).values())
            got = _call(wsgi, app, "POST", path, input_stream=io.BytesIO(body),
                        headers={**W, "Transfer-Encoding": "chunked"},
                        environ_overrides={"wsgi.input_terminated": True})  # fmt: skip
            assert got[0] == code, (path, got)
            written = sum(log.end_offsets("prometheus", list(range(4))).values()) - before
            assert (written > 0) == (code == 204)


def test_lean_answers_are_counted_under_the_flask_rule(app: Flask) -> None:
    c = app.test_client()
    assert c.post("/promql/prometheus/api/v1/write", data=_rw(), headers=W).status_code == 204
    assert c.post("/api/v1/write", data=b"junk", headers=W).status_code == 400
    assert c.post("/api/v1/write", data=_rw()).status_code == 401
    text = c.get("/metrics").get_data(as_text=True)
    for rule, code in (("/promql/<dataset>/api/v1/write", 204), ("/api/v1/write", 400),
                       ("/api/v1/write", 401)):  # fmt: skip
        line = f'filodb_http_requests_total{{code="{code}",method="POST",route="{rule}"}} 1.0'
        assert line in text, (line, [x for x in text.splitlines() if "http_requests" in x])
    assert "filodb_ingest_rejected_requests_total" in text


def test_a_sized_body_of_a_terminated_stream_is_read_whole_or_refused(app: Flask) -> None:
    """With a Content-Length and a stream the server ended there (waitress), the body is read
    in one call: every line written; over the limit 413 and a stream shorter than its
    Content-Length 400, nothing written either way; through both paths alike."""
    lean = app.wsgi_app
    assert isinstance(lean, LeanIngest)
    log = app.extensions["filodb"].ingest_log
    lines = b"".join(b"cpu,h=h%d v=%d\n" % (i, i) for i in range(3000))  # 50 KB < 64 KB
    big = lines + lines  # 100 KB > 64 KB
    for body, size, code, n in ((lines, len(lines), 204, 3000), (big, len(big), 413, 0),
                                (lines, len(lines) + 10, 400, 0)):  # fmt: skip
        for wsgi in (lean, lean.flask_wsgi):
            at = log.end_offsets("prometheus", list(range(4)))
            got = _call(wsgi, app, "POST", "/write", input_stream=io.BytesIO(body),
                        headers=W, environ_overrides={"wsgi.input_terminated": True,
                                                      "CONTENT_LENGTH": str(size)})  # fmt: skip
            assert got[0] == code, got
            new = log.read_many({("prometheus", s): p for s, p in at.items()}, 10_000, 0)
            recs = [SampleBatch.from_bytes(r) for v in new.values() for _, r in v]
            assert sum(len(b) for b in recs) == n
