"""docker-compose.yml and the Dockerfile, read (no Docker engine here): the API they run can
start under protected mode, and nothing runs as root or talks to Redis without its password."""

from __future__ import annotations

import re

import yaml

from tests.conftest import REPO


def services() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]


def test_the_api_binds_all_interfaces_with_keys_required():
    api = services()["api"]
    command = api["command"]
    assert command[command.index("--host") + 1] == "0.0.0.0"
    assert "--insecure" not in command
    # Required: compose stops with this message rather than start an API that would refuse.
    assert api["environment"]["INSIDERS_API_KEYS"].startswith("${INSIDERS_API_KEYS:?")


def test_redis_needs_a_password_and_its_clients_send_it():
    found = services()
    redis = found["redis"]
    command = redis["command"]
    assert command[command.index("--requirepass") + 1].startswith("${INSIDERS_REDIS_PASSWORD:?")
    assert redis["environment"]["REDISCLI_AUTH"].startswith("${INSIDERS_REDIS_PASSWORD")
    for name in ("consumer", "api"):
        url = found[name]["environment"]["INSIDERS_REDIS_URL"]
        assert re.fullmatch(r"redis://:\$\{INSIDERS_REDIS_PASSWORD(:\?[^}]*)?\}@redis:6379/0", url)


def test_the_image_runs_as_a_user_of_its_own():
    users = re.findall(r"^USER (\S+)$", (REPO / "Dockerfile").read_text(), flags=re.M)
    assert users == ["insiders"]
