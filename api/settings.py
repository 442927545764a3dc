"""Settings of the API process (``INSIDERS_*`` environment variables)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import Field, FilePath, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode

from consumer.settings import ConnectionSettings
from segmenter.errors import InsidersError

# Comma-separated in the variable (not JSON, as pydantic-settings reads lists by default).
Keys = Annotated[tuple[SecretStr, ...], NoDecode]


class KeyFileError(InsidersError):
    """A keys file (INSIDERS_API_KEYS_FILE, INSIDERS_ADMIN_KEYS_FILE) that cannot be read."""


def read_keys(path: Path, variable: str) -> tuple[SecretStr, ...]:
    """The keys in ``path``, one a line (a Docker or Kubernetes secret); blank lines skipped."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyFileError(f"cannot read {variable}={path}: {exc}") from None
    return tuple(SecretStr(line.strip()) for line in text.splitlines() if line.strip())


class ApiSettings(ConnectionSettings):
    host: str = "127.0.0.1"
    port: int = 8000
    clock: Literal["event", "wall"] = "event"
    # GET /events/stream: seconds between tries while the store does not answer (new events
    # wake the stream at once), and the longest silence before a keep-alive comment (proxies
    # drop idle connections).
    stream_poll: float = Field(default=0.5, gt=0)
    stream_keepalive: float = Field(default=15.0, gt=0)
    # Seconds to connect to Redis and for each command: past it the request gets a 503,
    # rather than hanging on a frozen server.
    redis_timeout: float = Field(default=2.0, gt=0)
    # GET /report and /dashboard answer from a snapshot built in the background when the
    # store has changed: at most every this many seconds, and never more than half the time.
    report_refresh: float = Field(default=5.0, gt=0)
    # Keys for `Authorization: Bearer <key>`: read keys, and admin keys, which also read.
    # After validation each tuple also holds the keys of its file.
    api_keys: Keys = ()
    api_keys_file: FilePath | None = None
    admin_keys: Keys = ()
    admin_keys_file: FilePath | None = None

    @field_validator("api_keys", "admin_keys", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(key.strip() for key in value.split(",") if key.strip())
        return value

    @model_validator(mode="after")
    def _read_key_files(self) -> Self:
        if self.api_keys_file is not None:
            self.api_keys += read_keys(self.api_keys_file, "INSIDERS_API_KEYS_FILE")
        if self.admin_keys_file is not None:
            self.admin_keys += read_keys(self.admin_keys_file, "INSIDERS_ADMIN_KEYS_FILE")
        return self
