"""Column store and meta store: where flushed chunks, part keys and checkpoints live.

``base`` has the protocols and records; ``sqlite`` the embedded default backend.
"""

from __future__ import annotations

from filodb.store.base import ChunkSet as ChunkSet
from filodb.store.base import ColumnStore as ColumnStore
from filodb.store.base import MetaStore as MetaStore
from filodb.store.base import PartKeyRecord as PartKeyRecord
from filodb.store.base import open_store as open_store
