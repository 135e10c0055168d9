"""Times and durations as Prometheus spells them, shared by the web tier and the CLI."""

from __future__ import annotations

import pytest

from filodb.errors import BadInputError
from filodb.model.timeparse import parse_duration_ms, parse_time_ms


@pytest.mark.parametrize("raw,ms", [("1700000000", 1_700_000_000_000), ("1700000000.1234", 1_700_000_000_123),
                                    ("2023-11-14T22:13:20Z", 1_700_000_000_000),
                                    ("2023-11-14T23:13:20.5+01:00", 1_700_000_000_500)])  # fmt: skip
def test_times(raw: str, ms: int) -> None:
    assert parse_time_ms(raw, "start") == ms


@pytest.mark.parametrize("raw,ms", [("15s", 15_000), ("1h30m", 5_400_000), ("1y2w", (365 + 14) * 86_400_000),
                                    ("250ms", 250), ("0.5", 500), ("90", 90_000)])  # fmt: skip
def test_durations(raw: str, ms: int) -> None:
    assert parse_duration_ms(raw, "step") == ms


@pytest.mark.parametrize("parse,raw", [(parse_time_ms, "yesterday"), (parse_time_ms, "inf"),
                                       (parse_duration_ms, ""), (parse_duration_ms, "5x"),
                                       (parse_duration_ms, "1m1h"), (parse_duration_ms, "nan")])  # fmt: skip
def test_bad_input_names_the_parameter(parse, raw: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(BadInputError, match='invalid parameter "p"'):
        parse(raw, "p")


@pytest.mark.parametrize("parse,raw", [(parse_time_ms, "8.343293528213016e+19"), (parse_time_ms, "1e308"),
                                       (parse_time_ms, "-9223372036854775809"),
                                       (parse_duration_ms, "1e308"), (parse_duration_ms, "-1e308"),
                                       (parse_duration_ms, "999999999999999999d"),
                                       (parse_duration_ms, "9223372036854775807ms")])  # fmt: skip
def test_out_of_range_is_bad_input_not_an_overflow(parse, raw: str) -> None:  # type: ignore[no-untyped-def]
    """Found by bench/fuzz_http.py: these overflowed (OverflowError, or an int the fan-out's
    msgpack could not encode) and answered 500."""
    with pytest.raises(BadInputError, match='invalid parameter "p": .* out of range'):
        parse(raw, "p")


def test_the_limits_keep_every_plausible_time() -> None:
    assert parse_time_ms("9999-12-31T23:59:59Z", "end") == 253_402_300_799_000
    assert parse_time_ms("-62135596800", "start") == -62_135_596_800_000  # year 1
    assert parse_duration_ms("10000y", "step") == 10_000 * 365 * 86_400_000
