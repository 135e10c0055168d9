"""Who may call which route: one hook before every request, one table of routes.

With an auth file (:mod:`filodb.auth`) every route but the open ones needs a token, sent as
``Authorization: Bearer <token>`` (or ``Token <token>``) or as the password of HTTP basic
auth. No credentials or an unknown token: 401 with ``WWW-Authenticate``; a token without the
route's scope on the route's dataset: 403; both in Prometheus's JSON error shape.

Without an auth file only the ``admin`` routes are guarded, by the config's ``admin_token``
when one is set (the behaviour before auth files). With both, ``admin_token`` is one more
token, with the ``admin`` scope on every dataset.

:data:`RULES` names the scope of every endpoint; an endpoint missing from it is refused at
start (:func:`init_app`), so a new route cannot be open by mistake. Cluster-wide listings
(:data:`LISTING`) need any valid token and show only the datasets it may read
(:func:`readable`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from flask import Flask, current_app, g, request

from filodb.auth import (
    AuthPolicy,
    Grant,
    admin_grant,
    credentials,
    load_auth_file,
    with_admin_token,
)
from filodb.config import Config
from filodb.errors import AuthError, ForbiddenError

EXTENSION = "filodb_auth"


@dataclass(frozen=True)
class Rule:
    """A route needs ``scope`` on a dataset: the route's ``<dataset>``, else the query
    parameter ``dataset_arg`` (Influx's ``db``, ``bucket``), else the default dataset.
    ``scope`` ``None``: any valid token (the view filters its answer by :func:`readable`)."""

    scope: str | None
    dataset_arg: str = ""


OPEN = Rule("open")  # no token needed: health, self-metrics, the UI's static shell
LISTING = Rule(None)
_READ, _WRITE, _ADMIN = Rule("read"), Rule("write"), Rule("admin")
_PROM = ("query", "query_range", "series", "labels", "label_values")
_STATUS = (
    "format_query", "parse_query", "query_exemplars", "rules", "alerts", "targets",
    "targets_metadata", "alertmanagers", "status_config", "status_flags", "status_runtimeinfo",
    "status_tsdb",
)  # fmt: skip

RULES: dict[str, Rule] = {
    **{f"prom_api.{e}{s}": _READ for e in _PROM for s in ("", "_ds")},
    "prom_api.buildinfo": LISTING,
    "prom_api.buildinfo_ds": LISTING,
    "metadata.metadata": _READ,
    "export.export": _READ,
    "remote_read.remote_read": _READ,
    "ingest.remote_write": _WRITE,
    "ingest.influx_write": _WRITE,
    "ingest.influx_v1_write": Rule("write", "db"),
    "ingest.influx_v2_write": Rule("write", "bucket"),
    "admin.health": OPEN,
    "admin.nodes": LISTING,
    "admin.cluster": LISTING,
    "admin.events": LISTING,
    "admin.create_dataset": _ADMIN,
    "tsdb_admin.delete_series": _ADMIN,
    "tsdb_admin.delete_series_ds": _ADMIN,
    "admin.stop_shards": _ADMIN,
    "admin.start_shards": _ADMIN,
    "admin.describe_dataset": _READ,
    "admin.status_by_address": _READ,
    "admin.cluster_status": _READ,
    "ui.index": OPEN,
    "ui.cluster_page": OPEN,
    "ui.datasets_page": OPEN,
    "ui.cardinality_page": OPEN,
    "ui.static_file": OPEN,
    "metrics.metrics": OPEN,
    # Prometheus's status, rules and tooling routes (web/prom_status.py, web/federate.py)
    **{f"prom_status.{e}{s}": _READ for e in _STATUS for s in ("", "_ds")},
    "prom_status.healthy": OPEN,  # Kubernetes probes send no token
    "prom_status.ready": OPEN,
    "prom_status.reload": _ADMIN,  # POST /-/reload: the rule evaluator rereads its files
    "ui.rules_page": OPEN,
    "federate.federate": _READ,
}


@dataclass(frozen=True)
class AuthState:
    """The tokens of this app; ``everywhere``: every route is guarded (an auth file is set),
    else only the ``admin`` routes (by ``admin_token``, when set)."""

    policy: AuthPolicy | None
    everywhere: bool
    default_dataset: str


def state_from_config(cfg: Config) -> AuthState:
    """The auth state of ``cfg``; a bad auth file raises :class:`BadInputError`."""
    if cfg.auth_file:
        policy = with_admin_token(load_auth_file(cfg.auth_file), cfg.admin_token)
        return AuthState(policy, True, cfg.dataset)
    if cfg.admin_token:
        return AuthState(AuthPolicy((admin_grant(cfg.admin_token),), {}), False, cfg.dataset)
    return AuthState(None, False, cfg.dataset)


def init_app(app: Flask, cfg: Config) -> None:
    """Check every route has a rule, keep the auth state and guard every request."""
    missing = sorted({r.endpoint for r in app.url_map.iter_rules()} - set(RULES) - {"static"})
    if missing:
        raise RuntimeError(f"routes without an auth rule in filodb.web.auth.RULES: {missing}")
    app.extensions[EXTENSION] = state_from_config(cfg)
    app.before_request(_guard)


def _guard() -> None:
    """Raise :class:`AuthError` (401) or :class:`ForbiddenError` (403) unless allowed."""
    st: AuthState = current_app.extensions[EXTENSION]
    rule = RULES.get(request.endpoint or "", LISTING)  # no such route: a token, then 404

    def dataset() -> str | None:
        view_args = request.view_args or {}
        return view_args.get("dataset") or (rule.dataset_arg and request.args.get(rule.dataset_arg))

    grant = check(st, rule, lambda: request.headers.get("Authorization"), dataset)
    if grant is not None:
        g.filodb_grant = grant


def check(st: AuthState, rule: Rule, authorization: Callable[[], str | None],
          dataset: Callable[[], str | None]) -> Grant | None:  # fmt: skip
    """The caller's grant when ``rule`` lets it through (None: no token needed), else raise
    :class:`AuthError` (401) or :class:`ForbiddenError` (403). ``authorization`` gives the
    ``Authorization`` header, ``dataset`` the route's dataset (None: the default one); both
    are asked only when needed. The Flask hook and the lean ingestion path
    (:mod:`filodb.web.ingest_wsgi`) both decide here."""
    if rule is OPEN or st.policy is None or (not st.everywhere and rule is not _ADMIN):
        return None
    token = credentials(authorization())
    if token is None:
        raise AuthError("this route needs a token: send 'Authorization: Bearer <token>' "
                        "or HTTP basic auth with the token as the password")  # fmt: skip
    grant = st.policy.find(token)
    if grant is None:
        raise AuthError("unknown token")
    if rule.scope is None:
        return grant
    ds = dataset() or st.default_dataset
    if not grant.allows(rule.scope, ds):
        raise ForbiddenError(f"token {grant.name!r} has no {rule.scope} scope on dataset {ds!r}")
    return grant


def readable() -> Callable[[str], bool]:
    """In a view: which datasets the caller may read (every one when auth is off)."""
    grant: Grant | None = g.get("filodb_grant")
    st: AuthState = current_app.extensions[EXTENSION]
    if grant is None or not st.everywhere:
        return lambda _ds: True
    return grant.readable
