"""End-to-end fixtures: a real ``filodb up`` tree (Redis, worker, web) per module."""

from __future__ import annotations

import pytest

from filodb.testing.cluster import UpProcess


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> UpProcess:
    proc = UpProcess(tmp_path_factory.mktemp("e2e") / "data", shards=4).start()
    yield proc
    proc.stop()
