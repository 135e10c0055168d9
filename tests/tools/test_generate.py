"""The test producer's data: exporter shapes, exact counts, time-major batches, both wire formats."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from filodb.cli import main
from filodb.gateway.influx import parse_lines
from filodb.model.batch import concat_batches
from filodb.prom.remote_write import decode_write_request_full
from filodb.tools.generate import LE, PER_INSTANCE, Workload, blocks, influx_body
from filodb.tools.rwdump import read_frames


def _by_name(w: Workload, vals: np.ndarray, name: str) -> tuple[list[dict], np.ndarray]:
    rows = [i for i, lb in enumerate(w.series) if dict(lb)["__name__"] == name]
    return [dict(w.series[i]) for i in rows], vals[rows]


def test_histograms_are_cumulative_in_le_and_time_and_inf_equals_count() -> None:
    w = Workload(3 * PER_INSTANCE)
    vals = np.concatenate([w.next_values(7), w.next_values(5)], axis=1)  # carried across blocks
    labels, buckets = _by_name(w, vals, "http_request_duration_seconds_bucket")
    assert [lb["le"] for lb in labels[: len(LE)]] == LE
    b = buckets.reshape(3, len(LE), -1)
    assert (np.diff(b, axis=1) >= 0).all() and (np.diff(b, axis=2) >= 0).all()
    _, count = _by_name(w, vals, "http_request_duration_seconds_count")
    _, total = _by_name(w, vals, "http_request_duration_seconds_sum")
    assert np.array_equal(b[:, -1, :], count) and (np.diff(total, axis=1) >= 0).all()


def test_counters_monotone_and_cpu_modes_add_up_to_the_interval() -> None:
    w = Workload(2 * PER_INSTANCE, interval_s=15.0)
    vals = np.concatenate([w.next_values(4), w.next_values(4)], axis=1)
    for name in ("node_network_receive_bytes_total", "node_cpu_seconds_total"):
        _, v = _by_name(w, vals, name)
        assert (np.diff(v, axis=1) >= 0).all()
    labels, cpu = _by_name(w, vals, "node_cpu_seconds_total")
    assert {lb["mode"] for lb in labels} == {"idle", "user", "system", "iowait"}
    per_cpu = cpu.reshape(2 * 4, 4, -1).sum(axis=1)  # (instance*cpu, time): modes summed
    assert np.allclose(np.diff(per_cpu, axis=1), 15.0, atol=0.05)


@pytest.mark.parametrize(
    ("n_series", "n_samples", "batch"), [(1, 1, 1), (70, 9, 100), (100, 10, 30), (33, 4, 10_000)]
)
def test_blocks_cover_every_sample_once_time_major(
    n_series: int, n_samples: int, batch: int
) -> None:
    w = Workload(n_series)
    got = list(blocks(w, 1000, 15_000, n_samples, batch))
    assert all(len(b) <= batch for b in got)
    first_ts = [int(b.ts.min()) for b in got]
    assert first_ts == sorted(first_ts)  # time-major: later batches never go back in time
    allb = concat_batches(got)
    assert len(allb.series) == n_series == len(set(w.series))
    pairs = {(allb.series[s], t) for s, t in zip(allb.sidx.tolist(), allb.ts.tolist(), strict=True)}
    assert len(pairs) == len(allb) == n_series * n_samples
    assert set(allb.ts.tolist()) == {1000 + 15_000 * k for k in range(n_samples)}


def test_influx_lines_parse_back_to_the_same_samples() -> None:
    b = next(blocks(Workload(40), 1_700_000_000_000, 15_000, 3, 1000))
    parsed = parse_lines(influx_body(b), precision="ms")
    assert parsed.errors == []
    want = {
        (b.series[s], t, v)
        for s, t, v in zip(b.sidx.tolist(), b.ts.tolist(), b.vals.tolist(), strict=True)
    }
    p = parsed.batch
    assert {
        (p.series[s], t, v)
        for s, t, v in zip(p.sidx.tolist(), p.ts.tolist(), p.vals.tolist(), strict=True)
    } == want


def test_gen_out_writes_a_dump_with_metadata(tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "g.rw"
    r = CliRunner().invoke(
        main,
        [
            "gen",
            "--series",
            "50",
            "--samples",
            "20",
            "--batch",
            "300",
            "--start",
            "1700000000",
            "--out",
            str(out),
        ],
    )
    assert r.exit_code == 0, r.output
    with open(out, "rb") as f:
        decoded = [decode_write_request_full(body) for _, body in read_frames(f)]
    allb = concat_batches([d[0] for d in decoded])
    assert len(allb.series) == 50 and len(allb) == 1000
    assert (
        int(allb.ts.min()) == 1_700_000_000_000
        and int(allb.ts.max()) == 1_700_000_000_000 + 19 * 15_000
    )
    assert {m["metric"]: m["type"] for m in decoded[0][1]}["node_cpu_seconds_total"] == "counter"
    assert all(not d[1] for d in decoded[1:])  # metadata once
    assert "histogram_quantile" in r.output and "1,000 samples" in r.output


@pytest.mark.parametrize(
    "args",
    [["--series", "0"], ["--interval", "soon"], ["--format", "csv"], ["--start", "yesterday-ish"]],
)
def test_bad_options_exit_2(args: list[str]) -> None:
    assert CliRunner().invoke(main, ["gen", *args]).exit_code == 2


def test_unreachable_server_exits_1() -> None:
    r = CliRunner().invoke(
        main, ["gen", "--series", "5", "--samples", "2", "--url", "http://127.0.0.1:9"]
    )
    assert r.exit_code == 1
