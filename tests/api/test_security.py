"""API keys (read and admin), the keys' settings, and bounds on what a request may ask for."""

from __future__ import annotations

import base64
from typing import Annotated

import pytest
from fastapi import Depends
from fastapi.testclient import TestClient
from pydantic import SecretStr, ValidationError

from api.app import create_app
from api.security import ApiKeys, Role, require_admin
from api.settings import ApiSettings, KeyFileError
from consumer.file_source import FileInvoiceSource
from consumer.memory import MemoryEventSink, MemoryFeatureStore
from consumer.pipeline import Pipeline
from consumer.redis_store import RedisFeatureStore
from segmenter.model import SegmentModel
from tests.conftest import SAMPLE

READ_KEY, ADMIN_KEY = "read-key-0123456789", "admin-key-0123456789"


@pytest.fixture(scope="module")
def sample_store() -> MemoryFeatureStore:
    store = MemoryFeatureStore()
    pipeline = Pipeline(store, MemoryEventSink(), SegmentModel())
    for block in FileInvoiceSource(SAMPLE).blocks():
        pipeline.process(block)
    return store


@pytest.fixture(scope="module")
def keyed(sample_store) -> TestClient:
    """The app with a read key and an admin key, and a route that changes something."""
    keys = ApiKeys.of(read=[SecretStr(READ_KEY)], admin=[SecretStr(ADMIN_KEY)])
    app = create_app(sample_store, keys=keys)
    app.state.stopping.set()  # event streams end at once: TestClient waits for the whole body

    # Registered here only: the pattern for the first route that changes anything.
    @app.post("/test-only/change")
    def change(role: Annotated[Role | None, Depends(require_admin)]) -> dict[str, str | None]:
        return {"role": role}

    return TestClient(app)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def basic(password: str, user: str = "anyone") -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def a_customer(store: MemoryFeatureStore) -> str:
    return next(c.customer_id for c in store.customers())


# One route of each family: customers, Insiders, events (page and stream), stats, report, metrics.
ROUTES = [
    "/customers/{id}",
    "/customers/{id}/history",
    "/insiders?limit=2",
    "/events?limit=2",
    "/events/stream?after=999999",  # past the end: answers, then waits (closed at once below)
    "/stats",
    "/report",
    "/metrics",
]


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize(
    ("headers", "detail"),
    [
        ({}, "an API key is needed: send Authorization: Bearer <key>"),
        (bearer("wrong-key"), "unknown API key"),
        (bearer(READ_KEY + "0"), "unknown API key"),
        (basic(READ_KEY), "an API key is needed: send Authorization: Bearer <key>"),
    ],
    ids=["none", "wrong", "almost", "basic-outside-the-dashboard"],
)
def test_every_route_needs_a_valid_key(keyed, sample_store, route, headers, detail):
    response = keyed.get(route.format(id=a_customer(sample_store)), headers=headers)
    assert response.status_code == 401
    assert response.json() == {"detail": detail}
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("key", [READ_KEY, ADMIN_KEY], ids=["read", "admin"])
def test_a_read_or_admin_key_opens_every_route(keyed, sample_store, route, key):
    url = route.format(id=a_customer(sample_store))
    with keyed.stream("GET", url, headers=bearer(key)) as response:
        assert response.status_code == 200


def test_the_key_is_checked_before_the_store_is_touched():
    """Redis down: a client without a key learns nothing of it (no 503 naming it)."""
    down = RedisFeatureStore.from_url("redis://127.0.0.1:1/0", timeout=0.5, check=False)
    client = TestClient(create_app(down, keys=ApiKeys.of(read=[SecretStr(READ_KEY)])))
    for route in ("/stats", "/insiders?offset=-1", "/events/stream", "/dashboard", "/metrics"):
        assert client.get(route).status_code == 401, route
    assert client.get("/stats", headers=bearer(READ_KEY)).status_code == 503


def test_health_and_docs_need_no_key(keyed):
    assert keyed.get("/healthz").json()["status"] == "ok"
    assert keyed.get("/docs").status_code == 200
    document = keyed.get("/openapi.json").json()
    # The docs' Authorize button: the scheme is declared, and used by all but /healthz.
    assert document["components"]["securitySchemes"]["HTTPBearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key: one of INSIDERS_API_KEYS, or of INSIDERS_ADMIN_KEYS.",
    }
    open_paths = {
        path
        for path, item in document["paths"].items()
        for operation in item.values()
        if not operation.get("security")
    }
    assert open_paths == {"/healthz"}


