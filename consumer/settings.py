"""Settings of the consumer process, from ``INSIDERS_*`` environment variables (flags override)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ConnectionSettings(BaseSettings):
    """Where Kafka and Redis are; shared by every process."""

    model_config = SettingsConfigDict(env_prefix="INSIDERS_", extra="ignore")

    kafka_bootstrap: str = "127.0.0.1:9092"
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_prefix: str = "insiders:"


class ConsumerSettings(ConnectionSettings):
    topic: str = "invoices"
    group: str = "insiders"
    events_topic: str = "insiders.events"
    block_size: int = 5000
    clock: Literal["event", "wall"] = "event"
    seed: int = 42
    segments: int = 4
    # Buckets for applied event ids in Redis, fixed when a prefix is first written.
    seen_buckets: int = Field(default=8192, gt=0)
    # One consumer owns a prefix's model. Its lock lives writer_ttl s unless renewed (a
    # heartbeat renews it every third of that); a restarted one waits out a dead one's lock.
    writer_ttl: int = Field(default=10, ge=3)
    writer_wait: float = Field(default=15.0, ge=0)
    # How long the consumer waits for Redis or Kafka to answer again before it stops.
    outage_seconds: float = Field(default=60.0, gt=0)
    # Insider policy (see segmenter.policy): margins are fractions of the way to a centre.
    entry_margin: float = 0.3
    exit_margin: float = 0.3
    min_dwell_days: float = 30.0
    lapse_days: float = 120.0
    overdue_factor: float = 2.0
