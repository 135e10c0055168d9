"""``ColumnStore`` and ``MetaStore`` protocols with SQLite and Cassandra backends. Empty until
the storage engine lands: the walking skeleton's durable copy is the ingestion log."""
