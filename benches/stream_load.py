"""How many open /events/stream a default `insiders api` takes: /customers latency with N
streams open, and how long one new event takes to reach all N. Real Redis, the real CLI.

    .venv/bin/python benches/stream_load.py 0 100 500 1000 2000

The client runs on the same machine as the API and Redis; the figures are for one API
process. Takes the free port and the test prefix helpers from the test suite.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from consumer.file_source import FileInvoiceSource  # noqa: E402
from consumer.memory import MemoryEventSink  # noqa: E402
from consumer.pipeline import Pipeline  # noqa: E402
from consumer.redis_store import RedisFeatureStore  # noqa: E402
from segmenter.events import EXITED, InsiderEvent, Reason  # noqa: E402
from segmenter.segmentation import StepResult  # noqa: E402
from tests.api.test_serve import free_port  # noqa: E402
from tests.conftest import REDIS_URL, SAMPLE, delete_prefix  # noqa: E402


async def open_stream(port: int, after: str, got: asyncio.Event) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET /events/stream?after={after} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    try:
        while True:
            line = await reader.readline()
            if not line:
                return
            if line.startswith(b"data: "):
                got.set()
    finally:
        writer.close()


async def measure(port: int, store: RedisFeatureStore, customer: str, n: int) -> str:
    after = store.events(None, 10_000).next_cursor or ""
    events = [asyncio.Event() for _ in range(n)]
    tasks = [asyncio.create_task(open_stream(port, after, e)) for e in events]
    await asyncio.sleep(2 + n / 500)  # let them connect
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        times = []
        for _ in range(50):
            started = time.perf_counter()
            r = await client.get(f"/customers/{customer}")
            assert r.status_code == 200, r.text
            times.append((time.perf_counter() - started) * 1000)
    features = store.events(None, 1).events[0]["features"]
    assert isinstance(features, dict)
    seq = int(time.time())
    new = InsiderEvent("12348", seq, EXITED, 10**9, Reason("lapsed", "load"), 2, 1, features)
    started = time.perf_counter()
    await asyncio.to_thread(
        store.commit_step, StepResult(events=[new]), store.model_checkpoint() or b""
    )
    await asyncio.wait_for(asyncio.gather(*(e.wait() for e in events)), 60)
    fanout = (time.perf_counter() - started) * 1000
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    times.sort()
    return (
        f"| {n} | {statistics.median(times):.1f} | {times[int(len(times) * 0.99) - 1]:.1f} "
        f"| {fanout:.0f} |"
    )


def main() -> None:
    prefix = f"load:{uuid.uuid4().hex[:8]}:"
    store = RedisFeatureStore.from_url(REDIS_URL, prefix)
    pipeline = Pipeline(store, MemoryEventSink())
    for block in FileInvoiceSource(SAMPLE).blocks():
        pipeline.process(block)
    customer = str(store.events(None, 1).events[0]["customer_id"])
    port = free_port()
    env = {**os.environ, "INSIDERS_REDIS_URL": REDIS_URL, "INSIDERS_REDIS_PREFIX": prefix}
    api = subprocess.Popen(
        [sys.executable, "-m", "consumer.cli", "api", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline
                time.sleep(0.2)
        print("| open streams | /customers p50 ms | /customers p99 ms | one event to all, ms |")
        print("| --- | --- | --- | --- |")
        for n in [int(a) for a in sys.argv[1:]] or [0, 100, 500, 1000]:
            print(asyncio.run(measure(port, store, customer, n)), flush=True)
    finally:
        api.terminate()
        api.wait(timeout=30)
        delete_prefix(store.client, prefix)


if __name__ == "__main__":
    main()
