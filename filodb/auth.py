"""Tokens with scopes, per dataset: the auth file and the checks every door shares.

The auth file is TOML (``--auth-file PATH``, ``FILODB_AUTH_FILE``, config key ``auth_file``)::

    [[tokens]]
    name = "prometheus"          # optional; how [gateway] and the logs refer to the token
    token = "s3cret"
    datasets = ["*"]             # dataset names, or "*" for every dataset
    scopes = ["read", "write"]   # read | write | admin

    [gateway]                    # optional: the TCP doors' tokens, by name
    influx_token = "telegraf"
    graphite_token = "telegraf"

A file that does not parse, has an unknown key or scope, a token twice, or a ``[gateway]``
reference to a token that does not exist (or cannot ``write``) is a :class:`BadInputError`
naming the problem, so every process refuses to start on it.

Tokens are compared in constant time (:func:`hmac.compare_digest` against every configured
token, without stopping at the first match), so the time an answer takes says nothing about
how much of a guess was right. Pure: no Flask, no sockets; the web tier's hook
(:mod:`filodb.web.auth`) and the TCP doors (:mod:`filodb.gateway.tcp`) call it.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from filodb.errors import BadInputError

SCOPES = ("read", "write", "admin")
ALL = "*"
DOORS = ("influx", "graphite")  # the TCP doors that may require a token
_TOKEN_KEYS = {"name", "token", "datasets", "scopes"}
_GATEWAY_KEYS = {f"{d}_token" for d in DOORS}


@dataclass(frozen=True)
class Grant:
    """What one token may do: ``scopes`` on ``datasets`` (``"*"``: every dataset)."""

    name: str
    token: bytes
    datasets: frozenset[str]
    scopes: frozenset[str]

    def allows(self, scope: str, dataset: str) -> bool:
        return scope in self.scopes and (ALL in self.datasets or dataset in self.datasets)

    def readable(self, dataset: str) -> bool:
        return self.allows("read", dataset)


@dataclass(frozen=True)
class AuthPolicy:
    """Every token of an auth file, plus the TCP doors' token names (``{door: name}``)."""

    grants: tuple[Grant, ...]
    door_names: Mapping[str, str]

    def find(self, presented: str) -> Grant | None:
        """The grant whose token is ``presented``, else ``None``; constant time in the guess."""
        raw = presented.encode("utf-8")
        found = None
        for g in self.grants:  # no early exit: every token is compared every time
            if hmac.compare_digest(raw, g.token):
                found = g
        return found

    def door_tokens(self, dataset: str) -> dict[str, bytes]:
        """``{door: token}`` for the TCP doors that need one, writing to ``dataset``."""
        by_name = {g.name: g for g in self.grants}
        out = {}
        for door, name in self.door_names.items():
            g = by_name[name]
            if not g.allows("write", dataset):
                raise BadInputError(f"auth file: [gateway] {door}_token names token {name!r}, "
                                    f"which may not write to dataset {dataset!r}")  # fmt: skip
            out[door] = g.token
        return out


def admin_grant(admin_token: str) -> Grant:
    """The config's ``admin_token`` as a grant: the ``admin`` scope on every dataset."""
    return Grant("admin_token", admin_token.encode("utf-8"), frozenset({ALL}), frozenset({"admin"}))


def with_admin_token(policy: AuthPolicy, admin_token: str) -> AuthPolicy:
    """``policy`` plus the config's ``admin_token`` (when set) as :func:`admin_grant`."""
    if not admin_token:
        return policy
    if policy.find(admin_token) is not None:
        raise BadInputError("admin_token is also a token of the auth file: give it its own value")
    return AuthPolicy((*policy.grants, admin_grant(admin_token)), policy.door_names)


def load_auth_file(path: str) -> AuthPolicy:
    """Read and check an auth file; :class:`BadInputError` naming the problem otherwise."""
    try:
        with open(path, "rb") as fh:
            doc = tomllib.load(fh)
    except OSError as e:
        raise BadInputError(f"cannot read auth file {path}: {e.strerror or e}") from e
    except tomllib.TOMLDecodeError as e:
        raise BadInputError(f"auth file {path} is not valid TOML: {e}") from e
    try:
        return parse_auth(doc)
    except BadInputError as e:
        raise BadInputError(f"auth file {path}: {e}") from e


