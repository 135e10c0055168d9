"""Text exposition parsing (Prometheus text and OpenMetrics), format detection, dump framing,
block streaming. Unit level: no server."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest

from filodb.errors import BadInputError
from filodb.model.batch import SampleBatch
from filodb.model.labels import make_labels
from filodb.prom.remote_write import decode_write_request_full, encode_write_request
from filodb.prom.text import PromTextParser, samples_text, series_text
from filodb.tools.importer import _text_blocks, detect, detect_format
from filodb.tools.rwdump import looks_like_dump, read_frames, write_frame

NOW = 1_700_000_000_000


def _samples(text: str, openmetrics: bool = False) -> tuple[dict, list, PromTextParser]:
    p = PromTextParser(openmetrics, NOW)
    c = p.feed(text)
    b = c.batch
    got = {}
    for s, t, v in zip(b.sidx.tolist(), b.ts.tolist(), b.vals.tolist(), strict=True):
        got.setdefault(b.series[s], []).append((t, v))
    return got, c.errors, p


def test_prom_text_ms_timestamps_labels_and_missing_timestamp() -> None:
    got, errors, _ = _samples(
        "# HELP http_requests_total Total requests.\n"
        "# TYPE http_requests_total counter\n"
        'http_requests_total{method="post",code="200"} 1027 1395066363000\n'
        'http_requests_total{method="post",code="400"}    3 1395066363000\n'
        "metric_without_timestamp_and_labels 12.47\n"
        'up{job="a",} 1 -5\n'  # trailing comma, negative timestamp
    )
    assert errors == []
    assert got[
        make_labels({"__name__": "http_requests_total", "method": "post", "code": "200"})
    ] == [(1395066363000, 1027.0)]
    assert got[make_labels({"__name__": "metric_without_timestamp_and_labels"})] == [(NOW, 12.47)]
    assert got[make_labels({"__name__": "up", "job": "a"})] == [(-5, 1.0)]


def test_escapes_in_label_values_and_help() -> None:
    got, errors, p = _samples(
        "# HELP m A \\\\ backslash and a\\nnewline\n"
        'm{path="C:\\\\DIR\\\\FILE.TXT",error="Cannot find file:\\n\\"FILE.TXT\\""} 1 10\n'
        'm{q="a}b c",r="{"} 2 10\n'  # braces and spaces inside values
    )
    assert errors == []
    assert got[
        make_labels(
            {"__name__": "m", "path": "C:\\DIR\\FILE.TXT", "error": 'Cannot find file:\n"FILE.TXT"'}
        )
    ] == [(10, 1.0)]
    assert got[make_labels({"__name__": "m", "q": "a}b c", "r": "{"})] == [(10, 2.0)]
    assert p.metadata["m"]["help"] == "A \\ backslash and a\nnewline"


def test_special_values() -> None:
    got, errors, _ = _samples("a NaN 1\nb +Inf 1\nc -Inf 1\nd 1e-3 1\ne -0 1\nf Inf 1\n")
    assert errors == []
    vals = {dict(k)["__name__"]: v[0][1] for k, v in got.items()}
    assert math.isnan(vals["a"]) and vals["b"] == math.inf and vals["c"] == -math.inf
    assert vals["d"] == 0.001 and math.copysign(1, vals["e"]) < 0 and vals["f"] == math.inf


def test_openmetrics_seconds_with_fraction_and_eof() -> None:
    text = (
        "# TYPE foo counter\n# UNIT foo seconds\nfoo_total 17.0 1520879607.789\n"
        'foo_created 1520430000.123 1520879607\nbar{a="1"} 1 1520879607.7894 # {trace_id="x"} 1 1\n# EOF\n'
    )
    got, errors, p = _samples(text, openmetrics=True)
    assert errors == []
    assert got[make_labels({"__name__": "foo_total"})] == [(1520879607789, 17.0)]
    assert got[make_labels({"__name__": "foo_created"})] == [(1520879607000, 1520430000.123)]
    assert got[make_labels({"__name__": "bar", "a": "1"})] == [
        (1520879607789, 1.0)
    ]  # rounded to ms
    assert p.metadata["foo"] == {"type": "counter", "help": "", "unit": "seconds"}


def test_bad_lines_reported_with_line_numbers_good_ones_kept() -> None:
    text = (
        "\n".join(
            [
                "ok 1 1",  # 1
                'bad{a="x} 1 1',  # 2 unterminated value
                "bad2 notanumber 1",  # 3
                'bad3{a="x"}1 1',  # 4 no space
                "ok 2 2",  # 5
                "bad4 1 1.5",  # 6 fractional timestamp in Prometheus text
                "bad5 1_000 1",  # 7 digit separators
                "9bad 1 1",  # 8 name starts with a digit
                'bad6{a="1",a="2"} 1 1',  # 9 duplicate label
                "# TYPE x nonsense",  # 10 unknown type
                'bad7{a="\\q"} 1 1',  # 11 unknown escape
                "bad8 1 1 extra",  # 12
            ]
        )
        + "\n"
    )
    got, errors, _ = _samples(text)
    assert [n for n, _ in errors] == [2, 3, 4, 6, 7, 8, 9, 10, 11, 12]
    assert got == {make_labels({"__name__": "ok"}): [(1, 1.0), (2, 2.0)]}
    assert "unterminated" in dict(errors)[2] and "invalid value" in dict(errors)[3]


def test_content_after_eof_is_rejected_and_line_numbers_continue_across_blocks() -> None:
    p = PromTextParser(True, NOW)
    a = p.feed("a 1 1\n\n")
    b = p.feed("# EOF\nb 2 2\n")
    assert len(a.batch) == 1 and len(b.batch) == 0 and b.errors == [(4, "content after # EOF")]


def test_metadata_reported_once_per_block_where_first_seen() -> None:
    p = PromTextParser(False, NOW)
    c = p.feed("# TYPE a gauge\n# HELP a Help.\na 1 1\n")
    assert c.metadata == [{"metric": "a", "type": "gauge", "help": "Help.", "unit": ""}]
    assert c.batch.types == {"a": "gauge"}
    assert p.feed("a 2 2\n").metadata == []


@pytest.mark.parametrize(
    ("head", "tail", "want"),
    [
        (b"# HELP a x\na 1\n", b"a 1\n", "prom"),
        (b'a{b="c"} 1 1000\n', b'a{b="c"} 1 1000\n', "prom"),
        (b"a 1 1.5\n", b"a 1 1.5\n# EOF\n", "openmetrics"),
        (b"cpu,host=a usage=1 10\n", b"cpu,host=a usage=1 10\n", "influx"),
        (b"# comment\ncpu value=1\n", b"cpu value=1\n", "influx"),
    ],
)
def test_detect(head: bytes, tail: bytes, want: str) -> None:
    assert detect(head, tail) == want


def test_dump_framing_roundtrip_and_detection(tmp_path) -> None:  # type: ignore[no-untyped-def]
    series = [make_labels({"__name__": "m", "i": str(i)}) for i in range(3)]
    bodies = []
    for k in range(3):
        b = SampleBatch(series, np.arange(3), np.full(3, 1000 * (k + 1)), np.arange(3.0) + k)
        bodies.append(
            encode_write_request(b, [{"metric": "m", "type": "gauge", "help": "h", "unit": ""}])
        )
    path = tmp_path / "d.rw"
    with open(path, "wb") as f:
        for body in bodies:
            write_frame(f, body)
    assert detect_format(str(path)) == "remote-write"
    with open(path, "rb") as f:
        got = list(read_frames(f))
    assert [n for n, _ in got] == [1, 2, 3] and [b for _, b in got] == bodies
    assert decode_write_request_full(got[0][1])[1][0]["type"] == "gauge"
    assert not looks_like_dump(b"# HELP x y\n") and not looks_like_dump(b"up 1 1000\n")
    data = path.read_bytes()
    with pytest.raises(BadInputError, match="frame 3: truncated body"):
        list(read_frames(io.BytesIO(data[:-3])))


def test_text_blocks_split_only_at_newlines() -> None:
    data = b"".join(f'm{{i="{i}"}} {i} {i}\n'.encode() for i in range(1000)) + b"last 1 1"
    blocks = list(_text_blocks(io.BytesIO(data), 100))
    assert b"".join(blocks) == data
    assert all(b.endswith(b"\n") for b in blocks[:-1]) and blocks[-1].endswith(b"last 1 1")
    p = PromTextParser(False, NOW)
    n = sum(len(p.feed(b.decode()).batch) for b in blocks)
    assert n == 1001 and p.lineno == 1001


def test_writer_output_parses_back_bit_for_bit() -> None:
    labels = make_labels({"__name__": "w", "p": 'a"b\\c\nd'})
    ts = np.array([-1500, 0, 1, 1_700_000_000_123], np.int64)
    vals = np.array([np.nan, np.inf, -0.0, 0.1 + 0.2])
    text = samples_text(labels, ts, vals) + "# EOF\n"
    assert series_text(labels) == 'w{p="a\\"b\\\\c\\nd"}'
    got, errors, _ = _samples(text, openmetrics=True)
    assert errors == []
    t, v = zip(*got[labels], strict=True)
    assert list(t) == ts.tolist()
    assert np.array_equal(np.array(v)[1:].view(np.uint64), vals[1:].view(np.uint64)) and math.isnan(
        v[0]
    )


def test_openmetrics_exemplars_are_kept_for_remote_write() -> None:
    """An exemplar after a sample becomes one of the batch's exemplars (its own timestamp, else
    the sample's) and survives the remote-write body the importer sends; a malformed one makes
    its line an error, as Prometheus's parser refuses it."""
    from filodb.prom.remote_write import decode_write_request, encode_write_request
    from filodb.prom.text import PromTextParser

    text = ('# TYPE bar histogram\nbar_bucket{le="1"} 3 10 # {trace_id="x"} 0.5 9.5\n'
            'bar_bucket{le="+Inf"} 4 10 # {trace_id="y",span_id="s"} 7\n'
            'bar_count 4 10 # trace_id="z" 1\n# EOF\n')  # fmt: skip
    chunk = PromTextParser(True, 0).feed(text)
    assert chunk.errors == [(4, "an exemplar starts with its label set: # {...} value")]
    sent = decode_write_request(encode_write_request(chunk.batch, chunk.metadata))
    ex = sent.exemplars
    assert ex is not None
    got = [(sent.series[s], t, v, lb) for s, t, v, lb in
           zip(ex.sidx.tolist(), ex.ts.tolist(), ex.vals.tolist(), ex.labels, strict=True)]  # fmt: skip
    assert got == [
        (make_labels({"__name__": "bar_bucket", "le": "1"}), 9500, 0.5, (("trace_id", "x"),)),
        (make_labels({"__name__": "bar_bucket", "le": "+Inf"}), 10_000, 7.0,
         (("span_id", "s"), ("trace_id", "y"))),
    ]  # fmt: skip
