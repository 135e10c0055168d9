"""Apache Cassandra 5.0 as a development service: one node on loopback, jars from Maven Central.

The node runs ``org.apache.cassandra.service.CassandraDaemon`` straight from the class path
(no tarball, no ``bin/cassandra`` script), with a generated ``cassandra.yaml`` and
``logback.xml`` in its work directory, a 1 GiB heap and the Java 17 flags of Cassandra's own
``conf/jvm17-server.options``. JMX is off (nothing here uses nodetool). See
``docs/cassandra.md`` for the figures (start time, memory).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from filodb.devservices import maven
from filodb.devservices.base import ServiceError, free_port, wait_until

VERSION = "5.0.9"
COORDS = [f"org.apache.cassandra:cassandra-all:{VERSION}"]
START_TIMEOUT_S = 180.0

# Key names as in Cassandra 5.0's conf/cassandra.yaml (the new "_size"/"_period" spellings).
_YAML = """\
cluster_name: filodb-dev
num_tokens: 1
initial_token: 0
partitioner: org.apache.cassandra.dht.Murmur3Partitioner
endpoint_snitch: SimpleSnitch
seed_provider:
  - class_name: org.apache.cassandra.locator.SimpleSeedProvider
    parameters:
      - seeds: "127.0.0.1:{storage_port}"
listen_address: 127.0.0.1
rpc_address: 127.0.0.1
storage_port: {storage_port}
ssl_storage_port: {ssl_storage_port}
native_transport_port: {native_port}
start_native_transport: true
authenticator: AllowAllAuthenticator
authorizer: AllowAllAuthorizer
role_manager: CassandraRoleManager
network_authorizer: AllowAllNetworkAuthorizer
data_file_directories:
  - {workdir}/data
commitlog_directory: {workdir}/commitlog
saved_caches_directory: {workdir}/saved_caches
hints_directory: {workdir}/hints
cdc_raw_directory: {workdir}/cdc_raw
commitlog_sync: periodic
commitlog_sync_period: 10000ms
commitlog_segment_size: 32MiB
disk_failure_policy: stop
commit_failure_policy: stop
# A dev node: small caches and memtables, no snapshot on TRUNCATE/DROP (tests truncate a lot).
auto_snapshot: false
key_cache_size: 16MiB
counter_cache_size: 0MiB
memtable_heap_space: 128MiB
memtable_offheap_space: 128MiB
concurrent_reads: 16
concurrent_writes: 16
concurrent_counter_writes: 4
concurrent_materialized_view_writes: 4
concurrent_compactors: 1
dynamic_snitch: false
hinted_handoff_enabled: false
materialized_views_enabled: false
sasi_indexes_enabled: false
# One node: a write timeout means overload, not a lost replica; give slow CI boxes room.
read_request_timeout: 10000ms
range_request_timeout: 20000ms
write_request_timeout: 10000ms
cas_contention_timeout: 5000ms
truncate_request_timeout: 60000ms
request_timeout: 20000ms
"""

_LOGBACK = """\
<configuration scan="false">
  <appender name="FILE" class="ch.qos.logback.core.FileAppender">
    <file>{workdir}/system.log</file>
    <encoder><pattern>%-5level [%thread] %date{{ISO8601}} %F:%L - %msg%n</pattern></encoder>
  </appender>
  <root level="INFO"><appender-ref ref="FILE"/></root>
  <logger name="org.apache.cassandra" level="INFO"/>
  <logger name="com.datastax" level="WARN"/>
