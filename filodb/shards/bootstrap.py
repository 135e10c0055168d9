"""What ``filodb up``'s supervisor writes to the shard map, run in a short-lived child process.

The supervisor only starts and watches processes; it writes the shard map twice in its life:
when it creates the default dataset, and when a worker it started dies (that node's shards go
Down and its leases are dropped). Both need redis-py and the model (~25 MB resident, for the
life of the process that imports them), so the supervisor runs them here instead, one
``python -m filodb.shards.bootstrap`` each time (a few hundred ms), and keeps its own memory
to the interpreter's (docs/architecture.md, memory per active series).

    python -m filodb.shards.bootstrap create '<json: url, dataset, shards, spread, downsample,
                                               retention>'
    python -m filodb.shards.bootstrap node-down <redis url> <node>

Exit 0 when done; 2 with the reason on stderr for bad input (the dataset exists with another
shard count, bad downsampling levels); 1 for anything else (Redis does not answer).
"""

from __future__ import annotations

import sys

import orjson

from filodb.errors import BadInputError, FiloError


def create(spec: dict) -> None:
    """Create the default dataset (and its downsampled ones) unless it exists alike."""
    from filodb.shards.redis_map import ShardMapStore

    ShardMapStore(spec["url"]).create_dataset(
        spec["dataset"], int(spec["shards"]), int(spec["spread"]),
        downsample=spec["downsample"], default_retention_s=float(spec["retention"]),
    )  # fmt: skip


def node_down(url: str, node: str) -> None:
    """A worker the supervisor started died: its heartbeat and leases go, and its live shards
    are Down now rather than when the heartbeat would have expired."""
    from filodb.shards.nodes import NodeRegistry
    from filodb.shards.redis_map import ShardMapStore
    from filodb.shards.state import LIVE_STATUSES, ShardStatus

    store = ShardMapStore(url)
    NodeRegistry(url).expire(node)
    store.release_all(node)
    for ds in store.datasets():
        for st in store.shard_states(ds):
            if st.node == node and st.status in LIVE_STATUSES:
                store.move(st, ShardStatus.DOWN)


def main(argv: list[str]) -> int:
    try:
        if argv[:1] == ["create"] and len(argv) == 2:
            create(orjson.loads(argv[1]))
        elif argv[:1] == ["node-down"] and len(argv) == 3:
            node_down(argv[1], argv[2])
        else:
            print(f"usage: python -m filodb.shards.bootstrap create JSON | node-down URL NODE; "
                  f"not {argv!r}", file=sys.stderr)  # fmt: skip
            return 2
    except BadInputError as e:
        print(e, file=sys.stderr)
        return 2
    except (FiloError, OSError, ValueError) as e:
        print(e, file=sys.stderr)
        return 1
    except Exception as e:  # noqa: BLE001 - redis-py's errors: the supervisor reports the reason
        print(str(e) or type(e).__name__, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
