"""The metadata store against a real Redis, checked through its keys (the layout that data
written before it existed is kept in) as well as through its own reads."""

from __future__ import annotations

import orjson
import redis

from filodb.shards.metadata import MetadataStore, meta_key

ENTRIES = [
    {"metric": "req_total", "type": "counter", "help": "Requests.", "unit": ""},
    {"metric": "lat_seconds", "type": "histogram", "help": "Latency.", "unit": "seconds"},
    {"metric": "", "type": "gauge", "help": "no name: skipped", "unit": ""},
    {"metric": "up", "help": "no type"},
]


def test_put_writes_one_hash_field_per_family(redis_url: str) -> None:
    assert MetadataStore(redis_url).put("ds", ENTRIES) == 3
    raw = redis.Redis.from_url(redis_url).hgetall(meta_key("ds"))
    assert meta_key("ds") == "filodb:meta:ds"
    assert {k.decode(): orjson.loads(v) for k, v in raw.items()} == {
        "req_total": {"type": "counter", "help": "Requests.", "unit": ""},
        "lat_seconds": {"type": "histogram", "help": "Latency.", "unit": "seconds"},
        "up": {"type": "unknown", "help": "no type", "unit": ""},
    }


def test_get_reads_what_was_written_before(redis_url: str) -> None:
    r = redis.Redis.from_url(redis_url)
    r.hset(meta_key("ds"), mapping={"b": orjson.dumps({"type": "gauge", "help": "B", "unit": ""}),
                                    "a": orjson.dumps({"type": "counter", "help": "A", "unit": ""})})  # fmt: skip
    store = MetadataStore(r)
    assert list(store.get("ds")) == ["a", "b"]
    assert store.get("ds", "b") == {"b": {"type": "gauge", "help": "B", "unit": ""}}
    assert store.get("ds", "nosuch") == {} and store.get("other") == {}
    assert list(store.get("ds", limit=1)) == ["a"]
    assert list(store.get("ds", limit=0)) == list(store.get("ds", limit=-1)) == ["a", "b"]


def test_last_write_of_a_family_wins(redis_url: str) -> None:
    store = MetadataStore(redis_url)
    store.put("ds", ENTRIES[:1])
    store.put("ds", [{"metric": "req_total", "type": "counter", "help": "Now this.", "unit": ""}])
    assert store.get("ds")["req_total"]["help"] == "Now this."
    assert store.put("ds", []) == 0
