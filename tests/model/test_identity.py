from __future__ import annotations

import threading

from filodb.errors import BadInputError
from filodb.model.batch import series_identity
from filodb.model.identity import SeriesTable
from filodb.model.labels import make_labels


def _parse(raw: bytes, i: int):  # type: ignore[no-untyped-def]
    name, _, inst = raw.decode().partition("/")
    if not name:
        raise BadInputError(f"series {i} has no name")
    return make_labels({"__name__": name, "instance": inst})


def _check(table: SeriesTable, raws: list[bytes]) -> None:
    ids = table.lookup(raws, _parse)
    want = [_parse(r, 0) for r in raws]
    assert ids.series == want
    idents = [series_identity(lb) for lb in want]
    assert ids.pks == [w[0] for w in idents]
    assert ids.keys.tolist() == [w[1] for w in idents]
    assert ids.routes.tolist() == [w[2] for w in idents]


def test_lookups_give_each_series_its_identity_across_generations() -> None:
    table = SeriesTable(max_series=5)
    raws = [f"m/{i}".encode() for i in range(12)]
    _check(table, raws)  # one lookup past the bound finishes in its generation
    for k in range(0, 12, 3):  # later ones start afresh, bounded
        _check(table, raws[k : k + 3] + raws[:1])
        assert len(table._gen.labels) <= 5
    _check(table, [b"m/1"])
    _check(table, [])


def test_a_bad_series_raises_and_is_not_kept() -> None:
    table = SeriesTable()
    try:
        table.lookup([b"m/1", b"/2"], _parse)
    except BadInputError as e:
        assert "series 1" in str(e)
    else:
        raise AssertionError("no error")
    assert b"/2" not in table._gen.slots
    _check(table, [b"m/1"])


def test_threads_share_a_table() -> None:
    table = SeriesTable(max_series=300)
    errors: list[BaseException] = []

    def run(k: int) -> None:
        try:
            for r in range(20):
                _check(table, [f"m{(k + r) % 7}/{i}".encode() for i in range(50)])
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
