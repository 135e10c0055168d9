"""The Flask web tier: Prometheus API, ingestion routes, admin API and UI."""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Flask

from filodb.config import Config
from filodb.web.errors import register_error_handlers
from filodb.web.services import Services


def create_app(cfg: Config, services: Services | None = None, metrics_dir: str | None = None,
               shared_dir: Path | None = None) -> Flask:  # fmt: skip
    """App factory: builds services from ``cfg`` unless given, registers the blueprints.

    The ``cfg.web_processes`` web processes of one ``filodb up`` count into ``metrics_dir``
    (prometheus_client's ``PROMETHEUS_MULTIPROC_DIR``; ``/metrics`` sums them, see
    :mod:`filodb.web.metrics`) and share ``shared_dir`` (query slots, which have started:
    :mod:`filodb.web.processes`).

    A bad auth file (``cfg.auth_file``) raises :class:`~filodb.errors.BadInputError`."""
    from filodb.web import auth, ingest, ingest_wsgi, metrics, processes, query_limits

    app = Flask(__name__, static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = cfg.max_body_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]
    svc = services or Services.from_config(cfg)
    svc.init_app(app)
    ingest.init_app(app, svc, metrics.init_app(app, metrics_dir))  # the doors count into them
    query_limits.init_app(app, processes.slots_dir(shared_dir) if shared_dir else None)
    if shared_dir is not None:
        processes.init_app(app, shared_dir, cfg.web_processes)
    register_error_handlers(app)
    for bp in blueprints():
        app.register_blueprint(bp)
    auth.init_app(app, cfg)  # after the blueprints: it checks every route has a rule
    ingest_wsgi.wrap(app, cfg)  # the ingestion routes' lean path, in front of Flask
    return app


def blueprints() -> list[Blueprint]:
    """Every blueprint of the web tier, in registration order (``metadata`` before
    ``prom_api``: its ``/metadata`` route wins); the fuzzer reads the routes from here too."""
    from filodb.web import (
        admin,
        delete,
        export,
        federate,
        ingest,
        metadata,
        metrics,
        prom_api,
        prom_status,
        remote_read,
        ui,
    )

    mods = (metadata, prom_api, prom_status, federate, export, remote_read, ingest, admin, ui,
            metrics, delete)  # fmt: skip
    return [m.bp for m in mods]
