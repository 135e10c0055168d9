"""The filodb command's own checks, before it talks to any server."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from filodb.cli import main
from filodb.redisproc import free_port


@pytest.mark.parametrize("name", ["ünï", "x" * 300, "../x", "-x"])
def test_dataset_create_refuses_a_bad_name_with_exit_2(name: str) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens: an HTTP attempt would exit 1
    r = CliRunner().invoke(main, ["dataset", "create", "--shards", "2", "--url", url, "--", name])
    assert r.exit_code == 2, r.output
    assert "invalid dataset name" in r.output
