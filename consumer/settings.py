"""Settings of the consumer process, from ``INSIDERS_*`` environment variables (flags override)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, Self

from pydantic import Field, FilePath, SecretStr, field_validator, model_validator
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:  # kafka-python is imported by the commands that talk to Kafka only
    from consumer.kafka_io import KafkaConnection
    from consumer.ports import FeatureStore, Retention
    from consumer.subscriptions import SubscriptionStore
    from consumer.webhook_metrics import WebhookMetrics
    from consumer.webhooks import RetryPolicy, WebhookWorker

KafkaProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


def _setting(variable: str, value: Any, problem: str) -> PydanticCustomError:
    """A check across settings, worded as ``cli.setting_error`` words one bad value."""
    return PydanticCustomError("kafka_settings", f"{variable}={value!r}: {problem}")


class ConnectionSettings(BaseSettings):
    """Where Kafka and Redis are, and how to log in to them; shared by every process.

    Redis AUTH and TLS are in ``redis_url``. Kafka's are the ``kafka_security_*``,
    ``kafka_sasl_*`` and ``kafka_ssl_*`` settings; ``kafka()`` hands them to the clients.
    """

    model_config = SettingsConfigDict(env_prefix="INSIDERS_", extra="ignore")

    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_security_protocol: KafkaProtocol = "PLAINTEXT"
    # SASL_PLAINTEXT and SASL_SSL need all three; the password may come from a file
    # (a Docker or Kubernetes secret) instead. It is never logged or shown in an error.
    kafka_sasl_mechanism: SaslMechanism | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_sasl_password_file: FilePath | None = None
    # SSL and SASL_SSL: the CA that signed the brokers' certificates (default: the system's),
    # and a client certificate and key for brokers that ask for one.
    kafka_ssl_cafile: FilePath | None = None
    kafka_ssl_certfile: FilePath | None = None
    kafka_ssl_keyfile: FilePath | None = None
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_prefix: str = "insiders:"

    @field_validator("kafka_security_protocol", "kafka_sasl_mechanism", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check_kafka_security(self) -> Self:
        protocol = self.kafka_security_protocol
        named = f"INSIDERS_KAFKA_SECURITY_PROTOCOL={protocol}"
        password_file = self.kafka_sasl_password_file
        sasl: dict[str, Any] = {  # what is set, shown as an error would show it
            "INSIDERS_KAFKA_SASL_MECHANISM": self.kafka_sasl_mechanism,
            "INSIDERS_KAFKA_SASL_USERNAME": self.kafka_sasl_username or None,
            "INSIDERS_KAFKA_SASL_PASSWORD": "***" if self.kafka_sasl_password else None,
            "INSIDERS_KAFKA_SASL_PASSWORD_FILE": str(password_file) if password_file else None,
        }
        ssl = {
            "INSIDERS_KAFKA_SSL_CAFILE": self.kafka_ssl_cafile,
            "INSIDERS_KAFKA_SSL_CERTFILE": self.kafka_ssl_certfile,
            "INSIDERS_KAFKA_SSL_KEYFILE": self.kafka_ssl_keyfile,
        }
        # Set but unused is refused: a CA file with PLAINTEXT would look like TLS and not be.
        if not protocol.startswith("SASL_"):
            for name, value in sasl.items():
                if value is not None:
                    raise _setting(name, value, f"SASL is not used with {named}")
        if not protocol.endswith("SSL"):
            for name, path in ssl.items():
                if path is not None:
                    raise _setting(name, str(path), f"TLS is not used with {named}")
        if self.kafka_ssl_keyfile is not None and self.kafka_ssl_certfile is None:
            raise _setting(
                "INSIDERS_KAFKA_SSL_KEYFILE",
                str(self.kafka_ssl_keyfile),
                "needs INSIDERS_KAFKA_SSL_CERTFILE, the certificate the key belongs to",
            )
        if password_file is not None:
            variable = "INSIDERS_KAFKA_SASL_PASSWORD_FILE"
            if self.kafka_sasl_password is not None:
                raise _setting(
                    variable, str(password_file), "set it or INSIDERS_KAFKA_SASL_PASSWORD, not both"
                )
            try:  # one line, as a secret file usually ends with a newline
                password = password_file.read_text(encoding="utf-8").rstrip("\r\n")
            except (OSError, UnicodeDecodeError) as exc:
                raise _setting(variable, str(password_file), f"cannot read it ({exc})") from None
            if not password:
                raise _setting(variable, str(password_file), "the file is empty")
            self.kafka_sasl_password = SecretStr(password)
            sasl["INSIDERS_KAFKA_SASL_PASSWORD"] = "***"
        if protocol.startswith("SASL_"):
            missing = [
                name
                for name, value in sasl.items()
                if value is None and name != "INSIDERS_KAFKA_SASL_PASSWORD_FILE"
            ]
            if missing:
                needs = ", ".join(missing).replace(
                    "INSIDERS_KAFKA_SASL_PASSWORD", "INSIDERS_KAFKA_SASL_PASSWORD (or _FILE)"
                )
                raise _setting("INSIDERS_KAFKA_SECURITY_PROTOCOL", protocol, f"needs {needs}")
        return self

    def kafka(self) -> KafkaConnection:
        """What every Kafka client of this process is built from."""
        from consumer.kafka_io import KafkaConnection

        def path(value: Any) -> str | None:
            return None if value is None else str(value)

        return KafkaConnection(
            bootstrap=self.kafka_bootstrap,
            security_protocol=self.kafka_security_protocol,
            sasl_mechanism=self.kafka_sasl_mechanism,
            sasl_username=self.kafka_sasl_username,
            sasl_password=self.kafka_sasl_password,
            ssl_cafile=path(self.kafka_ssl_cafile),
            ssl_certfile=path(self.kafka_ssl_certfile),
            ssl_keyfile=path(self.kafka_ssl_keyfile),
        )


class ConsumerSettings(ConnectionSettings):
    topic: str = "invoices"
    group: str = "insiders"
    events_topic: str = "insiders.events"
    block_size: int = 5000
    clock: Literal["event", "wall"] = "event"
    seed: int = 42
    segments: int = 4
    # Buckets for applied event ids in Redis, fixed when a prefix is first written.
    seen_buckets: int = Field(default=1024, gt=0)
    # Bounded state (docs/reliability.md, "Bounded state"); 0 keeps everything. Applied
    # event ids (and invoice numbers) are kept while their invoice day is within
    # dedupe_days of the latest one applied, and older lines are refused: the default
    # covers any order within a year and a month. The outbox keeps about events_keep
    # published events (the Kafka topic, created with retention.ms=-1, has them all), and a
    # customer's history their last history_keep.
    dedupe_days: int = Field(default=400, ge=0)
    events_keep: int = Field(default=200_000, ge=0)
    history_keep: int = Field(default=100, ge=0)
    # The consumer builds the business report from its roster and saves it for the API
    # (api/saved_report.py): at most every report_every s while the store changes.
    report_every: float = Field(default=5.0, gt=0)
    # Without a terminal, replay, publish and consume log their progress this often, in s.
    progress_every: float = Field(default=60.0, gt=0)
    # One consumer owns a prefix's model. Its lock lives writer_ttl s unless renewed (a
    # heartbeat renews it every third of that); a restarted one waits out a dead one's lock.
    writer_ttl: int = Field(default=10, ge=3)
    writer_wait: float = Field(default=15.0, ge=0)
    # How long the consumer waits for Redis or Kafka to answer again before it stops.
    outage_seconds: float = Field(default=60.0, gt=0)
    # Python's garbage collector (consumer/gc_tuning.py): a young collection each time
    # gc_young more objects are made than freed, more than a block keeps alive at once; 0
    # keeps Python's default (700).
    gc_young: int = Field(default=50_000, ge=0, le=2**31 - 1)  # a C int in CPython
    # `insiders consume` serves its metrics for Prometheus at http://HOST:PORT/metrics when
    # set: "PORT" (on 127.0.0.1) or "HOST:PORT", e.g. "0.0.0.0:9108" in a container.
    metrics_port: str | None = None
    # Insider policy (see segmenter.policy). The group holds target_share of the customers
    # (within ±share_band at each daily sweep); 0 turns that off, and the fixed margins
    # (fractions of the way to a centre) decide alone.
    target_share: float = Field(default=0.12, ge=0, lt=1)
    share_band: float = Field(default=0.015, ge=0, lt=1)
    entry_margin: float = 0.3
    exit_margin: float = 0.3
    min_dwell_days: float = 30.0
    lapse_days: float = 120.0
    overdue_factor: float = 2.0

    def retention(self) -> Retention:
        """What the feature store keeps (``dedupe_days``, ``events_keep``, ``history_keep``)."""
        from consumer.ports import Retention

        return Retention(self.dedupe_days, self.events_keep, self.history_keep)


class WebhookSettings(ConnectionSettings):
    """``insiders webhooks``: delivering events to webhook subscriptions (``INSIDERS_WEBHOOK_*``).

    A failed delivery is retried after ``webhook_backoff`` s, doubling up to
    ``webhook_backoff_max`` s, each wait jittered between half and all of it. A subscription
    still failing ``webhook_retry_for`` s after its first failure is parked.
    """

    webhook_timeout: float = Field(default=10.0, gt=0)  # to connect, and for each read
    webhook_backoff: float = Field(default=2.0, gt=0)
    webhook_backoff_max: float = Field(default=3600.0, gt=0)
    webhook_retry_for: float = Field(default=86_400.0, gt=0)
    webhook_poll: float = Field(default=1.0, gt=0)  # seconds between looks for new events
    webhook_concurrency: int = Field(default=8, ge=1)  # subscriptions delivered to at once
    # Served for Prometheus at http://HOST:PORT/metrics when set: "PORT" or "HOST:PORT".
    webhook_metrics_port: str | None = None

    def retry(self) -> RetryPolicy:
        from consumer.webhooks import RetryPolicy

        return RetryPolicy(self.webhook_backoff, self.webhook_backoff_max, self.webhook_retry_for)

    def worker(
        self,
        subscriptions: SubscriptionStore,
        events: FeatureStore,
        metrics: WebhookMetrics | None = None,
    ) -> WebhookWorker:
        """The webhook worker these settings describe."""
        from consumer.webhooks import WebhookWorker

        return WebhookWorker(
            subscriptions,
            events,
            self.retry(),
            self.webhook_timeout,
            self.webhook_poll,
            self.webhook_concurrency,
            metrics=metrics,
        )
