"""FiloDB in Python: a distributed, Prometheus-compatible, in-memory time-series database."""

from filodb.numbacache import configure as _configure_numba_cache

__version__ = "0.1.0"

_configure_numba_cache()
