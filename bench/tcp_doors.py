"""TCP door benchmark: lines stored per second through the gateway's Influx and Graphite doors.

Prints one JSON object per line: ``{"metric", "value", "unit", ...context}``.

    python bench/tcp_doors.py

Starts a throw-away redis-server and an in-process :class:`~filodb.gateway.tcp.TcpGateway`
on a 4-shard dataset, then for each door sends the lines over one connection (200 k lines) and
over 50 at once (4 k lines each), and times until the gateway has written every line to the
log. Lines: ``cpu,host=h<i>,dc=eu usage_user=...,usage_idle=...i <ns>`` (Influx) and
``servers.host<i>.cpu;dc=eu;c=<conn> <v> <s>`` (Graphite), over 1 k hosts. The end-to-end
comparison with Prometheus and VictoriaMetrics is ``bench/ingest.py``.
"""

from __future__ import annotations

import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from store import emit  # noqa: E402

from filodb.gateway.router import IngestRouter  # noqa: E402
from filodb.gateway.tcp import TcpGateway  # noqa: E402
from filodb.ingest.redis_streams import RedisStreamsLog  # noqa: E402
from filodb.redisproc import free_port, start_redis  # noqa: E402
from filodb.shards.redis_map import ShardMapStore  # noqa: E402

PLAN = ((1, 200_000), (50, 4_000))  # (connections, lines per connection)


def bodies(door: str, conns: int, lines: int) -> list[bytes]:
    """One body per connection; every line a sample the door accepts."""
    if door == "influx":
        t_ns = 1_700_000_000_000_000_000
        line = b"cpu,host=h%d,dc=eu usage_user=%d.5,usage_idle=%di %d\n"
        return [b"".join(line % (i % 1000, i, i, t_ns + (c * lines + i) * 10**9) for i in range(lines))
                for c in range(conns)]  # fmt: skip
    line = b"servers.host%d.cpu;dc=eu;c=%d %d.5 %d\n"
    return [
        b"".join(line % (i % 1000, c, i, 1_700_000_000 + i) for i in range(lines))
        for c in range(conns)
    ]


def run_door(gw: TcpGateway, door: str, conns: int, lines: int) -> None:
    payloads = bodies(door, conns, lines)
    before = gw.stats.snapshot()[door]["lines_accepted"]

    def send(body: bytes) -> None:
        with socket.create_connection(("127.0.0.1", gw.ports[door])) as s:
            s.sendall(body)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=send, args=(b,)) for b in payloads]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    while gw.stats.snapshot()[door]["lines_accepted"] - before < conns * lines:
        time.sleep(0.005)  # polling the gateway's counter is the measurement's end
    dt = time.perf_counter() - t0
    emit("tcp_door_lines_stored_per_s", conns * lines / dt, "lines/s", door=door, connections=conns,
         lines=conns * lines)  # fmt: skip


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        rp = start_redis(tmp)
        try:
            ShardMapStore(rp.url).create_dataset("prometheus", 4, 1)
            router = IngestRouter(ShardMapStore(rp.url), RedisStreamsLog(rp.url))
            gw = TcpGateway(router, "prometheus", "127.0.0.1",
                            {"influx": free_port(), "graphite": free_port()}).start()  # fmt: skip
            try:
                for door in ("influx", "graphite"):
                    for conns, lines in PLAN:
                        run_door(gw, door, conns, lines)
            finally:
                gw.stop()
        finally:
            rp.stop()


if __name__ == "__main__":
    main()