def test_the_dashboard_asks_a_browser_for_the_key(keyed):
    response = keyed.get("/dashboard")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == (
        'Basic realm="Insiders dashboard", charset="UTF-8"'
    )
    assert "any user name and the key as the password" in response.json()["detail"]
    assert keyed.get("/dashboard", headers=basic("wrong")).status_code == 401
    assert keyed.get("/dashboard", headers={"Authorization": "Basic %%%"}).status_code == 401
    for headers in (basic(READ_KEY), basic(ADMIN_KEY, user=""), bearer(READ_KEY)):
        page = keyed.get("/dashboard", headers=headers)
        assert page.status_code == 200 and "<html" in page.text


def test_changes_need_an_admin_key(keyed):
    url = "/test-only/change"
    assert keyed.post(url, headers=bearer(ADMIN_KEY)).json() == {"role": "admin"}
    refused = keyed.post(url, headers=bearer(READ_KEY))
    assert refused.status_code == 403
    assert refused.json() == {"detail": "this route needs an admin key (INSIDERS_ADMIN_KEYS)"}
    for headers in ({}, bearer("wrong-key")):
        response = keyed.post(url, headers=headers)
        assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"


def test_read_keys_alone_leave_no_one_able_to_change_things(sample_store):
    app = create_app(sample_store, keys=ApiKeys.of(read=[SecretStr(READ_KEY)]))

    @app.post("/test-only/change")
    def change(role: Annotated[Role | None, Depends(require_admin)]) -> None:
        return None

    client = TestClient(app)
    assert client.get("/stats", headers=bearer(READ_KEY)).status_code == 200
    assert client.post("/test-only/change", headers=bearer(READ_KEY)).status_code == 403


def test_without_keys_every_route_is_open(sample_store):
    """`insiders demo` and `insiders api` on loopback: no key, as before."""
    client = TestClient(create_app(sample_store))
    for route in ("/stats", "/dashboard", "/events?limit=1"):
        assert client.get(route).status_code == 200
    assert client.get("/stats", headers=bearer("anything")).status_code == 200


# --- settings -------------------------------------------------------------------------------


def test_keys_come_from_the_variables_and_their_files(tmp_path, monkeypatch):
    secret = tmp_path / "keys"
    secret.write_text("from-file-1\n\n  from-file-2  \n")
    admin = tmp_path / "admin"
    admin.write_text("admin-from-file\n")
    monkeypatch.setenv("INSIDERS_API_KEYS", " k1, k2 ,,")
    monkeypatch.setenv("INSIDERS_API_KEYS_FILE", str(secret))
    monkeypatch.setenv("INSIDERS_ADMIN_KEYS_FILE", str(admin))
    settings = ApiSettings()
    assert [k.get_secret_value() for k in settings.api_keys] == [
        "k1",
        "k2",
        "from-file-1",
        "from-file-2",
    ]
    assert [k.get_secret_value() for k in settings.admin_keys] == ["admin-from-file"]
    assert "k1" not in repr(settings) and "from-file" not in repr(settings)


def test_no_keys_by_default(monkeypatch):
    for name in ("API_KEYS", "API_KEYS_FILE", "ADMIN_KEYS", "ADMIN_KEYS_FILE"):
        monkeypatch.delenv(f"INSIDERS_{name}", raising=False)
    settings = ApiSettings()
    assert not ApiKeys.of(settings.api_keys, settings.admin_keys).enabled


def test_a_missing_keys_file_names_the_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("INSIDERS_API_KEYS_FILE", str(tmp_path / "nope"))
    with pytest.raises(ValidationError) as error:
        ApiSettings()
    assert error.value.errors()[0]["loc"] == ("api_keys_file",)


