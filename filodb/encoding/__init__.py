"""Chunk codecs (timestamps, doubles, histogram buckets). Empty until the storage engine
lands (issue "Storage engine"): the walking skeleton keeps raw numpy buffers in the memstore."""
