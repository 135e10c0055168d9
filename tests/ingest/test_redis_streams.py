from __future__ import annotations

import select
import threading
import time
from collections.abc import Callable

import pytest
import redis

from filodb.ingest.redis_streams import RedisStreamsLog, _counter_key, stream_key
from filodb.testing.log_suite import LogSuite
from filodb.testing.wait import eventually


class TestRedisStreamsLog(LogSuite):
    @pytest.fixture
    def log(self, redis_url: str) -> RedisStreamsLog:
        lg = RedisStreamsLog(redis_url)
        self._r = redis.Redis.from_url(redis_url)
        yield lg
        lg.close()

    def raw_records(self, log, dataset, shard):  # type: ignore[no-untyped-def]
        entries = self._r.xrange(stream_key(dataset, shard))
        return [(int(eid.split(b"-")[1]), f[b"d"]) for eid, f in entries]

    def test_survives_redis_reconnect(self, log: RedisStreamsLog) -> None:
        log.append("ds", 0, [b"a"])
        self._r.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
        assert log.append("ds", 0, [b"b"]) == [2]
        # the one-call append over many shards (its own RESP on a pooled connection) too
        log.append_many("ds", {1: [b"c"], 2: [b"d"]})
        self._r.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
        assert log.append_many("ds", {1: [b"e"], 2: [b"f"]}) == {1: [2], 2: [2]}

    def test_appends_and_reads_keep_their_own_connections(
        self, log: RedisStreamsLog, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A body's append and a node's read take no connection from redis-py's pool (~28 us
        of CPU a call): each keeps its own, connected again after Redis dropped it."""
        log.append_many("ds", {0: [b"a"]})
        log.read_many({("ds", 0): 0}, 10, 0)

        def no_pool(*_a: object, **_k: object) -> None:
            raise AssertionError("a connection was taken from the pool")

        monkeypatch.setattr(log._r.connection_pool, "get_connection", no_pool)
        for i in range(3):
            assert log.append_many("ds", {0: [b"b%d" % i], 1: [b"c"]}) == {0: [2 + i], 1: [1 + i]}
            got = log.read_many({("ds", 0): 1 + i}, 10, 0)
            assert got == {("ds", 0): [(2 + i, b"b%d" % i)]}
            self._r.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")

    def test_close_does_not_wait_for_a_blocking_read(self, log: RedisStreamsLog) -> None:
        """Closing the log does not wait for a node's blocking read on the log's own
        connection (the read is cut, as the pool's disconnect cuts a connection in use; the
        reader's one retry then blocks on a new connection)."""
        ended: list[object] = []

        def read() -> None:
            try:
                ended.append(log.read_many({("ds", 0): 0}, 10, 3_000))
            except redis.ConnectionError as e:
                ended.append(e)

        t = threading.Thread(target=read, daemon=True)
        t.start()

        def blocked() -> None:
            assert "cmd=xread" in self._r.execute_command("CLIENT", "LIST").decode()

        eventually(blocked, 10)
        t0 = time.monotonic()
        log.close()
        assert time.monotonic() - t0 < 1.0
        t.join(10)
        assert not t.is_alive() and ended

    def test_append_after_script_flush_in_one_round_trip(self, log: RedisStreamsLog) -> None:
        """An append over many shards is one EVALSHA (no SCRIPT EXISTS first); a server that
        lost its scripts (restart, SCRIPT FLUSH) gets the script again and every record
        once."""
        log.append_many("ds", {0: [b"a"], 1: [b"b"]})
        self._r.script_flush()
        assert log.append_many("ds", {0: [b"c"], 1: [b"d", b"e"]}) == {0: [2], 1: [2, 3]}
        assert [r for _, r in self.raw_records(log, "ds", 1)] == [b"b", b"d", b"e"]
        before = self._r.info("commandstats").get("cmdstat_script|exists", {}).get("calls", 0)
        calls = self._r.info("commandstats")["cmdstat_evalsha"]["calls"]
        log.append_many("ds", {0: [b"f"], 1: [b"g"], 2: [b"h"]})
        stats = self._r.info("commandstats")
        assert stats["cmdstat_evalsha"]["calls"] == calls + 1
        assert stats.get("cmdstat_script|exists", {}).get("calls", 0) == before

    def test_one_call_appends_to_hundreds_of_shards(self, log: RedisStreamsLog) -> None:
        """Any bytes (empty, CRLF, large) to hundreds of shards in one call: each shard's
        records in order at dense offsets, read back as written."""
        recs = {s: [b"\r\n$3\r\n" * s, bytes(range(256)) * (s % 3), b"x" * 70_000][: 1 + s % 3]
                for s in range(300)}  # fmt: skip
        log.append("ds", 7, [b"first"])
        got = log.append_many("ds", recs)
        assert got == {s: list(range(1 + (s == 7), 2 + (s == 7) + s % 3)) for s in range(300)}
        read = log.read_many({("ds", s): 0 for s in range(300)}, 10, 0)
        assert read == {("ds", s): [*([(1, b"first")] if s == 7 else []),
                                    *zip(got[s], recs[s], strict=True)] for s in range(300)}  # fmt: skip

    def test_read_many_splits_huge_key_lists(self, log: RedisStreamsLog) -> None:
        """Past XREAD_KEYS streams the read is split; every partition still answers, once."""
        from filodb.ingest import redis_streams

        n = redis_streams.XREAD_KEYS * 2 + 7
        log.append_many("big", {s: [f"r{s}".encode()] for s in range(0, n, 3)})
        positions = {("big", s): 0 for s in range(n)}
        got = log.read_many(positions, 10, 0)
        assert got == {("big", s): [(1, f"r{s}".encode())] for s in range(0, n, 3)}
        assert log.read_many({k: 1 if k[1] % 3 == 0 else 0 for k in positions}, 10, 200) == {}
        log.append("big", n - 1, [b"last"])  # in the last chunk of the split read
        got = log.read_many({k: 1 if k[1] % 3 == 0 else 0 for k in positions}, 10, 2000)
        assert got == {("big", n - 1): [(1, b"last")]}

    def test_an_idle_read_is_one_xread_packed_once(
        self, log: RedisStreamsLog, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Past XREAD_KEYS streams, once a read found nothing, each read is one blocking XREAD
        (no split pre-read), packed once while the positions stay; records still come back,
        and a read that found some is split again (a backlog)."""
        from filodb.ingest import redis_streams

        n = redis_streams.XREAD_KEYS + 24
        positions = {("idle", s): 0 for s in range(n)}
        packs = [0]
        pack = log._pack_xread

        def counted(*a):  # type: ignore[no-untyped-def]
            packs[0] += 1
            return pack(*a)

        monkeypatch.setattr(log, "_pack_xread", counted)

        def xreads() -> int:
            return int(self._r.info("commandstats").get("cmdstat_xread", {}).get("calls", 0))

        assert log.read_many(positions, 10, 1) == {}  # split first (nothing known yet)
        before = xreads()
        for _ in range(5):
            assert log.read_many(positions, 10, 1) == {}
        assert xreads() - before == 5 and packs[0] == 1
        log.append("idle", n - 1, [b"r"])
        assert log.read_many(positions, 10, 1) == {("idle", n - 1): [(1, b"r")]}
        before = xreads()
        assert log.read_many({**positions, ("idle", n - 1): 1}, 10, 1) == {}
        # after records: the split read (2 XREADs) finds nothing, then the blocking one ...
        assert xreads() - before == 3
        before = xreads()
        assert log.read_many({**positions, ("idle", n - 1): 1}, 10, 1) == {}
        assert xreads() - before == 1 and packs[0] == 2  # ... and once idle, one, packed again

    def test_blocking_read_stays_under_the_socket_timeout(self, redis_url: str) -> None:
        lg = RedisStreamsLog(redis_url, socket_timeout=0.5)
        try:
            t0 = time.monotonic()  # a block of 5 s would outlive the 0.5 s socket timeout
            assert lg.read_many({("ds", 0): 0, ("ds2", 1): 0}, 10, 5000) == {}
            assert lg.read("ds", {0: 0}, 10, 5000) == {}
            assert time.monotonic() - t0 < 2
        finally:
            lg.close()


class TestGroupCommit:
    """Concurrent appends share one script call (``_GroupCommit``), each caller getting its own
    offsets, and every caller of a failed call raising."""

    @pytest.fixture
    def log(self, redis_url: str) -> RedisStreamsLog:
        lg = RedisStreamsLog(redis_url)
        yield lg
        lg.close()

    @staticmethod
    def _held(log: RedisStreamsLog, fail_second: bool = False) -> threading.Event:
        """Hold the first call in flight until the returned event is set; the second call
        then raises ConnectionError when ``fail_second``."""
        go, real, calls = threading.Event(), log._raw_call, []

        def raw_call(command: bytes, held: object = None) -> object:
            calls.append(command)
            if len(calls) == 1:
                assert go.wait(60)
            elif fail_second and len(calls) == 2:
                raise redis.ConnectionError("lost")
            return real(command, held)

        log._raw_call = raw_call  # type: ignore[method-assign]
        return go

    def _senders(self, log: RedisStreamsLog, n: int) -> tuple[list[threading.Thread], dict]:
        out: dict[int, object] = {}

        def send(i: int) -> None:
            recs = {i % 3: [f"{i}-a".encode(), f"{i}-b".encode()], 5: [f"{i}-c".encode()]}
            try:
                out[i] = (recs, log.append_many("ds" if i % 2 else "other", recs))
            except redis.ConnectionError as e:
                out[i] = e

        threads = [threading.Thread(target=send, args=(i,)) for i in range(n)]
        return threads, out

    def _queued_behind_a_call(self, log: RedisStreamsLog, n: int, fail_second: bool = False
                              ) -> tuple[Callable[[], None], dict]:  # fmt: skip
        """A first append held in flight and ``n`` senders queued behind it; the returned
        ``run`` lets the first call go and waits for every sender."""
        go = self._held(log, fail_second)
        first = threading.Thread(target=log.append_many, args=("ds", {0: [b"first"]}))
        first.start()
        eventually(lambda: self._assert(log._group._busy), 30, 0.01)
        threads, out = self._senders(log, n)
        for t in threads:
            t.start()
        eventually(lambda: self._assert(len(log._group._queue) == n), 30, 0.01)

        def run() -> None:
            go.set()
            for t in [first, *threads]:
                t.join(60)

        return run, out

    def test_waiting_appends_go_in_one_call_each_at_its_offsets(self, log: RedisStreamsLog,
                                                                redis_url: str) -> None:  # fmt: skip
        r = redis.Redis.from_url(redis_url)
        run, out = self._queued_behind_a_call(log, 8)
        calls = r.info("commandstats")["cmdstat_evalsha"]["calls"]
        run()
        assert r.info("commandstats")["cmdstat_evalsha"]["calls"] == calls + 2
        seen: dict[tuple[str, int], list[int]] = {}
        for i, (recs, got) in out.items():  # type: ignore[misc]
            ds = "ds" if i % 2 else "other"
            assert set(got) == set(recs)
            for shard, offs in got.items():
                assert len(offs) == len(recs[shard])
                stored = log.read(ds, {shard: offs[0] - 1}, len(offs), 0)[shard]
                assert stored == list(zip(offs, recs[shard], strict=True))
                seen.setdefault((ds, shard), []).extend(offs)
        for (ds, shard), offs in seen.items():  # dense, each offset given once
            start = 2 if (ds, shard) == ("ds", 0) else 1
            assert sorted(offs) == list(range(start, start + len(offs)))
            assert log.end_offset(ds, shard) == start - 1 + len(offs)

    def test_a_failed_call_fails_every_caller_in_it(self, log: RedisStreamsLog) -> None:
        run, out = self._queued_behind_a_call(log, 4, fail_second=True)
        run()
        assert all(isinstance(v, redis.ConnectionError) for v in out.values()), out
        assert log.end_offset("ds", 5) == 0 and log.end_offset("other", 5) == 0
        assert log.append_many("ds", {0: [b"next"]}) == {0: [2]}  # the group goes on

    @staticmethod
    def _assert(cond: bool) -> None:
        assert cond


class TestSentAppends:
    """``send_appends``: the appends begun so far sent in one call whose reply the caller
    reads when the connection turns readable (the web server's ingestion loop)."""

    @pytest.fixture
    def log(self, redis_url: str) -> RedisStreamsLog:
        lg = RedisStreamsLog(redis_url)
        yield lg
        lg.close()

    def test_begun_appends_are_one_call_completed_by_finish(self, log: RedisStreamsLog,
                                                            redis_url: str) -> None:  # fmt: skip
        r = redis.Redis.from_url(redis_url)
        log.append_many("ds", {0: [b"old"]})
        waits = [log.append_begin("ds", {0: [b"a"], 1: [b"b"]}),
                 log.append_begin("ds", {0: [b"c", b"d"]})]  # fmt: skip
        calls = r.info("commandstats")["cmdstat_evalsha"]["calls"]
        sent = log.send_appends()
        assert sent is not None and sent.jobs == 2
        assert log.send_appends() is None  # a call in flight: the next ones queue behind it
        later = log.append_begin("ds", {1: [b"e"]})
        waiter: list[object] = []
        t = threading.Thread(target=lambda: waiter.append(waits[0]()))
        t.start()
        ready = select.select([sent.fileno()], [], [], 10)[0]
        assert ready and not waiter  # the reply is there, unread: the appends are not done
        sent.finish()
        t.join(10)
        assert waiter == [{0: [2], 1: [1]}] and waits[1]() == {0: [3, 4]}
        assert r.info("commandstats")["cmdstat_evalsha"]["calls"] == calls + 1
        assert later() == {1: [2]}  # not in the sent call: its wait made the next one
        assert log.read("ds", {0: 0, 1: 0}, 10, 0) == {
            0: [(1, b"old"), (2, b"a"), (3, b"c"), (4, b"d")],
            1: [(1, b"b"), (2, b"e")],
        }
        assert log.send_appends() is None  # nothing begun

    def test_the_sender_waiting_for_an_append_of_its_own_finishes_its_call(
        self, log: RedisStreamsLog
    ) -> None:
        """Only the thread that sent a call reads its reply; should it wait in the group
        commit meanwhile (the ingestion loop writing a batch at once), it finishes its call
        itself rather than wait for itself (it used to hang there), and another thread waits
        for it."""
        first = log.append_begin("ds", {0: [b"a"]})
        sent = log.send_appends()
        assert sent is not None and not sent.done
        other: list[object] = []
        t = threading.Thread(target=lambda: other.append(log.append_many("ds", {1: [b"x"]})))
        t.start()
        eventually(lambda: self._assert(len(log._group._queue) == 1), 10, 0.005)
        assert log.append_many("ds", {0: [b"b"]}) == {0: [2]}  # returns: no wait on itself
        assert sent.done and first() == {0: [1]}
        sent.finish()  # once: nothing more
        t.join(10)
        assert other == [{1: [1]}]
        assert log.read("ds", {0: 0, 1: 0}, 10, 0) == {0: [(1, b"a"), (2, b"b")], 1: [(1, b"x")]}

    @staticmethod
    def _assert(cond: bool) -> None:
        assert cond

    def test_a_lost_script_is_loaded_and_the_call_made_again(self, log: RedisStreamsLog,
                                                             redis_url: str) -> None:  # fmt: skip
        log.append_many("ds", {0: [b"a"]})
        redis.Redis.from_url(redis_url).script_flush()
        wait = log.append_begin("ds", {0: [b"b"]})
        sent = log.send_appends()
        assert sent is not None
        select.select([sent.fileno()], [], [], 10)
        sent.finish()
        assert wait() == {0: [2]} and log.read("ds", {0: 0}, 10, 0) == {0: [(1, b"a"), (2, b"b")]}

    def test_a_call_that_fails_fails_its_appends_and_the_log_goes_on(
            self, log: RedisStreamsLog, redis_url: str) -> None:  # fmt: skip
        r = redis.Redis.from_url(redis_url)
        r.set(_counter_key("bad", 0), b"not a number")  # the script's INCRBY errs
        waits = [log.append_begin("bad", {0: [b"a"]}), log.append_begin("bad", {0: [b"b"]})]
        sent = log.send_appends()
        assert sent is not None
        select.select([sent.fileno()], [], [], 10)
        sent.finish()  # does not raise: the appends' waits do
        for wait in waits:
            with pytest.raises(redis.ResponseError):
                wait()
        assert log.append_many("ds", {0: [b"c"]}) == {0: [1]}  # the connection serves on
        assert log.read("ds", {0: 0}, 10, 0) == {0: [(1, b"c")]}
