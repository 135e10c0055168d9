"""A process's own Prometheus exposition server (``prometheus_client``'s HTTP server) over a
registry of its collectors; used by the worker nodes and the TCP gateway."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.registry import Collector


class MetricsServer:
    """Serves ``collectors`` at ``host:port`` (0: a free port); ``port`` is the port it bound."""

    def __init__(self, collectors: Iterable[Collector], host: str, port: int) -> None:
        registry = CollectorRegistry()
        for c in collectors:
            registry.register(c)
        self.registry = registry  # more collectors may join later
        self.server, self.thread = start_http_server(port, addr=host, registry=registry)
        self.port: int = self.server.server_port

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
