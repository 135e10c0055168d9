"""FiloDB in Python: a distributed, Prometheus-compatible, in-memory time-series database."""

__version__ = "0.1.0"
