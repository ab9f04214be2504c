"""A throwaway Apache Kafka broker for the tests: KRaft mode, one node, on loopback.

The broker is Apache Kafka's own jars from Maven Central, run on the local
Java (17 or later): no ZooKeeper, no container. Fetch the jars once, before
the tests (the tests themselves reach nothing but loopback)::

    python -m tests.vendor.kafka fetch

which runs Maven (``mvn dependency:copy-dependencies``) into
``$SWITCHBOARD_KAFKA_LIBS`` (default ``~/.cache/switchboard/kafka-<version>``).
``KafkaBroker`` formats a storage directory in a temporary folder, starts
``kafka.Kafka`` on two free loopback ports (broker and controller), waits
until it takes connections, and deletes everything on ``stop``.
"""

from __future__ import annotations

import base64
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import BinaryIO, Final

KAFKA_VERSION: Final = "3.9.1"
FETCH_HINT: Final = "python -m tests.vendor.kafka fetch  (needs mvn and Java 17)"
_POM: Final = f"""<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>switchboard.tests</groupId><artifactId>kafka-broker</artifactId><version>1</version>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId>
      <version>{KAFKA_VERSION}</version></dependency>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-simple</artifactId>
      <version>1.7.36</version></dependency>
  </dependencies>
</project>
"""


def libs_dir() -> Path:
    explicit = os.environ.get("SWITCHBOARD_KAFKA_LIBS")
    if explicit:
        return Path(explicit)
    return Path.home() / ".cache" / "switchboard" / f"kafka-{KAFKA_VERSION}"


def find_libs() -> Path | None:
    """The folder of the broker's jars, if fetched, and Java is there to run them."""
    folder = libs_dir()
    if shutil.which("java") is None or not any(folder.glob("kafka_2.13-*.jar")):
        return None
    return folder


def fetch() -> Path:
    """Download the broker's jars with Maven (run before the tests, not by them); cached
    by version, so a second fetch does nothing."""
    folder = libs_dir()
    if any(folder.glob("kafka_2.13-*.jar")):
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as work:
        (Path(work) / "pom.xml").write_text(_POM)
        subprocess.run(
            ["mvn", "-q", "-B", "dependency:copy-dependencies", f"-DoutputDirectory={folder}"],
            cwd=work,
            check=True,
            timeout=900,
        )
    return folder


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class KafkaBroker:
    """One KRaft broker+controller on 127.0.0.1; ``bootstrap_servers`` once started."""

    def __init__(self, libs: Path) -> None:
        self.libs = libs
        self.port = _free_port()
        self.controller_port = _free_port()
        self._directory = Path(tempfile.mkdtemp(prefix="switchboard-kafka-"))
        self._process: subprocess.Popen[bytes] | None = None
        self._log: BinaryIO | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 90) -> None:
        config = self._directory / "server.properties"
        config.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.voters=1@127.0.0.1:{self.controller_port}",
                    f"listeners=PLAINTEXT://127.0.0.1:{self.port},"
                    f"CONTROLLER://127.0.0.1:{self.controller_port}",
                    f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}",
                    "controller.listener.names=CONTROLLER",
                    "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                    f"log.dirs={self._directory / 'data'}",
                    "offsets.topic.replication.factor=1",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "group.initial.rebalance.delay.ms=0",
                    "num.partitions=1",
                    "auto.create.topics.enable=true",
                ]
            )
            + "\n"
        )
        classpath = f"{self.libs}/*"
        subprocess.run(
            [
                "java",
                "-cp",
                classpath,
                "kafka.tools.StorageTool",
                "format",
                "-t",
                _cluster_id(),
                "-c",
                str(config),
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
        self._log = (self._directory / "broker.log").open("wb")
        self._process = subprocess.Popen(
            ["java", "-Xmx256m", "-Xss1m", "-cp", classpath, "kafka.Kafka", str(config)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"Kafka exited: {self.log_tail()}")
            if "Transition from STARTING to STARTED" in self.log_tail(200_000):
                return
            time.sleep(0.2)
        raise TimeoutError(f"Kafka did not start within {timeout}s: {self.log_tail()}")

    def log_tail(self, size: int = 3000) -> str:
        path = self._directory / "broker.log"
        return path.read_text(errors="replace")[-size:] if path.exists() else ""

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=10)
            self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None
        shutil.rmtree(self._directory, ignore_errors=True)


def _cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, base64url without padding.

    Never one that starts with "-": the storage tool would read it as an
    option (Kafka's own Uuid.randomUuid draws again for the same reason; one
    CI run in 64 failed on it).
    """
    while True:
        candidate = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not candidate.startswith("-"):
            return candidate


if __name__ == "__main__":
    if sys.argv[1:] != ["fetch"]:
        sys.exit(f"usage: {FETCH_HINT}")
    print(f"Kafka {KAFKA_VERSION} jars in {fetch()}")
