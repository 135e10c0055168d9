"""``bench/fuzz_http.py`` against its own ``filodb up``: 2000 generated requests (every route,
method, hostile parameters, headers and bodies) get no 5xx and no hang, the node stays
healthy, the samples written before still answer with their values, and nothing is created
beside the data directory."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "fuzz_http.py"


def test_2000_fuzzed_requests_no_5xx_no_hang_nothing_lost() -> None:
    proc = subprocess.run([sys.executable, str(SCRIPT), "--requests", "2000", "--seed", "7",
                           "--concurrency", "6"], capture_output=True, text=True, timeout=300)  # fmt: skip
    lines = [json.loads(x) for x in proc.stdout.splitlines() if x.startswith("{")]
    got = {d["metric"]: d for d in lines}
    assert "fuzz_requests" in got, proc.stdout[-3000:] + proc.stderr[-3000:]

    def show(metric: str) -> str:
        return json.dumps(got[metric], ensure_ascii=False)[:4000]

    assert got["fuzz_requests"]["value"] == 2000
    # the generator reaches the routes that parse hostile input
    statuses = got["fuzz_requests"]["statuses"]
    assert statuses.get("200", 0) > 100 and statuses.get("400", 0) > 100, statuses
    assert got["fuzz_5xx"]["value"] == 0, show("fuzz_5xx")
    assert got["fuzz_hangs"]["value"] == 0, show("fuzz_hangs")
    assert got["fuzz_dropped"]["value"] == 0, show("fuzz_dropped")
    assert got["fuzz_healthy_after"]["value"] == 1
    assert got["fuzz_processes_restarted"]["value"] == 0  # nothing killed and restarted
    assert got["fuzz_peak_rss_mb"]["value"] < 2000  # an absurd query allocated 20 GB once
    assert got["fuzz_samples_intact"]["value"] == 1, show("fuzz_samples_intact")
    assert got["fuzz_files_outside_data_dir"]["value"] == 0, show("fuzz_files_outside_data_dir")
    assert proc.returncode == 0, proc.stderr[-3000:]
