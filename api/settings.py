"""Settings of the API process (``INSIDERS_*`` environment variables)."""

from __future__ import annotations

from typing import Literal

from consumer.settings import ConnectionSettings


class ApiSettings(ConnectionSettings):
    host: str = "127.0.0.1"
    port: int = 8000
    clock: Literal["event", "wall"] = "event"
