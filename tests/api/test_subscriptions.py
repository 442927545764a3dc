"""POST/GET/DELETE /subscriptions and resume: admin keys only, validation that names the field
and the value, secrets shown once, and what a subscription's GET shows of its deliveries."""

from __future__ import annotations

import base64
import random

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from api.app import create_app
from api.security import ApiKeys
from consumer.subscriptions import subscriptions_for
from consumer.webhooks import RetryPolicy, WebhookWorker
from segmenter.events import ENTERED, InsiderEvent, Reason
from segmenter.segmentation import StepResult

READ, ADMIN = "read-key-0123456789", "admin-key-0123456789"
AS_ADMIN = {"Authorization": f"Bearer {ADMIN}"}
SECRET = "whsec_" + base64.b64encode(bytes(range(24))).decode()
HOOK = "https://crm.example.com/hooks/insiders?token=abc"


def commit(store, *customers: str) -> None:
    made = [
        InsiderEvent(c, 1, ENTERED, 1_323_000_000, Reason("top_segment", "top"), 1, 7, {})
        for c in customers
    ]
    store.commit_step(StepResult(events=made), b"m")


@pytest.fixture
def client(store) -> TestClient:
    """The app over each store (memory, and real Redis), with a read key and an admin key."""
    commit(store, "c1", "c2")
    keys = ApiKeys.of(read=[SecretStr(READ)], admin=[SecretStr(ADMIN)])
    return TestClient(create_app(store, keys=keys))


def test_only_an_admin_key_reaches_the_subscriptions(client):
    routes = [
        ("POST", "/subscriptions", {"url": HOOK}),
        ("GET", "/subscriptions", None),
        ("GET", "/subscriptions/sub_x", None),
        ("DELETE", "/subscriptions/sub_x", None),
        ("POST", "/subscriptions/sub_x/resume", None),
    ]
    for method, url, body in routes:
        none = client.request(method, url, json=body)
        assert none.status_code == 401 and none.headers["www-authenticate"] == "Bearer"
        assert none.json() == {"detail": "an API key is needed: send Authorization: Bearer <key>"}
        wrong = client.request(method, url, json=body, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.json() == {"detail": "unknown API key"}
        read = client.request(method, url, json=body, headers={"Authorization": f"Bearer {READ}"})
        assert read.status_code == 403, (method, url)
        assert read.json() == {"detail": "this route needs an admin key (INSIDERS_ADMIN_KEYS)"}
    assert client.get("/subscriptions", headers=AS_ADMIN).json() == {"items": []}


def test_a_subscription_is_made_with_a_generated_secret_shown_once(client, store):
    made = client.post("/subscriptions", json={"url": HOOK}, headers=AS_ADMIN)
    assert made.status_code == 201
    body = made.json()
    assert body["id"].startswith("sub_") and body["url"] == HOOK
    assert body["types"] == [] and body["state"] == "active" and body["lag"] == 0
    assert body["cursor"] == store.events(None, 10).cursors[-1]  # from the newest event on
    assert body["created_at"].endswith("+00:00")
    assert body["last_delivery"] is None and body["last_error"] is None
    secret = body["secret"]
    assert secret.startswith("whsec_") and len(base64.b64decode(secret[6:])) == 32
    again = client.post("/subscriptions", json={"url": HOOK}, headers=AS_ADMIN).json()
    assert again["secret"] != secret  # random, per subscription
    one = client.get(f"/subscriptions/{body['id']}", headers=AS_ADMIN)
    listed = client.get("/subscriptions", headers=AS_ADMIN)
    for answer in (one, listed):
        assert answer.status_code == 200
        assert "secret" not in answer.text and secret not in answer.text
    assert one.json() == {k: v for k, v in body.items() if k != "secret"}
    assert [s["id"] for s in listed.json()["items"]] == [body["id"], again["id"]]


def test_a_given_secret_types_and_start_are_kept(client):
    made = client.post(
        "/subscriptions",
        json={"url": HOOK, "secret": SECRET, "types": ["insider.exited"], "start": "oldest"},
        headers=AS_ADMIN,
    )
    assert made.status_code == 201
    body = made.json()
    assert body["secret"] == SECRET and body["types"] == ["insider.exited"]
    assert body["cursor"] is None and body["lag"] == 2  # the two events already kept


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("url", "ftp://crm.example.com/in", "url 'ftp://crm.example.com/in' is not an http://"),
        ("url", "crm.example.com/in", "url 'crm.example.com/in' is not an http://"),
        ("url", "javascript:alert(1)", "url 'javascript:alert(1)' is not an http://"),
        ("url", "https:///in", "url 'https:///in' names no host"),
        ("url", "https://crm.example.com:99999/", "has an invalid port"),
        ("url", "https://u:p@crm.example.com/", "holds credentials, which are not sent"),
        ("url", "https://crm.example.com/a b", "holds spaces or control characters"),
        ("secret", "s3cret-but-not-whsec", "it does not start with whsec_"),
        ("secret", "whsec_not base64!", "what follows whsec_ is not base64"),
        ("secret", "whsec_" + base64.b64encode(b"short").decode(), "it holds 5 bytes"),
        ("types", ["insider.joined"], "types: 'insider.joined' is not an event type"),
        ("types", [], "types is empty"),
        ("start", "yesterday", "Input should be 'latest' or 'oldest'"),
        ("colour", "blue", "Extra inputs are not permitted"),
    ],
)
def test_a_bad_field_is_a_422_naming_it_and_its_value(client, field, value, says):
    body = {"url": HOOK, field: value}
    answer = client.post("/subscriptions", json=body, headers=AS_ADMIN)
    assert answer.status_code == 422
    error = answer.json()["detail"][0]
    assert error["loc"] == ["body", field]
    assert says in error["msg"]
    assert client.get("/subscriptions", headers=AS_ADMIN).json() == {"items": []}


