"""``label_order`` is Python's order of label sets (Prometheus's), whatever the names and
values hold: empty strings, prefixes, NULs, code points past the BMP, empty sets."""

from __future__ import annotations

import random

from filodb.model.labels import label_order


def _sets(rng: random.Random, n: int, alphabet: str) -> list[tuple[tuple[str, str], ...]]:
    def word() -> str:
        return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 3)))

    return [tuple(sorted((word(), word()) for _ in range(rng.randint(0, 3)))) for _ in range(n)]


def test_label_order_is_the_tuple_order() -> None:
    rng = random.Random(5)
    for alphabet in ("ab", "a\x00b\x01", "aé\U0001f600\x7f", "_0zZ"):
        for _ in range(40):
            sets = _sets(rng, rng.randint(0, 60), alphabet)
            want = sorted(range(len(sets)), key=sets.__getitem__)  # stable: ties keep their order
            assert label_order(sets) == want, (alphabet, sets)


def test_a_name_ending_where_another_goes_on() -> None:
    sets = [(("a", "x"), ("b", "")), (("a", "x"),), (("a", ""), ("b", "c")), (("a\x00", "x"),),
            (("a", "x\x00"),), ()]  # fmt: skip
    assert label_order(sets) == sorted(range(len(sets)), key=sets.__getitem__)
