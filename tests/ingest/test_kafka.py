"""KafkaLog against a real single-node Kafka (KRaft), started once per session by devservices."""

from __future__ import annotations

import threading
import time
import uuid

import numpy as np
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource

from filodb.config import Config
from filodb.devservices.base import free_port
from filodb.errors import UnavailableError
from filodb.ingest import log_from_config
from filodb.ingest.kafka import KafkaLog
from filodb.testing.log_suite import LogSuite
from filodb.testing.wait import wait_for


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_env: dict[str, str]) -> str:
    """A running Kafka of this session (tests/conftest.py); fails, never skips."""
    return kafka_env["FILODB_KAFKA_BOOTSTRAP"]


def _raw_consumer(bootstrap: str) -> Consumer:
    return Consumer({"bootstrap.servers": bootstrap, "group.id": f"raw-{uuid.uuid4().hex}",
                     "enable.auto.commit": False, "log_level": 0})  # fmt: skip


def raw_partition(bootstrap: str, topic: str, shard: int) -> list[tuple[int, bytes]]:
    """Every stored record of a partition, straight from Kafka, as (log offset, value)."""
    c = _raw_consumer(bootstrap)
    try:
        md = c.list_topics(topic=topic, timeout=10).topics[topic]
        if md.error is not None or shard not in md.partitions:
            return []
        lo, hi = c.get_watermark_offsets(TopicPartition(topic, shard), timeout=10)
        out: list[tuple[int, bytes]] = []
        if hi <= lo:
            return out
        c.assign([TopicPartition(topic, shard, OFFSET_BEGINNING)])

        def up_to_end() -> bool:
            for m in c.consume(1000, 0.05):
                assert m.error() is None, m.error()
                out.append((m.offset() + 1, m.value() or b""))
            return bool(out) and out[-1][0] >= hi

        wait_for(up_to_end, 30, f"records of {topic}/{shard} up to offset {hi}", interval=0)
        return out
    finally:
        c.close()


@pytest.fixture
def kafka_log(kafka_bootstrap: str) -> KafkaLog:
    """A KafkaLog whose topics are this test's own (a fresh prefix); they go afterwards."""
    prefix = f"t{uuid.uuid4().hex[:12]}-"
    lg = KafkaLog(kafka_bootstrap, topic_prefix=prefix)
    yield lg
    lg.close()
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    mine = [t for t in admin.list_topics(timeout=10).topics if t.startswith(prefix)]
    if mine:
        for f in admin.delete_topics(mine, operation_timeout=10).values():
            f.result(timeout=20)


