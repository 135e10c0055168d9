"""What a worker node is: its runtime, shard ingesters, the log applier and flushes."""
