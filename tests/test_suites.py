"""The conformance suites refuse a backend test class that forgets one of their hooks."""

from __future__ import annotations

import pytest

from filodb.store.base import ChunkSet, PartKeyRecord
from filodb.testing.log_suite import LogSuite
from filodb.testing.store_suite import StoreSuite


def test_store_suite_names_the_missing_hooks() -> None:
    want = r"TestHalfStore lacks the suite hooks: raw_checkpoints, stores$"
    with pytest.raises(TypeError, match=want):

        class TestHalfStore(StoreSuite):  # the back doors but two
            def raw_chunks(self, *args: object) -> list[ChunkSet]:
                return []

            def raw_part_keys(self, *args: object) -> list[PartKeyRecord]:
                return []

            def raw_put_chunks(self, *args: object) -> None:
                pass


def test_log_suite_names_the_missing_hooks() -> None:
    with pytest.raises(TypeError, match=r"TestNoLog lacks the suite hooks: log, raw_records$"):

        class TestNoLog(LogSuite):
            pass


def test_a_complete_backend_class_and_an_intermediate_suite_are_accepted() -> None:
    class PartialSuite(LogSuite):  # not a Test* class: may stay abstract
        def raw_records(self, *args: object) -> list[tuple[int, bytes]]:
            return []

    class TestComplete(PartialSuite):
        @pytest.fixture
        def log(self) -> None:
            return None

    assert not TestComplete.__abstractmethods__
    assert PartialSuite.__abstractmethods__ == frozenset({"log"})
