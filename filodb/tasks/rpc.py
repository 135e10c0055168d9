"""Leaf requests from the web tier to a node: one Redis list per node, msgpack messages.

The web tier ``RPUSH``es a request onto ``filodb:rpc:<node>`` (:func:`request_key`); the
node's :class:`~filodb.tasks.leaf.LeafServer` threads ``BLPOP`` it (no broker, no polling).
A request is a msgpack map::

    {"reply": "filodb:reply:<hex>", "dataset": str, "shards": [int, ...], "op": str,
     "params": {...}, "deadline_unix": float}

The node answers on the ``reply`` list (:mod:`filodb.tasks.leaf`): first one receipt
``{"received": true, "shards": [...]}``, then one :mod:`filodb.tasks.wire` message per shard.
A request whose ``deadline_unix`` (wall clock) has passed when it is popped is dropped: its
caller has answered with a timeout already. Each push extends the list's expiry to the
request's own (never shortens it), so the list of a node that died goes away by itself.
The same request travels down a direct connection when the node has one
(:mod:`filodb.tasks.direct`); the lists are the fallback.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack

from filodb.errors import BadInputError

RPC_PREFIX = "filodb:rpc:"


def request_key(node: str) -> str:
    """The list a node pops its leaf requests from."""
    return RPC_PREFIX + node


@dataclass(frozen=True)
class LeafRequest:
    reply: str
    dataset: str
    shards: tuple[int, ...]
    op: str
    params: dict[str, Any]
    deadline_unix: float

    def pack(self) -> bytes:
        return msgpack.packb({
            "reply": self.reply, "dataset": self.dataset, "shards": list(self.shards),
            "op": self.op, "params": self.params, "deadline_unix": self.deadline_unix,
        })  # fmt: skip

    @classmethod
    def unpack(cls, data: bytes) -> LeafRequest:
        """Inverse of :meth:`pack`; :class:`BadInputError` on anything malformed."""
        try:
            m = msgpack.unpackb(data, raw=False)
            return cls(str(m["reply"]), str(m["dataset"]), tuple(int(s) for s in m["shards"]),
                       str(m["op"]), dict(m["params"]), float(m["deadline_unix"]))  # fmt: skip
        except (ValueError, KeyError, TypeError, msgpack.ExtraData, msgpack.FormatError) as e:
            raise BadInputError(f"malformed leaf request: {e}") from e
