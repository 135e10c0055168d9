"""The web processes of one filodb up: the tier is starting until every one has served once;
a process restarted later does not make it start again."""

from __future__ import annotations

from pathlib import Path

from flask import Flask

from filodb.web import processes


def test_starting_until_every_web_process_served_once(tmp_path: Path) -> None:
    app = Flask("t")
    with app.app_context():
        assert processes.starting() is None  # a web process of its own never waits
    processes.init_app(app, tmp_path, 2)
    with app.app_context():
        assert processes.starting() == {"serving": 0, "of": 2}
        processes.mark_serving(tmp_path)  # this process
        assert processes.starting() == {"serving": 1, "of": 2}
        (tmp_path / "ready" / "999999").touch()  # the other one
        assert processes.starting() is None
        (tmp_path / "ready" / "999998").touch()  # a restart of one of them later
        assert processes.starting() is None
