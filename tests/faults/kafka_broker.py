"""A throwaway single-node Kafka broker (KRaft) for fault tests: kill it, stop it, restart it.

It runs beside the shared broker of `scripts/services` (127.0.0.1:9092/9093), from the same
jars (`.services/kafka/lib`, fetched by `scripts/services start`) and the same configuration,
on two free ports of its own, with its data and logs in a directory the test owns::

    broker = KafkaBroker(tmp_path)
    broker.start()            # formats the data dir once, waits until the broker answers
    broker.bootstrap          # "127.0.0.1:PORT"
    broker.kill()             # SIGKILL: a crash
    broker.restart()          # same ports, same data, no re-format
    broker.stop()             # SIGTERM: a clean, controlled shutdown
    broker.log_path           # what the broker wrote, for failure messages (see log_tail())

With ``sasl_users`` it also listens for SASL/PLAIN clients on a third free port (the PLAINTEXT
listener stays, for the controller and the readiness check)::

    broker = KafkaBroker(tmp_path, sasl_users={"insiders": "s3cret"})
    broker.sasl_bootstrap     # "127.0.0.1:PORT" of the SASL_PLAINTEXT listener
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path
from types import TracebackType

from kafka import KafkaAdminClient
from kafka.errors import KafkaError

REPO = Path(__file__).resolve().parents[2]
KAFKA_LIB = REPO / ".services" / "kafka" / "lib"
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0

# What `scripts/services` writes (write_kafka_config), with the ports and paths filled in.
LOG4J2 = """\
status = warn
name = insiders-kafka-fault
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
logger.kafka_request.name = kafka.request.logger
logger.kafka_request.level = WARN
logger.state_change.name = state.change.logger
logger.state_change.level = WARN
"""

SERVER_PROPERTIES = """\
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:{controller}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}{sasl_l}
advertised.listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}{sasl_l}
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT{sasl_map}
log.dirs={data}
num.partitions=1
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
message.max.bytes=2097152
replica.fetch.max.bytes=2097152
# Not in scripts/services: after a SIGKILL the restarted broker cannot register again until
# the controller expires its old session (default 9 s); a short one makes restarts quick.
broker.session.timeout.ms=3000
broker.heartbeat.interval.ms=500
"""

# Appended with ``sasl_users``: PLAIN on the SASL_PLAINTEXT listener, users from the JAAS line
# (no authorizer, so an authenticated user may do anything).
SASL_PROPERTIES = """\
sasl.enabled.mechanisms=PLAIN
listener.name.sasl_plaintext.sasl.enabled.mechanisms=PLAIN
listener.name.sasl_plaintext.plain.sasl.jaas.config={jaas}
"""


def plain_jaas(users: dict[str, str]) -> str:
    """The broker's PlainLoginModule line: ``user_<name>="<password>"`` for each user.

    >>> plain_jaas({"insiders": "s3cret"})  # doctest: +NORMALIZE_WHITESPACE
    'org.apache.kafka.common.security.plain.PlainLoginModule required
     username="insiders" password="s3cret" user_insiders="s3cret";'
    """
    if not users:
        raise ValueError("sasl_users needs at least one user")
    for name, password in users.items():
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
            raise ValueError(f"SASL user name {name!r}: use letters, digits, '_', '.', '-'")
        if re.search(r'["\\\s;]', password) or not password:
            raise ValueError(f"SASL password of {name!r}: no quotes, backslashes, spaces or ';'")
    first, password = next(iter(users.items()))
    entries = " ".join(f'user_{name}="{secret}"' for name, secret in users.items())
    return (
        "org.apache.kafka.common.security.plain.PlainLoginModule required "
        f'username="{first}" password="{password}" {entries};'
    )


class BrokerError(RuntimeError):
    """The throwaway broker could not be started or stopped; the message ends with its log."""


def java_major(java: str) -> int | None:
    """Major version of a java binary ("1.8.0_x" -> 8, "17.0.15" -> 17); None if unusable."""
    try:
        out = subprocess.run(
            [java, "-version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    found = re.search(r'version "([^"]*)"', out.stderr + out.stdout)
    if not found:
        return None
    version = found.group(1)
    if version.startswith("1."):
        version = version[2:]
    head = re.split(r"[.+-]", version)[0]
    return int(head) if head.isdigit() else None


def find_java() -> str:
    """The JVM `scripts/services` (find_java) would choose.

    An explicit JAVA_HOME wins; otherwise a Java 17 (the broker's tested runtime), then
    any default java that is 17+.
    """
    home = os.environ.get("JAVA_HOME")
    if home:
        candidate = str(Path(home) / "bin" / "java")
        major = java_major(candidate)
        if major is not None and major >= 17:
            return candidate
        raise BrokerError(f"JAVA_HOME={home} is not a Java 17+ install")
    default = shutil.which("java")
    if default and java_major(default) == 17:
        return default
    jvm = Path("/usr/lib/jvm")
    for pattern in ("java-17-*/bin/java", "*-17-*/bin/java"):
        for found in sorted(jvm.glob(pattern)):
            if os.access(found, os.X_OK) and java_major(str(found)) == 17:
                return str(found)
    if default:
        major = java_major(default)
        if major is not None and major >= 17:
            return default
    raise BrokerError("java 17+ not found; install openjdk-17-jre-headless")


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports free on 127.0.0.1 (held together while chosen)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


def cluster_id() -> str:
    """A Kafka cluster id (what `StorageTool random-uuid` prints), without starting a JVM.

    >>> len(cluster_id())
    22
    """
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not text.startswith("-"):  # Kafka's Uuid.randomUuid() avoids these too
            return text


def port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


class KafkaBroker:
    """One single-node KRaft broker (broker and controller in one JVM) in ``workdir``."""

    def __init__(
        self, workdir: Path, lib: Path = KAFKA_LIB, sasl_users: dict[str, str] | None = None
    ) -> None:
        self.workdir = Path(workdir)
        self.lib = lib
        self.data_dir = self.workdir / "data"
        self.log_dir = self.workdir / "logs"
        self.log_path = self.log_dir / "kafka.log"
        self.config_path = self.workdir / "server.properties"
        self.log4j_path = self.workdir / "log4j2.properties"
        self.sasl_users = dict(sasl_users or {})
        self._sasl_jaas = plain_jaas(self.sasl_users) if self.sasl_users else ""
        ports = free_ports(3 if self.sasl_users else 2)
        self.port, self.controller_port = ports[:2]
        self.sasl_port: int | None = ports[2] if self.sasl_users else None
        self.process: subprocess.Popen[bytes] | None = None
        self.formatted = False
        self.format_seconds = 0.0
        self.startup_seconds: list[float] = []  # one entry per start, formatting included
        self._java: str | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def sasl_bootstrap(self) -> str:
        """The SASL_PLAINTEXT listener (only with ``sasl_users``)."""
        if self.sasl_port is None:
            raise BrokerError("this broker has no SASL listener; pass sasl_users")
        return f"127.0.0.1:{self.sasl_port}"

    def _data_ports(self) -> list[int]:
        """The listeners clients use: PLAINTEXT, and SASL_PLAINTEXT if there is one."""
        return [self.port] + ([self.sasl_port] if self.sasl_port is not None else [])

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return f"(no log at {self.log_path})"
        return "\n".join(text.splitlines()[-lines:])

    def _fail(self, message: str) -> BrokerError:
        return BrokerError(f"{message} (log: {self.log_path}); last lines:\n{self.log_tail()}")

    def _jvm_options(self) -> list[str]:
        return [
            f"-Dlog4j2.configurationFile={self.log4j_path}",
            f"-Dkafka.logs.dir={self.log_dir}",
            "-cp",
            f"{self.lib}/*",
        ]

    def _prepare(self) -> str:
        if not (self.lib / "kafka_2.13-4.1.1.jar").exists():
            raise BrokerError(
                f"no Kafka jars in {self.lib}; run `scripts/services start` once to fetch them"
            )
        if self._java is None:
            self._java = find_java()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.log4j_path.write_text(LOG4J2)
        sasl_listener = sasl_map = sasl = ""
        if self.sasl_port is not None:
            sasl_listener = f",SASL_PLAINTEXT://127.0.0.1:{self.sasl_port}"
            sasl_map = ",SASL_PLAINTEXT:SASL_PLAINTEXT"
            sasl = SASL_PROPERTIES.format(jaas=self._sasl_jaas)
        self.config_path.write_text(
            SERVER_PROPERTIES.format(
                port=self.port,
                controller=self.controller_port,
                data=self.data_dir,
                sasl_l=sasl_listener,
                sasl_map=sasl_map,
            )
            + sasl
        )
        return self._java

    def _format(self, java: str) -> None:
        # Tiered compilation stopped at C1: a short-lived tool starts faster.
        cmd = [
            java,
            "-XX:TieredStopAtLevel=1",
            "-Xshare:auto",
            *self._jvm_options(),
            "kafka.tools.StorageTool",
            "format",
            "--standalone",
            "-t",
            cluster_id(),
            "-c",
            str(self.config_path),
        ]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        if out.returncode != 0:
            raise BrokerError(
                f"formatting {self.data_dir} failed:\n{(out.stdout + out.stderr)[-3000:]}"
            )
        self.formatted = True

    def start(self, timeout: float = READY_TIMEOUT) -> float:
        """Format the data dir (first start only), start the JVM and wait until it answers.

        Returns the seconds it took.
        """
        if self.running():
            raise BrokerError(f"the broker is already running (pid {self.pid})")
        started = time.perf_counter()
        java = self._prepare()
        if not self.formatted:
            self._format(java)
            self.format_seconds = time.perf_counter() - started
        for port in (*self._data_ports(), self.controller_port):
            if port_open(port):
                raise BrokerError(f"127.0.0.1:{port} is taken by another process")
        with self.log_path.open("ab") as log:
            log.write(f"===== start at {time.strftime('%H:%M:%S')} =====\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                [
                    java,
                    "-Xms256m",
                    "-Xmx512m",
                    "-XX:+UseG1GC",
                    # C1 only: a quicker start on 2 cores; a test broker moves little data.
                    "-XX:TieredStopAtLevel=1",
                    *self._jvm_options(),
                    "kafka.Kafka",
                    str(self.config_path),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # a Ctrl-C of pytest is not the broker's
            )
        self._wait_ready(started + timeout)
        elapsed = time.perf_counter() - started
        self.startup_seconds.append(elapsed)
        return elapsed

    def _wait_ready(self, deadline: float) -> None:
        assert self.process is not None
        while True:
            if self.process.poll() is not None:
                code = self.process.returncode
                self.process = None
                raise self._fail(f"the broker exited during startup (status {code})")
            if all(port_open(p) for p in self._data_ports()) and self._answers():
                return
            if time.perf_counter() > deadline:
                self.kill()  # no JVM left behind by a failed start
                raise self._fail(f"the broker on {self.bootstrap} is not ready in time; killed")
            time.sleep(0.2)

    def _answers(self) -> bool:
        """A kafka-python admin client can describe the cluster and list the topics."""
        try:
            admin = KafkaAdminClient(
                bootstrap_servers=self.bootstrap,
                request_timeout_ms=3000,
                bootstrap_timeout_ms=3000,
            )
        except (KafkaError, OSError, ValueError):
            return False
        try:
            cluster = admin.describe_cluster()
            admin.list_topics()
            return bool(cluster.get("brokers"))
        except (KafkaError, OSError, ValueError):
            return False
        finally:
            admin.close()

    def kill(self) -> None:
        """SIGKILL the broker's own JVM (a crash: no shutdown hook) and reap it."""
        if self.process is None:
            return
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self.process = None

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM (the broker's controlled shutdown); wait up to ``timeout`` seconds.

        Raises BrokerError, after a SIGKILL, if the broker outlives the timeout.
        """
        if self.process is None:
            return
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise self._fail(f"the broker outlived SIGTERM by {timeout:.0f}s; killed") from None
        self.process = None

    def restart(self, timeout: float = READY_TIMEOUT) -> float:
        """Stop (if running) and start again: same ports, same data, no re-format."""
        self.stop()
        return self.start(timeout)

    def close(self) -> None:
        """Whatever state it is in, leave no JVM behind (for fixtures' teardown)."""
        if self.running():
            with contextlib.suppress(BrokerError):  # stop() has killed it then
                self.stop(timeout=10)
        self.kill()

    def __enter__(self) -> KafkaBroker:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
