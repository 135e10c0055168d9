"""One conformance suite for every :class:`~filodb.ingest.base.Log` backend.

A backend's test module subclasses :class:`LogSuite` and provides the ``log`` fixture (a fresh,
empty log) and the back-door ``raw_records`` (read the stored records directly from the
backend, bypassing :meth:`Log.read`), so each method is checked against independent ground
truth. Never override a suite test into a pass.
"""

from __future__ import annotations

import threading
import time
from abc import abstractmethod

import pytest

from filodb.errors import BadInputError
from filodb.ingest.base import Log
from filodb.testing.suite import ConformanceSuite


class LogSuite(ConformanceSuite):
    """Behaviour every log backend must have."""

    @pytest.fixture
    @abstractmethod
    def log(self) -> Log:
        """A fresh, empty log (a fixture: may take others)."""

    @abstractmethod
    def raw_records(self, log: Log, dataset: str, shard: int) -> list[tuple[int, bytes]]:
        """The shard's stored ``(offset, record)`` pairs in order, read around :meth:`Log.read`."""

    def test_empty_partition(self, log: Log) -> None:
        assert log.end_offset("ds", 0) == 0
        assert log.read("ds", {0: 0}, 10, 0) == {}

    def test_offsets_are_dense_from_one(self, log: Log) -> None:
        assert log.append("ds", 0, [b"a", b"b"]) == [1, 2]
        assert log.append("ds", 0, [b"c"]) == [3]
        assert log.end_offset("ds", 0) == 3
        assert self.raw_records(log, "ds", 0) == [(1, b"a"), (2, b"b"), (3, b"c")]

    def test_trim_drops_only_what_it_is_allowed_to(self, log: Log) -> None:
        log.append("ds", 0, [b"a", b"b", b"c", b"d"])
        log.append("ds", 1, [b"x"])
        log.trim("ds", 0, 2)
        assert [r for _, r in log.read("ds", {0: 2}, 10, 0)[0]] == [b"c", b"d"]
        assert log.end_offset("ds", 0) == 4
        assert log.append("ds", 0, [b"e"]) == [5]
        assert [o for o, _ in self.raw_records(log, "ds", 0)] == [3, 4, 5]
        assert self.raw_records(log, "ds", 1) == [(1, b"x")]
        log.trim("ds", 0, 0)  # nothing
        assert len(self.raw_records(log, "ds", 0)) == 3

    def test_partitions_are_independent(self, log: Log) -> None:
        got = log.append_many("ds", {0: [b"x"], 3: [b"y", b"z"]})
        assert got == {0: [1], 3: [1, 2]}
        assert log.end_offsets("ds", [0, 1, 3]) == {0: 1, 1: 0, 3: 2}
        assert log.read("other", {0: 0}, 10, 0) == {}

    def test_read_resumes_after_position(self, log: Log) -> None:
        log.append("ds", 1, [bytes([i]) for i in range(10)])
        assert log.read("ds", {1: 7}, 100, 0) == {1: [(8, b"\x07"), (9, b"\x08"), (10, b"\x09")]}
        first = log.read("ds", {1: 0}, 4, 0)[1]
        assert [o for o, _ in first] == [1, 2, 3, 4]

    def test_binary_records_round_trip(self, log: Log) -> None:
        payload = bytes(range(256)) * 300
        log.append("ds", 0, [payload, b"", b"\x00"])
        assert [r for _, r in log.read("ds", {0: 0}, 10, 0)[0]] == [payload, b"", b"\x00"]

    def test_blocking_read_wakes_on_append(self, log: Log) -> None:
        def later() -> None:
            time.sleep(0.2)
            log.append("ds", 2, [b"late"])

        th = threading.Thread(target=later)
        th.start()
        t0 = time.monotonic()
        got = log.read("ds", {2: 0}, 10, 5000)
        th.join()  # its append may still be reading its reply: never close the log under it
        assert got == {2: [(1, b"late")]}
        assert time.monotonic() - t0 < 4

    def test_blocking_read_times_out_empty(self, log: Log) -> None:
        t0 = time.monotonic()
        assert log.read("ds", {0: 0}, 10, 300) == {}
        assert 0.25 <= time.monotonic() - t0 < 3

    def test_concurrent_appends_get_distinct_offsets(self, log: Log) -> None:
        def writer(tag: int) -> None:
            for i in range(50):
                log.append("ds", 0, [f"{tag}:{i}".encode()])

        threads = [threading.Thread(target=writer, args=(t,)) for t in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        recs = self.raw_records(log, "ds", 0)
        assert [o for o, _ in recs] == list(range(1, 201))
        for tag in range(4):  # each writer's records keep their order
            mine = [int(r.split(b":")[1]) for _, r in recs if r.startswith(f"{tag}:".encode())]
            assert mine == list(range(50))

    def test_delete_dataset(self, log: Log) -> None:
        log.append_many("ds", {0: [b"a"], 1: [b"b"]})
        log.delete_dataset("ds", 2)
        assert log.end_offsets("ds", [0, 1]) == {0: 0, 1: 0}
        assert log.read("ds", {0: 0, 1: 0}, 10, 0) == {}

    @pytest.mark.parametrize("name", ["", "../x", "a/b", "ünï", "-x", "a b", "a.b", "x" * 101])
    def test_bad_dataset_names_are_refused(self, log: Log, name: str) -> None:
        with pytest.raises(BadInputError):
            log.ensure_dataset(name, 2)
        log.ensure_dataset("x" * 100, 1)  # the longest valid name

    # --- read_many: one read over partitions of many datasets (a node's reader) ------------
    def test_read_many_over_datasets(self, log: Log) -> None:
        log.append_many("a", {0: [b"a1", b"a2", b"a3"], 1: [b"b1"]})
        log.append("b", 2, [b"c1", b"c2"])
        got = log.read_many({("a", 0): 1, ("a", 1): 0, ("b", 2): 0, ("b", 0): 0}, 10, 0)
        assert got == {
            ("a", 0): [(2, b"a2"), (3, b"a3")],
            ("a", 1): [(1, b"b1")],
            ("b", 2): [(1, b"c1"), (2, b"c2")],
        }
        assert log.read_many({("a", 0): 3, ("b", 2): 2}, 10, 0) == {}
        assert log.read_many({}, 10, 0) == {}

    def test_read_many_count_is_per_partition(self, log: Log) -> None:
        log.append_many("a", {0: [bytes([i]) for i in range(5)], 1: [b"x"] * 5})
        log.append("b", 0, [b"y"] * 5)
        got = log.read_many({("a", 0): 0, ("a", 1): 0, ("b", 0): 2}, 2, 0)
        assert {k: [o for o, _ in v] for k, v in got.items()} == {
            ("a", 0): [1, 2],
            ("a", 1): [1, 2],
            ("b", 0): [3, 4],
        }

    def test_read_many_blocks_and_wakes_on_any_dataset(self, log: Log) -> None:
        log.append("a", 0, [b"old"])
        log.ensure_dataset("b", 2)

        def later() -> None:
            time.sleep(0.2)
            log.append("b", 1, [b"late"])

        th = threading.Thread(target=later)
        th.start()
        t0 = time.monotonic()
        got = log.read_many({("a", 0): 1, ("b", 0): 0, ("b", 1): 0}, 10, 5000)
        th.join()
        assert got == {("b", 1): [(1, b"late")]}
        assert time.monotonic() - t0 < 4

    def test_read_many_times_out_empty(self, log: Log) -> None:
        log.append("a", 0, [b"x"])
        log.ensure_dataset("b", 1)
        t0 = time.monotonic()
        assert log.read_many({("a", 0): 1, ("b", 0): 0}, 10, 300) == {}
        assert 0.25 <= time.monotonic() - t0 < 3

    def test_read_many_after_trim(self, log: Log) -> None:
        log.append("a", 0, [b"1", b"2", b"3"])
        log.append("b", 0, [b"z"])
        log.trim("a", 0, 2)
        got = log.read_many({("a", 0): 2, ("b", 0): 0}, 10, 0)
        assert got == {("a", 0): [(3, b"3")], ("b", 0): [(1, b"z")]}