class TestKafkaLog(LogSuite):
    @pytest.fixture
    def log(self, kafka_log: KafkaLog) -> KafkaLog:
        return kafka_log

    def raw_records(self, log, dataset, shard):  # type: ignore[no-untyped-def]
        return raw_partition(log.bootstrap, log.topic(dataset), shard)

    # --- Kafka's own behaviour ---------------------------------------------------------------
    def test_producer_is_idempotent_with_acks_all(self, log: KafkaLog) -> None:
        assert log.producer_config["enable.idempotence"] is True
        assert log.producer_config["acks"] == "all"
        log.append("ds", 0, [b"a"])
        admin = AdminClient({"bootstrap.servers": log.bootstrap})
        res = ConfigResource(ConfigResource.Type.TOPIC, log.topic("ds"))
        conf = admin.describe_configs([res])[res].result(timeout=10)
        assert conf["retention.ms"].value == "-1"  # only trim() drops records
        assert conf["retention.bytes"].value == "-1"

    def test_records_of_several_megabytes_round_trip(self, log: KafkaLog) -> None:
        # the router's records hold up to 200 k samples: far beyond Kafka's 1 MB default
        big = bytes(range(256)) * (12 << 12)  # 12 MiB
        assert log.append("big", 0, [big, b"x"]) == [1, 2]
        got: list[tuple[int, bytes]] = []

        def both() -> bool:  # a read may stop after the big one
            got.extend(log.read("big", {0: got[-1][0] if got else 0}, 10, 2000).get(0, []))
            return len(got) >= 2

        wait_for(both, 30, "both records read", interval=0)
        assert got == [(1, big), (2, b"x")]

    def test_ensure_dataset_creates_and_grows_partitions(self, log: KafkaLog) -> None:
        admin = AdminClient({"bootstrap.servers": log.bootstrap})
        topic = log.topic("grow")

        def partitions() -> int:
            return len(admin.list_topics(topic=topic, timeout=10).topics[topic].partitions)

        log.ensure_dataset("grow", 3)
        assert partitions() == 3
        log.ensure_dataset("grow", 2)  # never shrinks
        log.ensure_dataset("grow", 3)
        assert partitions() == 3
        assert log.append("grow", 2, [b"x"]) == [1]
        log.ensure_dataset("grow", 5)
        assert partitions() == 5
        assert log.append_many("grow", {4: [b"y"], 2: [b"z"]}) == {4: [1], 2: [2]}
        assert log.append("grow", 7, [b"w"]) == [1]  # an append grows the topic itself
        assert partitions() == 8
        assert self.raw_records(log, "grow", 2) == [(1, b"x"), (2, b"z")]

    def test_many_records_get_dense_offsets(self, log: KafkaLog) -> None:
        rng = np.random.default_rng(7)
        sizes = rng.integers(0, 400, 10_000)
        recs = [f"{i}:".encode() + bytes(int(n)) for i, n in enumerate(sizes)]
        shards = rng.integers(0, 4, 10_000)
        by_shard = {s: [r for r, k in zip(recs, shards, strict=True) if k == s] for s in range(4)}
        got = log.append_many("big", by_shard)
        for s in range(4):
            assert got[s] == list(range(1, len(by_shard[s]) + 1))
            assert self.raw_records(log, "big", s) == list(zip(got[s], by_shard[s], strict=True))
        assert log.end_offsets("big", [0, 1, 2, 3]) == {s: len(by_shard[s]) for s in range(4)}

    def test_read_starts_exactly_at_a_checkpoint(self, log: KafkaLog) -> None:
        log.append("ds", 0, [f"r{i}".encode() for i in range(1, 101)])
        for pos in (37, 90, 5, 99, 100, 0):  # forwards, backwards, the end, the start
            got = log.read("ds", {0: pos}, 10, 0).get(0, [])
            want = [(o, f"r{o}".encode()) for o in range(pos + 1, min(pos + 10, 100) + 1)]
            assert got == want, pos
        pos, seen = 0, []
        while pos < 100:  # a follower reading on from where it stopped
            recs = log.read("ds", {0: pos}, 7, 0)[0]
            seen += recs
            pos = recs[-1][0]
        assert [o for o, _ in seen] == list(range(1, 101))

    def test_count_is_per_shard(self, log: KafkaLog) -> None:
        log.append_many(
            "ds", {0: [b"a%d" % i for i in range(20)], 1: [b"b%d" % i for i in range(3)]}
        )
        pos = {0: 0, 1: 0}
        got = log.read("ds", pos, 5, 0)
        assert [o for o, _ in got[0]] == [1, 2, 3, 4, 5]
        assert [o for o, _ in got[1]] == [1, 2, 3]
        pos = {0: 5, 1: 3}
        got = log.read("ds", pos, 5, 0)
        assert got == {0: [(o, b"a%d" % (o - 1)) for o in range(6, 11)]}

    def test_a_new_log_object_reads_what_an_old_one_wrote(self, log: KafkaLog) -> None:
        log.append_many("ds", {0: [b"a", b"b"], 1: [b"c"]})
        log.close()
        again = KafkaLog(log.bootstrap, topic_prefix=log.topic_prefix)
        try:
            assert again.end_offsets("ds", [0, 1, 2]) == {0: 2, 1: 1, 2: 0}
            assert again.read("ds", {0: 1, 1: 0}, 10, 0) == {0: [(2, b"b")], 1: [(1, b"c")]}
            assert again.append("ds", 0, [b"d"]) == [3]
        finally:
            again.close()

    def test_readers_of_different_shards_do_not_wait_for_each_other(self, log: KafkaLog) -> None:
        log.ensure_dataset("ds", 2)
        blocked = threading.Thread(target=log.read, args=("ds", {0: 0}, 10, 1500))
        blocked.start()
        time.sleep(0.2)
        log.append("ds", 1, [b"x"])
        t0 = time.monotonic()
        assert log.read("ds", {1: 0}, 10, 0) == {1: [(1, b"x")]}
        assert time.monotonic() - t0 < 2
        blocked.join()

    def test_log_from_config_builds_a_kafka_log(self, kafka_bootstrap: str) -> None:
        cfg = Config(log="kafka", kafka_bootstrap=kafka_bootstrap, kafka_topic_prefix="cfg-")
        lg = log_from_config(cfg)
        try:
            assert isinstance(lg, KafkaLog)
            assert lg.topic("x") == "cfg-x"
            assert lg.end_offset(f"none{uuid.uuid4().hex}", 0) == 0
        finally:
            lg.close()


def test_unreachable_kafka_is_a_clear_error_in_bounded_time() -> None:
    lg = KafkaLog(f"127.0.0.1:{free_port()}", timeout_s=2)
    try:
        for call in (lambda: lg.append("ds", 0, [b"a"]), lambda: lg.end_offset("ds", 0),
                     lambda: lg.read("ds", {0: 0}, 10, 0)):  # fmt: skip
            t0 = time.monotonic()
            with pytest.raises(UnavailableError, match="Kafka at 127.0.0.1"):
                call()
            assert time.monotonic() - t0 < 8
    finally:
        lg.close()


class TestUnknownOffsets:
    """A delivery report may say "stored" without an offset (librdkafka, when a retried batch
    was already on the broker): such records get the highest position they can have."""

    def test_filled_from_the_next_known_or_the_end(self) -> None:
        offsets = {0: [4, -1, -1, 7, -1], 1: [-1], 2: [1, 2]}
        KafkaLog._fill_unknown(offsets, {0: 9, 1: 3})
        assert offsets == {0: [4, 5, 6, 7, 9], 1: [3], 2: [1, 2]}

    def test_exact_for_a_lone_producer(self) -> None:
        rng = np.random.default_rng(3)
        for _ in range(200):
            n = int(rng.integers(1, 30))
            true = list(range(11, 11 + n))
            got = [o if rng.random() < 0.7 else -1 for o in true]
            offsets = {0: got}
            KafkaLog._fill_unknown(offsets, {0: true[-1]})
            assert offsets[0] == true

    def test_an_upper_bound_when_others_wrote_between(self) -> None:
        rng = np.random.default_rng(4)
        for _ in range(200):
            n = int(rng.integers(1, 30))
            true = list(np.cumsum(rng.integers(1, 4, n)) + 5)
            got = [int(o) if rng.random() < 0.6 else -1 for o in true]
            end = int(true[-1]) + int(rng.integers(0, 3))
            offsets = {0: got}
            KafkaLog._fill_unknown(offsets, {0: end})
            filled = offsets[0]
            assert all(f >= t for f, t in zip(filled, true, strict=True))
            assert (
                all(b > a for a, b in zip(filled, filled[1:], strict=False)) and filled[-1] <= end
            )