</configuration>
"""

# From conf/jvm17-server.options and conf/jvm-server.options (5.0): the module exports and
# opens Cassandra needs on Java 17, G1, and the Netty and IPv4 settings. Left out on purpose:
# -XX:+AlwaysPreTouch (would make the whole heap resident) and the jamm agent (jamm 0.4 measures
# objects without it on Java 17).
_JVM_FLAGS = [
    "-Xms512m", "-Xmx1g", "-Xss512k",
    "-XX:+UseG1GC", "-XX:+ParallelRefProcEnabled", "-XX:MaxTenuringThreshold=1",
    "-XX:G1RSetUpdatingPauseTimePercent=5", "-XX:MaxGCPauseMillis=300",
    "-XX:InitiatingHeapOccupancyPercent=70",
    "-XX:+UseThreadPriorities", "-XX:+ExitOnOutOfMemoryError", "-XX:+PerfDisableSharedMem",
    "-XX:+UseTLAB", "-XX:+ResizeTLAB",
    "-ea", "-da:net.openhft...",
    "-Djava.net.preferIPv4Stack=true",
    "-Djdk.attach.allowAttachSelf=true",
    "-Dio.netty.tryReflectionSetAccessible=true",
    "-Dio.netty.allocator.useCacheForAllThreads=true",
    "-Dio.netty.allocator.maxOrder=11",
    "--add-exports", "java.base/jdk.internal.misc=ALL-UNNAMED",
    "--add-exports", "java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED",
    "--add-exports", "java.rmi/sun.rmi.registry=ALL-UNNAMED",
    "--add-exports", "java.rmi/sun.rmi.server=ALL-UNNAMED",
    "--add-exports", "java.sql/java.sql=ALL-UNNAMED",
    "--add-exports", "java.base/java.lang.ref=ALL-UNNAMED",
    "--add-exports", "jdk.unsupported/sun.misc=ALL-UNNAMED",
    "--add-exports", "jdk.compiler/com.sun.tools.javac.file=ALL-UNNAMED",
    "--add-exports", "jdk.attach/sun.tools.attach=ALL-UNNAMED",
    "--add-opens", "java.base/java.lang.module=ALL-UNNAMED",
    "--add-opens", "java.base/jdk.internal.loader=ALL-UNNAMED",
    "--add-opens", "java.base/jdk.internal.ref=ALL-UNNAMED",
    "--add-opens", "java.base/jdk.internal.reflect=ALL-UNNAMED",
    "--add-opens", "java.base/jdk.internal.math=ALL-UNNAMED",
    "--add-opens", "java.base/jdk.internal.module=ALL-UNNAMED",
    "--add-opens", "java.base/jdk.internal.util.jar=ALL-UNNAMED",
    "--add-opens", "jdk.management/com.sun.management.internal=ALL-UNNAMED",
    "--add-opens", "java.base/sun.nio.ch=ALL-UNNAMED",
    "--add-opens", "java.base/java.io=ALL-UNNAMED",
    "--add-opens", "java.base/java.lang.reflect=ALL-UNNAMED",
    "--add-opens", "jdk.compiler/com.sun.tools.javac=ALL-UNNAMED",
    "--add-opens", "java.base/java.lang=ALL-UNNAMED",
    "--add-opens", "java.base/java.util=ALL-UNNAMED",
]  # fmt: skip


def command(workdir: Path, jars: list[Path]) -> list[str]:
    """The ``java`` command line that runs the node configured in ``workdir``."""
    java = shutil.which("java")
    if java is None:
        raise ServiceError("java is not on PATH (Cassandra 5.0 needs Java 11 or 17)")
    return [
        java, *_JVM_FLAGS,
        f"-Dcassandra.config=file://{workdir}/cassandra.yaml",
        f"-Dcassandra.storagedir={workdir}",
        f"-Dlogback.configurationFile={workdir}/logback.xml",
        f"-Dcassandra.logdir={workdir}",
        "-Dcassandra-foreground=yes",
        "-Dcassandra.skip_wait_for_gossip_to_settle=0",
        "-Dcassandra.ring_delay_ms=1000",
        "-Dcassandra.superuser_setup_delay_ms=0",
        "-cp", ":".join(str(j) for j in jars),
        "org.apache.cassandra.service.CassandraDaemon",
    ]  # fmt: skip


def start(workdir: Path, cache: Path) -> tuple[subprocess.Popen, dict[str, str]]:
    """Write the node's configuration into ``workdir``, start it detached, wait until CQL answers."""
    try:
        jars = maven.classpath("cassandra", COORDS, cache)
    except maven.MavenError as e:
        raise ServiceError(f"cassandra {VERSION}: {e}") from e
    native_port, storage_port, ssl_port = free_port(), free_port(), free_port()
    (workdir / "cassandra.yaml").write_text(
        _YAML.format(workdir=workdir, storage_port=storage_port, ssl_storage_port=ssl_port,
                     native_port=native_port)
    )  # fmt: skip
    (workdir / "logback.xml").write_text(_LOGBACK.format(workdir=workdir))
    out = workdir / "cassandra.out"
    with open(out, "wb") as f:
        proc = subprocess.Popen(
            command(workdir, jars), cwd=workdir, stdin=subprocess.DEVNULL, stdout=f,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    env = {"FILODB_CASSANDRA_HOSTS": "127.0.0.1", "FILODB_CASSANDRA_PORT": str(native_port)}
    try:
        wait_until(lambda: _query_version(env, timeout=5.0) is not None, START_TIMEOUT_S,
                   f"cassandra {VERSION} on 127.0.0.1:{native_port}", workdir / "system.log",
                   proc)  # fmt: skip
    except ServiceError as e:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        raise ServiceError(f"{e}\n--- cassandra.out ---\n{_tail(out)}") from None
    return proc, env


def answers(env: dict[str, str]) -> bool:
    """True when the node of ``env`` answers a CQL query within a few seconds."""
    try:
        return _query_version(env, timeout=3.0) is not None
    except Exception:  # noqa: BLE001 - any failure means "not answering"
        return False


def _query_version(env: dict[str, str], timeout: float) -> str | None:
    """``release_version`` from ``system.local`` through cassandra-driver, or an exception."""
    from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
    from cassandra.policies import RoundRobinPolicy

    profile = ExecutionProfile(load_balancing_policy=RoundRobinPolicy(), request_timeout=timeout)
    cluster = Cluster(
        env["FILODB_CASSANDRA_HOSTS"].split(","), port=int(env["FILODB_CASSANDRA_PORT"]),
        connect_timeout=timeout, control_connection_timeout=timeout, protocol_version=5,
        execution_profiles={EXEC_PROFILE_DEFAULT: profile},
    )  # fmt: skip
    try:
        session = cluster.connect()
        row = session.execute("SELECT release_version FROM system.local", timeout=timeout).one()
        return row.release_version if row else None
    finally:
        cluster.shutdown()


def _tail(path: Path, n: int = 30) -> str:
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
