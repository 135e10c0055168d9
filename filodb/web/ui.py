"""The UI: static pages served from the package (no build step)."""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, send_from_directory

STATIC = Path(__file__).parent / "static"

bp = Blueprint("ui", __name__)


@bp.get("/")
def index() -> Response:
    return send_from_directory(STATIC, "index.html")


@bp.get("/cluster")
def cluster_page() -> Response:
    return send_from_directory(STATIC, "cluster.html")


@bp.get("/datasets")
def datasets_page() -> Response:
    return send_from_directory(STATIC, "datasets.html")


@bp.get("/cardinality")
def cardinality_page() -> Response:
    return send_from_directory(STATIC, "cardinality.html")


@bp.get("/rules")
def rules_page() -> Response:
    return send_from_directory(STATIC, "rules.html")


@bp.get("/static/<path:name>")
def static_file(name: str) -> Response:
    return send_from_directory(STATIC, name)
