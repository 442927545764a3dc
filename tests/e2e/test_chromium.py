"""The pages as a person sees them: a real headless Chromium (Debian's `chromium`, which
scripts/test installs) loads them from a real server over the shipped sample.

Chromium's network log says what each page loaded: requests made for the page carry its
site (127.0.0.1) as their network isolation key, the browser's own background requests
(updates, sign-in) do not. Every request made for the page must go to our server.
"""

from __future__ import annotations

import html
import http.server
import json
import re
import shutil
import socket
import struct
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytest
import uvicorn

from api.app import create_app
from consumer.file_source import FileInvoiceSource
from consumer.memory import MemoryEventSink, MemoryFeatureStore
from consumer.pipeline import Pipeline
from segmenter.model import SegmentModel
from tests.conftest import SAMPLE

WINDOW = (1280, 1800)


def chromium() -> str:
    found = shutil.which("chromium")
    if found is None:
        pytest.fail(
            "chromium is not installed: scripts/test installs it (apt-get install -y chromium)",
            pytrace=False,
        )
    return found


@dataclass
class Visit:
    dom: str  # the DOM after the page ran, as Chromium serialises it
    loaded: list[str]  # every URL requested for the page, in order
    screenshot: Path


def visit(url: str, folder: Path, wait_ms: int = 3000) -> Visit:
    """Open ``url`` in headless Chromium: its DOM, what it loaded and a screenshot."""
    folder.mkdir(parents=True, exist_ok=True)
    net, shot = folder / "net.json", folder / "page.png"
    run = subprocess.run(
        [
            chromium(),
            "--headless",
            "--no-sandbox",  # root, in CI
            "--disable-gpu",
            "--hide-scrollbars",
            f"--user-data-dir={folder / 'profile'}",
            f"--log-net-log={net}",
            f"--window-size={WINDOW[0]},{WINDOW[1]}",
            f"--screenshot={shot}",
            f"--virtual-time-budget={wait_ms}",  # lets a page's own scripts run (the docs)
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    log = json.loads(net.read_text())
    names = {number: name for name, number in log["constants"]["logEventTypes"].items()}
    loaded = [
        e["params"]["url"]
        for e in log["events"]
        if names[e["type"]] == "URL_REQUEST_START_JOB"
        and e.get("params", {}).get("network_isolation_key", "").startswith("http://127.0.0.1")
    ]
    return Visit(run.stdout, loaded, shot)


def serve(app: object) -> Iterator[str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))  # type: ignore[arg-type]
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        thread.join(0.05)
        assert thread.is_alive(), "the server did not start"
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    """The API over the shipped sample, replayed into the embedded store, on a free port."""
    store = MemoryFeatureStore()
    pipeline = Pipeline(store, MemoryEventSink(), SegmentModel())
    for block in FileInvoiceSource(SAMPLE).blocks():
        pipeline.process(block)
    yield from serve(create_app(store))


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def text_of(dom: str) -> str:
    """What a person reads: the DOM without tags, entities decoded, spaces collapsed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", dom)).split())


def only_ours(visit: Visit, base_url: str) -> None:
    assert visit.loaded, "the network log holds no request of the page"
    elsewhere = [u for u in visit.loaded if not u.startswith(base_url + "/")]
    assert not elsewhere, f"the page loaded from elsewhere: {elsewhere}"


def test_the_dashboard_as_a_person_sees_it(base_url, tmp_path):
    from urllib.request import urlopen

    with urlopen(f"{base_url}/report") as answer:
        report = json.load(answer)
    page = visit(f"{base_url}/", tmp_path)  # the front page leads to the dashboard
    only_ours(page, base_url)
    assert page.loaded[0] == f"{base_url}/" and f"{base_url}/dashboard" in page.loaded
    dom = page.dom
    # The actions come before every table, and each one is there with its count.
    actions = dom.index("What to do now")
    assert actions < dom.index("<table") and actions < dom.index("<svg")
    seen = text_of(dom)
    for action in report["actions"]:
        assert f"{action['title']} {action['count']:,}" in seen
    # Ratios as percentages: the returned share of revenue, and the Insiders' share.
    returned = next(t for t in report["traits"] if t["name"] == "returned_share")
    assert f"returned value / revenue {returned['insiders']:.1%} {returned['rest']:.1%}" in seen
    assert f"Share of revenue {report['revenue_share']:.1%}" in seen
    # A quiet week shows nothing, not +0 / −0; a busy one shows its moves.
    weeks = seen[seen.index("Membership, week by week") : seen.index("Segments")]
    assert "+0" not in weeks and "−0" not in weeks
    quiet = next(w for w in report["weeks"] if not w["entries"] and not w["exits"])
    assert f"{quiet['start'][:10]} {quiet['insiders']}" in weeks
    busy = next(w for w in report["weeks"] if w["entries"] and w["exits"])
    assert f"{busy['start'][:10]} +{busy['entries']} −{busy['exits']}" in weeks
    # The chart: a bar for each of the 12 weeks and the line of the revenue share.
    assert dom.count('class="week"') == 12 and "<polyline" in dom
    # Each customer link leads to that customer's page.
    first = report["actions"][0]["customer_ids"][0]
    assert f'href="/dashboard/customers/{first}"' in dom
    assert png_size(page.screenshot) == WINDOW


def test_a_customer_page_as_a_person_sees_it(base_url, tmp_path):
    from urllib.request import urlopen

    with urlopen(f"{base_url}/report") as answer:
        top = json.load(answer)["top_insiders"][0]["customer_id"]
    page = visit(f"{base_url}/dashboard/customers/{top}", tmp_path)
    only_ours(page, base_url)
    seen = text_of(page.dom)
    assert f"Customer {top}" in seen and "Insider since" in seen
    assert seen.index("Why") < seen.index("Features") < seen.index("History")


def test_the_docs_work_offline(base_url, tmp_path):
    page = visit(f"{base_url}/docs", tmp_path, wait_ms=8000)
    only_ours(page, base_url)
    assert f"{base_url}/docs/assets/swagger-ui-bundle.js" in page.loaded
    # Swagger UI ran and drew the API from our OpenAPI document.
    assert 'data-path="/customers/{customer_id}"' in page.dom


def test_the_network_check_sees_a_load_from_elsewhere(tmp_path):
    """The check above can fail: a page that loads an image from another host is caught.
    (192.0.2.1 is TEST-NET-1: nothing answers, but the request is made and logged.)"""
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("<img src='http://192.0.2.1/pixel.png'>")
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        page = visit(f"{base}/index.html", tmp_path / "browser", wait_ms=1000)
    finally:
        server.shutdown()
    with pytest.raises(AssertionError, match=r"192\.0\.2\.1"):
        only_ours(page, base)
