"""docker-compose.yml, docs/prometheus.yml and the Dockerfile, read: the API they run can start
under protected mode, nothing runs as root or talks to Redis without its password, and
Prometheus scrapes the three processes where they serve. `docker compose config` checks the
file too, where a Docker client with the compose plugin exists (no engine is needed)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import pytest
import yaml

from tests.conftest import REPO


def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def services() -> dict:
    return compose()["services"]


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
    for name in ("consumer", "api", "webhooks"):
        url = found[name]["environment"]["INSIDERS_REDIS_URL"]
        assert re.fullmatch(r"redis://:\$\{INSIDERS_REDIS_PASSWORD(:\?[^}]*)?\}@redis:6379/0", url)


def test_the_image_runs_as_a_user_of_its_own():
    users = re.findall(r"^USER (\S+)$", (REPO / "Dockerfile").read_text(), flags=re.M)
    assert users == ["insiders"]


def port_of(address: str) -> int:
    return int(address.rpartition(":")[2])


def test_prometheus_scrapes_the_api_the_consumer_and_the_webhook_worker_where_they_serve():
    found = services()
    prometheus = found["prometheus"]
    mounts = dict(volume.split(":")[:2] for volume in prometheus["volumes"])
    config_file = next(host for host, inside in mounts.items() if inside.endswith("prometheus.yml"))
    assert any(arg == "--config.file=" + mounts[config_file] for arg in prometheus["command"])
    config = yaml.safe_load((REPO / config_file).read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"insiders-api", "insiders-consumer", "insiders-webhooks"}

    def target(job: str) -> tuple[str, int]:
        [static] = jobs[job]["static_configs"]
        [address] = static["targets"]
        host, _, port = address.rpartition(":")
        return host, int(port)

    # The API: its --port, /metrics, with a key it accepts (the secret in both containers).
    api = found["api"]
    command = api["command"]
    assert target("insiders-api") == ("api", int(command[command.index("--port") + 1]))
    assert jobs["insiders-api"]["metrics_path"] == "/metrics"
    auth = jobs["insiders-api"]["authorization"]
    assert auth["type"] == "Bearer"
    assert auth["credentials_file"] == "/run/secrets/prometheus_key"
    assert api["environment"]["INSIDERS_API_KEYS_FILE"] == auth["credentials_file"]
    assert "prometheus_key" in api["secrets"] and "prometheus_key" in prometheus["secrets"]
    secret = compose()["secrets"]["prometheus_key"]["file"]
    assert secret.startswith("${INSIDERS_PROMETHEUS_KEY_FILE:?")  # required, never a default
    # The consumer and the webhook worker: on every interface of their containers, at the
    # ports Prometheus scrapes, and running the commands that serve them.
    consumer, webhooks = found["consumer"], found["webhooks"]
    assert consumer["command"][0] == "consume" and webhooks["command"][0] == "webhooks"
    consumer_at = consumer["environment"]["INSIDERS_METRICS_PORT"]
    webhooks_at = webhooks["environment"]["INSIDERS_WEBHOOK_METRICS_PORT"]
    assert consumer_at.startswith("0.0.0.0:") and webhooks_at.startswith("0.0.0.0:")
    assert target("insiders-consumer") == ("consumer", port_of(consumer_at))
    assert target("insiders-webhooks") == ("webhooks", port_of(webhooks_at))
    # Only the API and Prometheus's own UI reach the host, and on loopback.
    for name in ("consumer", "webhooks"):
        assert "ports" not in found[name], name
    assert all(p.startswith("127.0.0.1:") for p in prometheus["ports"])


def test_the_dashboard_s_jobs_are_the_ones_prometheus_scrapes():
    dashboard = json.loads((REPO / "docs" / "grafana-dashboard.json").read_text())
    variables = dashboard["templating"]["list"]
    defaults = {v["name"]: v["query"] for v in variables if v["name"].endswith("_job")}
    config = yaml.safe_load((REPO / "docs" / "prometheus.yml").read_text())
    assert set(defaults.values()) == {job["job_name"] for job in config["scrape_configs"]}


def compose_command() -> list[str]:
    """`docker compose`, or `docker-compose`; skips, saying why, when neither runs here."""
    if shutil.which("docker"):
        found = subprocess.run(
            ["docker", "compose", "version"], capture_output=True, text=True, timeout=60
        )
        if found.returncode == 0:
            return ["docker", "compose"]
        said = found.stderr.strip().splitlines()[0] if found.stderr.strip() else found.returncode
        why = f"docker is on PATH but `docker compose version` failed ({said})"
    else:
        why = "docker is not on PATH"
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    pytest.skip(f"docker compose config was NOT run: {why}, and docker-compose is not on PATH")


def test_docker_compose_config_accepts_the_file(tmp_path):
    """Compose's own validation (schema, interpolation, references); it needs no engine.
    Compose v2 (`docker compose`) is preferred; v1 (`docker-compose`) checks an older schema."""
    command = compose_command()
    print(f"validating with {' '.join(command)}")
    key = tmp_path / "prometheus.key"
    key.write_text("prometheus-read-key\n")
    env = {
        **os.environ,
        "INSIDERS_REDIS_PASSWORD": "s3cret",
        "INSIDERS_API_KEYS": "read-key",
        "INSIDERS_PROMETHEUS_KEY_FILE": str(key),
    }
    done = subprocess.run(
        [*command, "-f", str(REPO / "docker-compose.yml"), "config"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    resolved = yaml.safe_load(done.stdout)["services"]
    assert {"api", "consumer", "webhooks", "prometheus"} <= set(resolved)
    # Without a secret, compose refuses, naming it.
    del env["INSIDERS_PROMETHEUS_KEY_FILE"]
    refused = subprocess.run(
        [*command, "-f", str(REPO / "docker-compose.yml"), "config"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert refused.returncode != 0 and "INSIDERS_PROMETHEUS_KEY_FILE" in refused.stderr


def test_promtool_accepts_the_prometheus_config():
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool check config was NOT run: promtool is not on PATH")
    done = subprocess.run(
        [promtool, "check", "config", "--syntax-only", str(REPO / "docs" / "prometheus.yml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
