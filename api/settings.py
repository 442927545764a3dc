"""Settings of the API process (``INSIDERS_*`` environment variables)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from consumer.settings import ConnectionSettings


class ApiSettings(ConnectionSettings):
    host: str = "127.0.0.1"
    port: int = 8000
    clock: Literal["event", "wall"] = "event"
    # GET /events/stream: seconds between looks for new events, and the longest silence
    # before a keep-alive comment (proxies drop idle connections).
    stream_poll: float = Field(default=0.5, gt=0)
    stream_keepalive: float = Field(default=15.0, gt=0)
    # Seconds to connect to Redis and for each command: past it the request gets a 503,
    # rather than hanging on a frozen server.
    redis_timeout: float = Field(default=2.0, gt=0)