def parse_auth(doc: Mapping[str, Any]) -> AuthPolicy:
    """The policy of a parsed auth file (see the module docstring for the keys)."""
    unknown = set(doc) - {"tokens", "gateway"}
    if unknown:
        raise BadInputError(f"unknown key(s) {sorted(unknown)} (have: tokens, gateway)")
    tables = doc.get("tokens", [])
    if not isinstance(tables, list) or not tables:
        raise BadInputError("no [[tokens]] table: list at least one token")
    grants = tuple(_grant(i, t) for i, t in enumerate(tables, 1))
    seen: dict[bytes, str] = {}
    names: set[str] = set()
    for g in grants:
        if g.token in seen:
            raise BadInputError(f"token {g.name!r} repeats the token of {seen[g.token]!r}")
        if g.name in names:
            raise BadInputError(f"two tokens are named {g.name!r}")
        seen[g.token] = g.name
        names.add(g.name)
    return AuthPolicy(grants, _gateway(doc.get("gateway", {}), grants))


def _grant(i: int, t: Any) -> Grant:
    where = f"[[tokens]] #{i}"
    if not isinstance(t, dict):
        raise BadInputError(f"{where} must be a table")
    unknown = set(t) - _TOKEN_KEYS
    if unknown:
        raise BadInputError(f"{where}: unknown key(s) {sorted(unknown)} "
                            f"(have: {', '.join(sorted(_TOKEN_KEYS))})")  # fmt: skip
    token, name = t.get("token"), t.get("name", f"#{i}")
    if not isinstance(token, str) or not token.strip() or token != token.strip():
        raise BadInputError(f"{where}: token must be a non-empty string without spaces at its ends")
    if not isinstance(name, str) or not name:
        raise BadInputError(f"{where}: name must be a non-empty string")
    datasets = _strings(t, "datasets", where)
    scopes = _strings(t, "scopes", where)
    bad = sorted(set(scopes) - set(SCOPES))
    if bad:
        raise BadInputError(f"{where}: unknown scope(s) {bad} (have: {', '.join(SCOPES)})")
    return Grant(name, token.encode("utf-8"), frozenset(datasets), frozenset(scopes))


def _strings(t: dict, key: str, where: str) -> list[str]:
    v = t.get(key)
    if not isinstance(v, list) or not v or not all(isinstance(x, str) and x for x in v):
        raise BadInputError(f'{where}: {key} must be a non-empty list of strings, e.g. ["*"]')
    return v


def _gateway(g: Any, grants: tuple[Grant, ...]) -> dict[str, str]:
    if not isinstance(g, dict):
        raise BadInputError("[gateway] must be a table")
    unknown = set(g) - _GATEWAY_KEYS
    if unknown:
        raise BadInputError(f"[gateway]: unknown key(s) {sorted(unknown)} "
                            f"(have: {', '.join(sorted(_GATEWAY_KEYS))})")  # fmt: skip
    by_name = {x.name: x for x in grants}
    out = {}
    for key, name in g.items():
        if not isinstance(name, str) or name not in by_name:
            raise BadInputError(f"[gateway] {key} = {name!r} names no token "
                                f"(token names: {', '.join(sorted(by_name))})")  # fmt: skip
        if "write" not in by_name[name].scopes:
            raise BadInputError(f"[gateway] {key} names token {name!r}, which has no write scope")
        out[key.removesuffix("_token")] = name
    return out


def credentials(header: str | None) -> str | None:
    """The token in an ``Authorization`` header, else ``None``.

    ``Bearer <token>`` (Prometheus ``authorization``, Grafana), ``Token <token>`` (Influx 2
    clients) and ``Basic base64(user:token)`` (Prometheus/Grafana ``basic_auth``: the password
    is the token, the user name is ignored)."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    scheme, value = scheme.lower(), value.strip()
    if scheme in ("bearer", "token"):
        return value or None
    if scheme == "basic":
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        _, colon, password = decoded.partition(":")
        return password if colon and password else None
    return None
