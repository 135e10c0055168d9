"""The raw dataset every downsampling test starts from (real SQLite, in tmp_path)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from filodb.store import open_store
from filodb.testing.downsample import Raw, raw_series, write_raw


@pytest.fixture
def raw(tmp_path: Path) -> Iterator[Raw]:
    series = raw_series()
    stores = open_store("sqlite", tmp_path)
    write_raw(stores, series)
    yield Raw(tmp_path, stores, series)
    stores.close()