def test_an_unreadable_keys_file_is_one_line(tmp_path, monkeypatch):
    bad = tmp_path / "keys"
    bad.write_bytes(b"\xff\xfe not utf-8")
    monkeypatch.setenv("INSIDERS_ADMIN_KEYS_FILE", str(bad))
    with pytest.raises(KeyFileError, match=f"^cannot read INSIDERS_ADMIN_KEYS_FILE={bad}: "):
        ApiSettings()


# --- bounds ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_kwargs", "where"),
    [
        ({"url": "/insiders", "params": {"offset": "9223372036854775806"}}, ["query", "offset"]),
        ({"url": "/insiders", "params": {"offset": str(10**9 + 1)}}, ["query", "offset"]),
        ({"url": "/insiders", "params": {"offset": "-1"}}, ["query", "offset"]),
        ({"url": "/insiders", "params": {"limit": "1001"}}, ["query", "limit"]),
        ({"url": "/insiders", "params": {"limit": "0"}}, ["query", "limit"]),
        ({"url": "/events", "params": {"limit": "1001"}}, ["query", "limit"]),
        (
            {"url": "/events", "params": {"after": "18446744073709551615-18446744073709551615"}},
            ["query", "after"],
        ),
        ({"url": "/events", "params": {"after": "18446744073709551616"}}, ["query", "after"]),
        ({"url": "/events", "params": {"after": "1-18446744073709551616"}}, ["query", "after"]),
        (
            {"url": "/events/stream", "params": {"after": "99999999999999999999-0"}},
            ["query", "after"],
        ),
        (
            {
                "url": "/events/stream",
                "headers": {"Last-Event-ID": "18446744073709551615-18446744073709551615"},
            },
            ["header", "last-event-id"],
        ),
        (
            {"url": "/events/stream", "headers": {"Last-Event-ID": "18446744073709551616"}},
            ["header", "last-event-id"],
        ),
    ],
)
def test_requests_past_what_the_store_can_take_are_a_422_naming_the_parameter(
    client, request_kwargs, where
):
    """Both stores: these were 500s (Redis refuses the cursor; an offset past 2**63)."""
    response = client.get(**request_kwargs)
    assert response.status_code == 422, response.text
    assert [error["loc"] for error in response.json()["detail"]] == [where]


def test_the_largest_cursors_still_read(client):
    """Just inside the bounds: an empty page, not an error."""
    for after in ("18446744073709551615", "18446744073709551614-18446744073709551615"):
        if client.app.state.store.backend == "memory" and "-" in after:
            continue
        body = client.get("/events", params={"after": after}).json()
        assert body == {"events": [], "next_cursor": None}
    assert client.get("/insiders", params={"offset": 10**9}).json()["items"] == []


def test_a_cursor_of_the_other_store_is_a_422(client):
    """A Redis stream id sent to the embedded store (and the reverse reads fine)."""
    response = client.get("/events", params={"after": "1700000000000-0"})
    if client.app.state.store.backend == "memory":
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["query", "after"]
        stream = client.get("/events/stream", headers={"Last-Event-ID": "1-0"})
        assert stream.status_code == 422
        assert stream.json()["detail"][0]["loc"] == ["header", "last-event-id"]
    else:  # a plain number is a stream id with its sequence left out
        assert response.status_code == 200
        assert client.get("/events", params={"after": "5"}).status_code == 200


# --- times ----------------------------------------------------------------------------------


def test_every_time_in_an_answer_carries_its_offset(keyed, sample_store):
    """Event time is naive epoch seconds in the store; the API presents it as UTC."""
    customer = next(c.customer_id for c in sample_store.customers() if c.status.insider)
    headers = bearer(READ_KEY)
    answers = [
        keyed.get(route, headers=headers).json()
        for route in (
            f"/customers/{customer}",
            f"/customers/{customer}/history",
            "/insiders?limit=3",
            "/events?limit=3",
            "/stats",
            "/report",
        )
    ]
    times = list(_times(answers))
    assert len(times) > 20
    assert all(t.endswith("+00:00") for t in times), times


TIME_FIELDS = {"at", "as_of", "start", "insider_since", "first_purchase_at", "last_purchase_at"}


def _times(value: object):
    """Every non-null time field in a JSON answer."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key in TIME_FIELDS and item is not None:
                yield item
            else:
                yield from _times(item)
    elif isinstance(value, list):
        for item in value:
            yield from _times(item)