def test_a_missing_url_is_a_422(client):
    answer = client.post("/subscriptions", json={"types": ["insider.entered"]}, headers=AS_ADMIN)
    assert answer.status_code == 422 and answer.json()["detail"][0]["loc"] == ["body", "url"]


def test_delete_and_unknown_ids(client):
    made = client.post("/subscriptions", json={"url": HOOK}, headers=AS_ADMIN).json()
    url = f"/subscriptions/{made['id']}"
    assert client.delete(url, headers=AS_ADMIN).status_code == 204
    for method, path in (("GET", url), ("DELETE", url), ("POST", url + "/resume")):
        answer = client.request(method, path, headers=AS_ADMIN)
        assert answer.status_code == 404
        assert answer.json() == {"detail": f"subscription {made['id']} not found"}
    assert client.get("/subscriptions/not%20an%20id", headers=AS_ADMIN).status_code == 422


def test_its_get_shows_the_lag_the_last_delivery_the_last_error_and_parking(client, store):
    # The worker's view of the subscriptions: the app's (the demo shares its own this way).
    subs = client.app.state.subscriptions = subscriptions_for(store)  # type: ignore[attr-defined]
    made = client.post("/subscriptions", json={"url": HOOK}, headers=AS_ADMIN).json()
    url = f"/subscriptions/{made['id']}"
    commit(store, "c3", "c4", "c5")
    assert client.get(url, headers=AS_ADMIN).json()["lag"] == 3

    answers = iter([204, 500, 500])
    now = [1_700_000_000.0]

    def send(url: str, body: bytes, headers: dict[str, str], timeout: float) -> tuple[int, bytes]:
        return next(answers), b"oops"

    policy = RetryPolicy(first=10.0, most=10.0, give_up_after=15.0)
    worker = WebhookWorker(subs, store, policy, send=send, clock=lambda: now[0])
    worker.rng = random.Random(0)
    worker.deliver(made["id"])  # c3 delivered, c4 refused
    shown = client.get(url, headers=AS_ADMIN).json()
    assert shown["lag"] == 2 and shown["state"] == "active" and shown["attempts"] == 1
    assert shown["last_delivery"]["event_id"] == "c3:1" and shown["last_delivery"]["status"] == 204
    assert shown["last_error"] == {
        "event_id": "c4:1",
        "at": "2023-11-14T22:13:20+00:00",
        "status": 500,
        "error": "HTTP 500: oops",
    }
    assert shown["failing_since"] == "2023-11-14T22:13:20+00:00"
    assert shown["next_attempt_at"] is not None and shown["parked_at"] is None

    now[0] += 10.0  # the retry: refused again, and a further wait would pass 15 s
    worker.deliver(made["id"])
    parked = client.get(url, headers=AS_ADMIN).json()
    assert parked["state"] == "parked" and parked["parked_at"] == "2023-11-14T22:13:30+00:00"
    assert parked["attempts"] == 2 and parked["lag"] == 2 and parked["next_attempt_at"] is None

    resumed = client.post(url + "/resume", headers=AS_ADMIN)
    assert resumed.status_code == 200
    back = resumed.json()
    assert back["state"] == "active" and back["attempts"] == 0 and back["parked_at"] is None
    assert back["cursor"] == parked["cursor"] and back["last_error"] == parked["last_error"]


@pytest.mark.parametrize("garbage", [b"not json", b'{"id": 1}', b"[]", b'{"url": null}'])
def test_garbage_where_redis_keeps_a_subscription_is_a_503_naming_it(
    redis_store, redis_client, garbage
):
    # What sits in Redis is not trusted: a broken value is named, never a 500.
    app = create_app(redis_store)
    client = TestClient(app, raise_server_exceptions=False)
    made = client.post("/subscriptions", json={"url": "https://crm.example.com/in"}).json()
    key = f"{redis_store.prefix}subscription:{made['id']}"
    redis_client.set(key, garbage)
    for path in ("/subscriptions", f"/subscriptions/{made['id']}"):
        answer = client.get(path)
        assert answer.status_code == 503, (path, answer.text)
        assert answer.json()["detail"].startswith("a webhook subscription in ")
        assert key in answer.json()["detail"]
