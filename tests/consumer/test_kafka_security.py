"""Kafka SASL/SSL settings: checked as a whole, one line per mistake, the password a secret
from the environment (or its file) to kafka-python's keyword arguments and nowhere else."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from consumer.cli import setting_error
from consumer.kafka_io import KafkaConnection
from consumer.settings import ConsumerSettings

PASSWORD = "pa55-w0rd-never-shown"


def settings(monkeypatch: pytest.MonkeyPatch, **env: str) -> ConsumerSettings:
    """The settings with these INSIDERS_* variables, and no other INSIDERS_KAFKA_* one."""
    for name in list(os.environ):
        if name.startswith("INSIDERS_KAFKA_"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(f"INSIDERS_{name}", value)
    return ConsumerSettings()


def error_of(monkeypatch: pytest.MonkeyPatch, **env: str) -> str:
    with pytest.raises(ValidationError) as caught:
        settings(monkeypatch, **env)
    return setting_error(caught.value)


def test_plaintext_by_default_and_nothing_but_the_bootstrap_for_kafka_python(monkeypatch):
    kafka = settings(monkeypatch, KAFKA_BOOTSTRAP="k1:9092,k2:9092").kafka()
    assert kafka == KafkaConnection("k1:9092,k2:9092")
    assert kafka.client_config() == {"bootstrap_servers": "k1:9092,k2:9092"}
    # A bare string is the same PLAINTEXT connection (tests and benches pass one).
    assert KafkaConnection.of("k1:9092,k2:9092") == kafka
    assert KafkaConnection.of(kafka) is kafka


def test_sasl_ssl_settings_become_kafka_python_arguments(monkeypatch, tmp_path):
    ca, cert, key = (tmp_path / name for name in ("ca.pem", "client.pem", "client.key"))
    for path in (ca, cert, key):
        path.write_text("-----BEGIN-----\n")
    kafka = settings(
        monkeypatch,
        KAFKA_BOOTSTRAP="broker:9093",
        KAFKA_SECURITY_PROTOCOL="sasl_ssl",  # any case
        KAFKA_SASL_MECHANISM="scram-sha-512",
        KAFKA_SASL_USERNAME="insiders",
        KAFKA_SASL_PASSWORD=PASSWORD,
        KAFKA_SSL_CAFILE=str(ca),
        KAFKA_SSL_CERTFILE=str(cert),
        KAFKA_SSL_KEYFILE=str(key),
    ).kafka()
    assert kafka.client_config() == {
        "bootstrap_servers": "broker:9093",
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "insiders",
        "sasl_plain_password": PASSWORD,
        "ssl_cafile": str(ca),
        "ssl_certfile": str(cert),
        "ssl_keyfile": str(key),
    }
    # Until then it is a SecretStr: not in the repr, not in the settings' repr either.
    assert isinstance(kafka.sasl_password, SecretStr)
    assert PASSWORD not in repr(kafka) and PASSWORD not in str(kafka)


def test_the_password_comes_from_the_secret_only(monkeypatch):
    secret = SecretStr(PASSWORD)
    kafka = KafkaConnection("b:1", "SASL_PLAINTEXT", "PLAIN", "me", secret)
    assert kafka.client_config()["sasl_plain_password"] == secret.get_secret_value()
    assert "sasl_plain_password" not in KafkaConnection("b:1", "SSL").client_config()


def test_ssl_without_files_uses_the_system_trust_store(monkeypatch):
    kafka = settings(monkeypatch, KAFKA_SECURITY_PROTOCOL="SSL").kafka()
    assert kafka.client_config() == {
        "bootstrap_servers": "127.0.0.1:9092",
        "security_protocol": "SSL",
    }


def test_the_password_file_is_read_without_its_newline(monkeypatch, tmp_path):
    secret = tmp_path / "kafka-password"
    secret.write_text(PASSWORD + "\n")
    kafka = settings(
        monkeypatch,
        KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT",
        KAFKA_SASL_MECHANISM="PLAIN",
        KAFKA_SASL_USERNAME="insiders",
        KAFKA_SASL_PASSWORD_FILE=str(secret),
    ).kafka()
    assert kafka.client_config()["sasl_plain_password"] == PASSWORD


SASL = {
    "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
    "KAFKA_SASL_MECHANISM": "PLAIN",
    "KAFKA_SASL_USERNAME": "insiders",
    "KAFKA_SASL_PASSWORD": PASSWORD,
}


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {"KAFKA_SECURITY_PROTOCOL": "TLS"},
            "setting INSIDERS_KAFKA_SECURITY_PROTOCOL='TLS': Input should be 'PLAINTEXT', "
            "'SSL', 'SASL_PLAINTEXT' or 'SASL_SSL'",
        ),
        (
            {**SASL, "KAFKA_SASL_MECHANISM": "GSSAPI"},
            "setting INSIDERS_KAFKA_SASL_MECHANISM='GSSAPI': Input should be 'PLAIN', "
            "'SCRAM-SHA-256' or 'SCRAM-SHA-512'",
        ),
        (
            {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL"},
            "setting INSIDERS_KAFKA_SECURITY_PROTOCOL='SASL_SSL': needs "
            "INSIDERS_KAFKA_SASL_MECHANISM, INSIDERS_KAFKA_SASL_USERNAME, "
            "INSIDERS_KAFKA_SASL_PASSWORD (or _FILE)",
        ),
        (
            {**SASL, "KAFKA_SASL_USERNAME": ""},
            "setting INSIDERS_KAFKA_SECURITY_PROTOCOL='SASL_PLAINTEXT': needs "
            "INSIDERS_KAFKA_SASL_USERNAME",
        ),
        (
            {k: v for k, v in SASL.items() if k != "KAFKA_SASL_PASSWORD"},
            "setting INSIDERS_KAFKA_SECURITY_PROTOCOL='SASL_PLAINTEXT': needs "
            "INSIDERS_KAFKA_SASL_PASSWORD (or _FILE)",
        ),
        (
            {"KAFKA_SASL_PASSWORD": PASSWORD},
            "setting INSIDERS_KAFKA_SASL_PASSWORD='***': SASL is not used with "
            "INSIDERS_KAFKA_SECURITY_PROTOCOL=PLAINTEXT",
        ),
        (
            {"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SASL_USERNAME": "insiders"},
            "setting INSIDERS_KAFKA_SASL_USERNAME='insiders': SASL is not used with "
            "INSIDERS_KAFKA_SECURITY_PROTOCOL=SSL",
        ),
        (
            {"KAFKA_SSL_CAFILE": "/no/such/ca.pem"},
            "setting INSIDERS_KAFKA_SSL_CAFILE='/no/such/ca.pem': Path does not point to a file",
        ),
        (
            {**SASL, "KAFKA_SASL_PASSWORD_FILE": "/no/such/secret"},
            "setting INSIDERS_KAFKA_SASL_PASSWORD_FILE='/no/such/secret': Path does not point "
            "to a file",
        ),
    ],
)
def test_a_bad_kafka_setting_is_one_line_naming_it(monkeypatch, env, expected):
    message = error_of(monkeypatch, **env)
    assert message == expected
    assert PASSWORD not in message


def test_files_that_exist_but_do_not_fit(monkeypatch, tmp_path):
    present = tmp_path / "file.pem"
    present.write_text("x\n")
    assert error_of(monkeypatch, KAFKA_SSL_CERTFILE=str(present)) == (
        f"setting INSIDERS_KAFKA_SSL_CERTFILE={str(present)!r}: TLS is not used with "
        "INSIDERS_KAFKA_SECURITY_PROTOCOL=PLAINTEXT"
    )
    assert error_of(monkeypatch, KAFKA_SECURITY_PROTOCOL="SSL", KAFKA_SSL_KEYFILE=str(present)) == (
        f"setting INSIDERS_KAFKA_SSL_KEYFILE={str(present)!r}: needs "
        "INSIDERS_KAFKA_SSL_CERTFILE, the certificate the key belongs to"
    )
    assert error_of(monkeypatch, **SASL, KAFKA_SASL_PASSWORD_FILE=str(present)) == (
        f"setting INSIDERS_KAFKA_SASL_PASSWORD_FILE={str(present)!r}: set it or "
        "INSIDERS_KAFKA_SASL_PASSWORD, not both"
    )
    empty = tmp_path / "empty"
    empty.write_text("\n")
    only_file = {k: v for k, v in SASL.items() if k != "KAFKA_SASL_PASSWORD"}
    assert error_of(monkeypatch, **only_file, KAFKA_SASL_PASSWORD_FILE=str(empty)) == (
        f"setting INSIDERS_KAFKA_SASL_PASSWORD_FILE={str(empty)!r}: the file is empty"
    )


def test_the_cli_says_it_in_one_line_before_touching_kafka(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("INSIDERS_KAFKA_")}
    env |= {
        "INSIDERS_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "INSIDERS_KAFKA_SASL_PASSWORD": PASSWORD,
    }
    done = subprocess.run(
        [sys.executable, "-m", "consumer.cli", "publish", str(tmp_path / "x.csv")],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert done.returncode == 2
    assert done.stderr == (
        "insiders: error: setting INSIDERS_KAFKA_SECURITY_PROTOCOL='SASL_SSL': needs "
        "INSIDERS_KAFKA_SASL_MECHANISM, INSIDERS_KAFKA_SASL_USERNAME\n"
    )
