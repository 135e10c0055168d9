"""The UI: pages served from the package (no build step). Each page's ``<main>`` is a file in
``pages/``; the document around it (head, the top bar with the active tab, scripts) is built
here once per page, so the pages share one header."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import NamedTuple

from flask import Blueprint, Response, send_from_directory

STATIC = Path(__file__).parent / "static"
PAGES = Path(__file__).parent / "pages"

bp = Blueprint("ui", __name__)


class Page(NamedTuple):
    route: str
    title: str
    script: str
    header_extra: str = ""  # after the nav, e.g. a live indicator


NAV = (
    ("index", Page("/", "Query", "app.js", '<span id="version" class="version"></span>')),
    ("cluster", Page("/cluster", "Cluster", "cluster.js",
                     '<span id="live" class="live" title="polling every 2 s">polling</span>')),
    ("datasets", Page("/datasets", "Datasets", "datasets.js")),
    ("cardinality", Page("/cardinality", "Cardinality", "cardinality.js")),
    ("rules", Page("/rules", "Rules", "rules.js")),
)  # fmt: skip


@cache
def render(name: str) -> str:
    """The whole document of page ``name`` (a key of :data:`NAV`)."""
    page = dict(NAV)[name]
    active = ' class="active"'
    links = "".join(
        f'<a href="{p.route}"{active if n == name else ""}>{p.title}</a>' for n, p in NAV
    )
    extra = f"\n  {page.header_extra}" if page.header_extra else ""
    main = (PAGES / f"{name}.html").read_text(encoding="utf-8")
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>FiloDB · {page.title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/static/style.css">
</head>
<body>
<header class="topbar">
  <a class="brand" href="/"><span class="logo" aria-hidden="true"></span>FiloDB</a>
  <nav>{links}</nav>{extra}
</header>
{main}<script src="/static/auth.js"></script>
<script src="/static/{page.script}"></script>
</body>
</html>
"""


def _route(name: str, route: str) -> None:
    def view() -> Response:
        return Response(render(name), mimetype="text/html")

    bp.add_url_rule(
        route,
        endpoint="index" if name == "index" else f"{name}_page",
        view_func=view,
        methods=["GET"],
    )


for _name, _page in NAV:
    _route(_name, _page.route)


@bp.get("/static/<path:name>")
def static_file(name: str) -> Response:
    return send_from_directory(STATIC, name)
