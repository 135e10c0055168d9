"""End-to-end fixtures: a real ``filodb up`` tree (Redis, worker, web) per module."""

from __future__ import annotations

import pytest

from filodb.testing.cluster import UpProcess


@pytest.fixture(scope="module")
def up(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> UpProcess:
    """One tree per module; a module's ``UP_ENV`` dict (``FILODB_*`` settings) configures it."""
    env = getattr(request.module, "UP_ENV", None)
    proc = UpProcess(tmp_path_factory.mktemp("e2e") / "data", shards=4, env=env).start()
    yield proc
    proc.stop()
