"""The auth file: what parses, what is refused (with a message naming the problem), what a
token may do, and how credentials are read from an Authorization header."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from filodb.auth import credentials, load_auth_file, parse_auth, with_admin_token
from filodb.errors import BadInputError

GOOD = """
[[tokens]]
name = "prom"
token = "s3cret"
datasets = ["*"]
scopes = ["read", "write"]

[[tokens]]
name = "team-a-admin"
token = "a-admin"
datasets = ["team-a"]
scopes = ["admin", "read"]

[[tokens]]
token = "ingest-only"
datasets = ["prometheus"]
scopes = ["write"]

[gateway]
influx_token = "prom"
"""


def _file(tmp_path: Path, text: str) -> str:
    p = tmp_path / "auth.toml"
    p.write_text(text)
    return str(p)


def test_a_good_file_gives_each_token_its_scopes_on_its_datasets(tmp_path: Path) -> None:
    pol = load_auth_file(_file(tmp_path, GOOD))
    prom, admin, ingest = (pol.find(t) for t in ("s3cret", "a-admin", "ingest-only"))
    assert prom and admin and ingest
    assert (prom.name, admin.name, ingest.name) == ("prom", "team-a-admin", "#3")
    assert prom.allows("read", "anything") and prom.allows("write", "team-a")
    assert not prom.allows("admin", "team-a")
    assert admin.allows("admin", "team-a") and admin.allows("read", "team-a")
    assert not admin.allows("read", "prometheus") and not admin.allows("write", "team-a")
    assert ingest.allows("write", "prometheus") and not ingest.allows("write", "team-a")
    assert not ingest.readable("prometheus")
    assert pol.find("s3cre") is None and pol.find("s3cret ") is None and pol.find("") is None
    assert pol.door_tokens("prometheus") == {"influx": b"s3cret"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[tokens]\ntoken = 1", "not valid TOML"),
        ("", "no [[tokens]] table"),
        ('[[tokens]]\ntoken = "x"\ndatasets = ["*"]\nscopes = ["read"]\ncolour = "red"',
         "unknown key(s) ['colour']"),
        ('[[tokens]]\ntoken = "x"\ndatasets = ["*"]\nscopes = ["read", "delete"]',
         "unknown scope(s) ['delete']"),
        ('[[tokens]]\ntoken = "x"\ndatasets = []\nscopes = ["read"]', "datasets must be"),
        ('[[tokens]]\ntoken = "x"\ndatasets = ["*"]', "scopes must be"),
        ('[[tokens]]\ndatasets = ["*"]\nscopes = ["read"]', "token must be"),
        ('[[tokens]]\ntoken = " x"\ndatasets = ["*"]\nscopes = ["read"]', "token must be"),
        ('[[tokens]]\ntoken = "x"\ndatasets = ["*"]\nscopes = ["read"]\n'
         '[[tokens]]\ntoken = "x"\ndatasets = ["a"]\nscopes = ["write"]', "repeats the token"),
        ('users = 1\n[[tokens]]\ntoken = "x"\ndatasets = ["*"]\nscopes = ["read"]',
         "unknown key(s) ['users']"),
        ('[[tokens]]\nname = "r"\ntoken = "x"\ndatasets = ["*"]\nscopes = ["read"]\n'
         '[gateway]\ninflux_token = "nobody"', "names no token"),
        ('[[tokens]]\nname = "r"\ntoken = "x"\ndatasets = ["*"]\nscopes = ["read"]\n'
         '[gateway]\ninflux_token = "r"', "has no write scope"),
        ('[[tokens]]\nname = "w"\ntoken = "x"\ndatasets = ["*"]\nscopes = ["write"]\n'
         '[gateway]\nopentsdb_token = "w"', "unknown key(s) ['opentsdb_token']"),
    ],
)  # fmt: skip
def test_a_bad_file_is_refused_with_its_problem_named(
    tmp_path: Path, text: str, message: str
) -> None:
    path = _file(tmp_path, text)
    with pytest.raises(BadInputError) as e:
        load_auth_file(path)
    assert message in str(e.value) and path in str(e.value)


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="cannot read auth file"):
        load_auth_file(str(tmp_path / "nope.toml"))


def test_a_door_token_must_write_to_the_gateways_dataset() -> None:
    pol = parse_auth({"tokens": [{"name": "w", "token": "x", "datasets": ["a"], "scopes": ["write"]}],
                      "gateway": {"graphite_token": "w"}})  # fmt: skip
    assert pol.door_tokens("a") == {"graphite": b"x"}
    with pytest.raises(BadInputError, match="may not write to dataset 'prometheus'"):
        pol.door_tokens("prometheus")


def test_admin_token_is_one_more_token_with_admin_everywhere() -> None:
    pol = parse_auth({"tokens": [{"token": "r", "datasets": ["*"], "scopes": ["read"]}]})
    both = with_admin_token(pol, "adm")
    g = both.find("adm")
    assert g is not None and g.allows("admin", "any") and not g.allows("read", "any")
    assert with_admin_token(pol, "") is pol
    with pytest.raises(BadInputError, match="admin_token is also a token"):
        with_admin_token(pol, "r")


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer s3cret", "s3cret"),
        ("bearer   s3cret ", "s3cret"),
        ("Token s3cret", "s3cret"),  # Influx 2 clients
        (_basic("prometheus", "s3cret"), "s3cret"),
        (_basic("", "s3:cret"), "s3:cret"),  # the password may hold a colon
        (_basic("s3cret", ""), None),  # the token is the password, not the user
        ("Basic !!!not-base64", None),
        ("Bearer", None),
        ("Digest abc", None),
        ("", None),
        (None, None),
    ],
)
def test_credentials_from_the_authorization_header(header: str | None, token: str | None) -> None:
    assert credentials(header) == token
