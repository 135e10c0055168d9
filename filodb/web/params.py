"""Request parameters as Prometheus reads them: times (parsed by :mod:`filodb.model.timeparse`),
match[] selectors."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Blueprint, request

from filodb.errors import BadInputError, ParseError
from filodb.model.labels import Matcher
from filodb.model.timeparse import parse_time_ms

F = TypeVar("F", bound=Callable[..., Any])


def arg(name: str) -> str | None:
    """A parameter from the query string or a form body (GET and POST alike; the query
    string wins, as in ``request.values``, without building that merged view each time)."""
    v = request.args.get(name)
    if v is None and request.method != "GET":
        v = request.form.get(name)
    return v


def args(name: str) -> list[str]:
    found = request.args.getlist(name)
    return found + request.form.getlist(name) if request.method != "GET" else found


def time_param(name: str, default_ms: int | None) -> int:
    raw = arg(name)
    if raw is None or raw == "":
        if default_ms is None:
            raise BadInputError(f'invalid parameter "{name}": cannot parse "" to a valid timestamp')
        return default_ms
    return parse_time_ms(raw, name)


def now_ms() -> int:
    return int(time.time() * 1000)


def match_params(required: bool) -> list[list[Matcher]]:
    """The ``match[]`` selectors as matcher lists; 400 when one does not parse (or when
    ``required`` and there is none)."""
    from filodb.query.parser import selector_matchers

    raw = args("match[]")
    if required and not raw:
        raise BadInputError("no match[] parameter provided")
    out = []
    for text in raw:
        try:
            out.append(selector_matchers(text))
        except ParseError as e:
            raise BadInputError(f'invalid parameter "match[]": {e}') from e
    return out


def prom_routes(bp: Blueprint, methods: tuple[str, ...]) -> Callable[..., Callable[[F], F]]:
    """A decorator factory registering a view at ``/api/v1<rule>`` (the default dataset) and at
    ``/promql/<dataset>/api/v1<rule>`` (endpoint name plus ``_ds``), as Prometheus's API has
    it per dataset; ``methods`` is the default, a route may pass its own."""

    def routes(rule: str, methods: tuple[str, ...] = methods) -> Callable[[F], F]:
        def deco(fn: F) -> F:
            name = fn.__name__
            bp.add_url_rule(f"/api/v1{rule}", name, fn, methods=list(methods))
            bp.add_url_rule(
                f"/promql/<dataset>/api/v1{rule}", name + "_ds", fn, methods=list(methods)
            )
            return fn

        return deco

    return routes
