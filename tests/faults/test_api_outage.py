"""`insiders api` while its Redis is killed, frozen or not yet started: every route answers a
prompt 503 that names Redis, and the API recovers by itself when Redis is back.

Real components only: a throwaway redis-server per test (tests/faults/redis_server.py) and the
real CLI in a subprocess. The figures are printed; run with `-s` or `-rA` to see them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple

import httpx
import orjson
import pytest
import redis

from consumer.file_source import FileInvoiceSource
from consumer.memory import MemoryEventSink
from consumer.pipeline import Pipeline
from consumer.redis_store import RedisFeatureStore
from segmenter.events import EXITED, InsiderEvent, Reason
from segmenter.segmentation import StepResult
from tests.api.test_serve import free_port
from tests.api.test_stream import frames
from tests.conftest import SAMPLE
from tests.faults.redis_server import RedisServer

pytestmark = pytest.mark.faults

# The API's Redis timeout is 2 s (INSIDERS_REDIS_TIMEOUT); an answer may take a little more.
BOUND_S = 2.5
ROUTES = (
    "/customers/{customer}",
    "/customers/{customer}/history",
    "/insiders",
    "/events",
    "/stats",
    "/report",
    "/metrics",
    "/dashboard",
)


class Answer(NamedTuple):
    status: int
    body: Any
    ms: float


def fill(url: str, prefix: str) -> tuple[RedisFeatureStore, str]:
    """The shipped sample through the pipeline into Redis; returns the store and a customer
    who has Insider events."""
    store = RedisFeatureStore.from_url(url, prefix)
    pipeline = Pipeline(store, MemoryEventSink())
    for block in FileInvoiceSource(SAMPLE).blocks():
        pipeline.process(block)
    first = store.events(None, 1).events
    assert first, "the sample should make Insiders"
    return store, str(first[0]["customer_id"])


def ask(client: httpx.Client, url: str) -> Answer:
    started = time.perf_counter()
    response = client.get(url)
    ms = (time.perf_counter() - started) * 1000
    is_json = response.headers.get("content-type", "").startswith("application/json")
    return Answer(response.status_code, response.json() if is_json else response.text, ms)


def sweep(client: httpx.Client, base: str, customer: str) -> dict[str, Answer]:
    """Every route at once, each timed on its own: a frozen store must not queue them."""
    paths = [route.format(customer=customer) for route in ROUTES]
    with ThreadPoolExecutor(len(paths)) as pool:
        answers = pool.map(lambda path: ask(client, base + path), paths)
        return dict(zip(paths, answers, strict=True))


def figures(answers: dict[str, Answer]) -> str:
    slowest = max(answers, key=lambda path: answers[path].ms)
    each = ", ".join(f"{path} {a.ms:.0f}" for path, a in answers.items())
    return f"slowest {answers[slowest].ms:.1f} ms ({slowest}); each, ms: {each}"


def assert_all_ok(answers: dict[str, Answer]) -> None:
    assert {path: a.status for path, a in answers.items()} == dict.fromkeys(answers, 200)


def assert_all_unavailable(answers: dict[str, Answer], store: str, cause: str) -> None:
    for path, answer in answers.items():
        assert answer.status == 503, (path, answer)
        assert isinstance(answer.body, dict) and set(answer.body) == {"detail"}, (path, answer)
        assert answer.body["detail"].startswith(f"{store} is unavailable: "), (path, answer)
        assert cause in answer.body["detail"], (path, answer)
        assert answer.ms < BOUND_S * 1000, (path, answer)


class Api:
    """`insiders api` in a subprocess, on a free port, its output in a file."""

    def __init__(self, redis_url: str, prefix: str, log: Path, **env: str) -> None:
        self.base = f"http://127.0.0.1:{free_port()}"
        self.log = log
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("INSIDERS_")}
        self.env = {
            **inherited,
            "INSIDERS_REDIS_URL": redis_url,
            "INSIDERS_REDIS_PREFIX": prefix,
            **env,
        }
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Api:
        port = self.base.rsplit(":", 1)[1]
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "consumer.cli", "api", "--port", port],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while True:  # any answer, 200 or 503, means it serves
            assert self.process.poll() is None, self.output()
            try:
                httpx.get(f"{self.base}/healthz", timeout=5)
                return self
            except httpx.TransportError:
                assert time.monotonic() < deadline, f"the API did not start: {self.output()}"
                time.sleep(0.1)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> int:
        """SIGTERM, as a supervisor would: the exit status."""
        assert self.process is not None
        self.process.terminate()
        return self.process.wait(timeout=20)

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


def prefix() -> str:
    return f"faults:{uuid.uuid4().hex[:10]}:"


def test_killed_redis_gives_quick_503s_then_200s_after_restart(throwaway_redis_aof, tmp_path):
    server: RedisServer = throwaway_redis_aof
    key_prefix = prefix()
    _, customer = fill(server.url, key_prefix)
    with Api(server.url, key_prefix, tmp_path / "api.log") as api, httpx.Client(timeout=10) as c:
        before = sweep(c, api.base, customer)
        assert_all_ok(before)

        server.kill()
        down = sweep(c, api.base, customer)
        assert_all_unavailable(down, f"Redis at {server.url}", "Connection refused")
        health = ask(c, f"{api.base}/healthz")
        assert (health.status, health.body["status"]) == (503, "unavailable")
        # The docs need no store, and they declare the 503 and its body on every route.
        spec = c.get(f"{api.base}/openapi.json").json()
        declared = {
            (method, path): op["responses"]["503"]["content"]["application/json"]["schema"]
            for path, ops in spec["paths"].items()
            for method, op in ops.items()
            if path != "/healthz"
        }
        assert declared and all(
            s == {"$ref": "#/components/schemas/ErrorBody"} for s in declared.values()
        )
        print(f"\nRedis killed: every route 503; {figures(down)}")

        server.restart()  # reloads its append-only file
        started = time.perf_counter()
        back = sweep(c, api.base, customer)
        assert_all_ok(back)
        print(f"Redis restarted: every route 200 again, same API process; {figures(back)}")
        print(f"  first sweep after the restart: {(time.perf_counter() - started) * 1000:.0f} ms")
        path = f"/customers/{customer}"
        assert back[path].body == before[path].body  # the data came back and is served
        assert back["/stats"].body == before["/stats"].body
        assert api.stop() == 0
    assert "Traceback" not in api.output(), api.output()


def test_frozen_redis_gives_503s_within_the_timeout_then_200s_after_thaw(throwaway_redis, tmp_path):
    server: RedisServer = throwaway_redis
    key_prefix = prefix()
    _, customer = fill(server.url, key_prefix)
    with Api(server.url, key_prefix, tmp_path / "api.log") as api, httpx.Client(timeout=30) as c:
        assert_all_ok(sweep(c, api.base, customer))

        server.freeze()  # SIGSTOP: connections are accepted, nothing is answered
        try:
            frozen = sweep(c, api.base, customer)
            health = ask(c, f"{api.base}/healthz")
        finally:
            server.thaw()
        assert_all_unavailable(frozen, f"Redis at {server.url}", "Timeout")
        assert health.status == 503 and health.ms < BOUND_S * 1000, health
        # The 503 comes from the 2 s timeout, not from something that failed fast.
        assert min(a.ms for a in frozen.values()) > 1500, figures(frozen)
        print(f"\nRedis frozen: every route 503; {figures(frozen)}; /healthz {health.ms:.0f} ms")

        thawed = sweep(c, api.base, customer)
        assert_all_ok(thawed)
        print(f"Redis thawed: every route 200 again; {figures(thawed)}")
        assert api.stop() == 0
    assert "Traceback" not in api.output(), api.output()


def test_api_started_while_redis_is_down_serves_503s_then_200s(tmp_path):
    server = RedisServer(tmp_path / "redis")  # not started yet; its port is chosen
    password = "hunter2"
    url = f"redis://:{password}@127.0.0.1:{server.port}/0"
    shown = f"redis://:***@127.0.0.1:{server.port}/0"
    key_prefix = prefix()
    try:
        started = time.perf_counter()
        with Api(url, key_prefix, tmp_path / "api.log") as api, httpx.Client(timeout=10) as c:
            up_ms = (time.perf_counter() - started) * 1000
            warnings = [line for line in api.output().splitlines() if "does not answer" in line]
            assert len(warnings) == 1 and f"Redis at {shown}" in warnings[0], api.output()
            down = sweep(c, api.base, "12347")
            assert_all_unavailable(down, f"Redis at {shown}", "Connection refused")
            print(f"\nAPI up with Redis down ({up_ms:.0f} ms with imports): 503s; {figures(down)}")

            server.start()
            with redis.Redis.from_url(server.url) as admin:
                admin.config_set("requirepass", password)
            _, customer = fill(url, key_prefix)
            back = sweep(c, api.base, customer)
            assert_all_ok(back)
            print(f"Redis started: every route 200; {figures(back)}")
            assert api.stop() == 0
        output = api.output()
        assert "Traceback" not in output, output
        assert password not in output, output
    finally:
        server.stop()


def test_event_stream_stays_open_through_an_outage_and_resumes(throwaway_redis_aof, tmp_path):
    server: RedisServer = throwaway_redis_aof
    key_prefix = prefix()
    store, _ = fill(server.url, key_prefix)
    expected = store.events(None, 10_000).events
    env = {"INSIDERS_STREAM_POLL": "0.05", "INSIDERS_STREAM_KEEPALIVE": "0.3"}
    with (
        Api(server.url, key_prefix, tmp_path / "api.log", **env) as api,
        httpx.stream("GET", f"{api.base}/events/stream", timeout=10) as response,
    ):
        assert response.status_code == 200
        stream = frames(response)
        got = [next(f for f in stream if "data" in f) for _ in expected]
        assert [orjson.loads(f["data"]) for f in got] == expected

        server.kill()
        keepalive = {"comment": "keep-alive"}
        assert next(f for f in stream if f != keepalive) == {
            "comment": "store unavailable, retrying"
        }
        assert next(stream) == keepalive  # still open, still alive
        # A new subscriber, meanwhile, gets the same 503 as every other route.
        refused = httpx.get(f"{api.base}/events/stream", timeout=10)
        assert refused.status_code == 503
        assert refused.json()["detail"].startswith(f"Redis at {server.url} is unavailable")

        server.restart()
        features = dict(expected[-1]["features"])  # a whole snapshot, as the consumer writes
        new = InsiderEvent("12348", 99, EXITED, 10**9, Reason("lapsed", "test"), 2, 1, features)
        store.commit_step(StepResult(events=[new]), store.model_checkpoint() or b"")
        started = time.perf_counter()
        frame = next(f for f in stream if "data" in f)  # the next event, none sent twice
        waited_ms = (time.perf_counter() - started) * 1000
        assert orjson.loads(frame["data"]) == new.as_dict()
        print(
            "\nevent stream: kept open through the outage; the first event after the restart "
            f"arrived on the same connection {waited_ms:.0f} ms after it was committed"
        )
        assert api.stop() == 0
    assert "Traceback" not in api.output(), api.output()
