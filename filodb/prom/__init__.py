"""Prometheus wire formats: the protobuf messages (built once, :mod:`.proto`), remote write
decode and encode (:mod:`.remote_write`), remote read (:mod:`.remote_read`) and the text
exposition parser (:mod:`.text`). Depends on ``model``, ``encoding`` and ``errors`` only."""
