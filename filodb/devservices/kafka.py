"""Apache Kafka, single node in KRaft mode (broker and controller in one JVM), on loopback.

The jars come from Maven Central (``kafka_2.13`` and its runtime dependencies, plus the
reload4j binding so the server writes a log). :func:`start` writes ``server.properties`` under
the work directory, formats the storage with a fresh cluster id, launches ``kafka.Kafka``
detached, and waits until an AdminClient gets the cluster metadata.
"""

from __future__ import annotations

import base64
import shutil
import subprocess
import uuid
from pathlib import Path

from filodb.devservices import maven
from filodb.devservices.base import ServiceError, free_port, wait_until

VERSION = "3.9.2"
COORDS = [f"org.apache.kafka:kafka_2.13:{VERSION}", "org.slf4j:slf4j-reload4j:1.7.36"]
HEAP = ["-Xms256m", "-Xmx512m"]
START_TIMEOUT_S = 90.0

_PROPERTIES = """\
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{controller}
listeners=PLAINTEXT://127.0.0.1:{broker},CONTROLLER://127.0.0.1:{controller}
advertised.listeners=PLAINTEXT://127.0.0.1:{broker}
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs={data}
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
delete.topic.enable=true
log.segment.bytes=67108864
log.retention.hours=168
log.retention.check.interval.ms=60000
log.segment.delete.delay.ms=1000
file.delete.delay.ms=1000
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
message.max.bytes=16777216
replica.fetch.max.bytes=16777216
"""

_LOG4J = """\
log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka=INFO
log4j.logger.org.apache.kafka=INFO
log4j.logger.state.change.logger=WARN
log4j.logger.kafka.request.logger=WARN
"""


def _cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding (22 chars)."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):  # Kafka avoids ids that look like an option
            return cid


def _java(cp: str, log4j: Path, *args: str) -> list[str]:
    return ["java", *HEAP, f"-Dlog4j.configuration=file:{log4j}", "-cp", cp, *args]


def start(workdir: Path, cache: Path) -> tuple[subprocess.Popen, dict[str, str]]:
    """Format and launch a one-node KRaft cluster; returns the process and its settings."""
    cp = _classpath(cache)
    broker, controller = free_port(), free_port()
    while controller == broker:
        controller = free_port()
    props = workdir / "server.properties"
    props.write_text(_PROPERTIES.format(broker=broker, controller=controller,
                                        data=workdir / "data"))  # fmt: skip
    log4j = workdir / "log4j.properties"
    log4j.write_text(_LOG4J)
    fmt = subprocess.run(
        _java(cp, log4j, "kafka.tools.StorageTool", "format", "-t", _cluster_id(), "-c",
              str(props)),
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    if fmt.returncode != 0:
        raise ServiceError(
            f"kafka: storage format failed:\n{fmt.stdout[-2000:]}{fmt.stderr[-2000:]}"
        )
    return launch(workdir, cache)


def launch(workdir: Path, cache: Path) -> tuple[subprocess.Popen, dict[str, str]]:
    """Run the broker of a work directory :func:`start` formatted (again, after a kill: same
    ports, same data) and wait until it answers."""
    cp = _classpath(cache)
    props = workdir / "server.properties"
    broker = next(line.rsplit(":", 1)[1] for line in props.read_text().splitlines()
                  if line.startswith("advertised.listeners="))  # fmt: skip
    log = workdir / "kafka.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            _java(cp, workdir / "log4j.properties", "-Dkafka.logs.dir=" + str(workdir),
                  "kafka.Kafka", str(props)),
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True, cwd=workdir,
        )  # fmt: skip
    env = {"FILODB_KAFKA_BOOTSTRAP": f"127.0.0.1:{broker}"}
    try:
        wait_until(lambda: answers(env, timeout=2.0), START_TIMEOUT_S, "kafka", log, proc)
    except ServiceError:
        proc.kill()
        proc.wait()
        raise
    return proc, env


def _classpath(cache: Path) -> str:
    if shutil.which("java") is None:
        raise ServiceError("kafka: java is not on PATH (Debian package 'openjdk-17-jre-headless')")
    try:
        jars = maven.classpath("kafka", COORDS, cache)
    except maven.MavenError as e:
        raise ServiceError(f"kafka: {e}") from e
    return ":".join(str(j) for j in jars)


def answers(env: dict[str, str], timeout: float = 1.0) -> bool:
    """True when the broker at ``FILODB_KAFKA_BOOTSTRAP`` returns cluster metadata."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": env["FILODB_KAFKA_BOOTSTRAP"],
                         "socket.connection.setup.timeout.ms": max(1000, int(timeout * 1000)),
                         "log_level": 0})  # fmt: skip
    try:
        return bool(admin.list_topics(timeout=timeout).brokers)
    except Exception:  # noqa: BLE001 - KafkaException: not answering
        return False
