"""The customer page: what `/customers/{id}` and its history say, for people, escaped."""

from __future__ import annotations

import base64
from html import escape

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from api.app import create_app
from api.pages import customer_page
from api.schemas import CustomerStatus, History
from api.security import ApiKeys
from tests.conftest import SAMPLE
from tests.reference import load_lines, spec_v1


def test_the_dashboard_links_to_customer_pages(client):
    page = client.get("/dashboard").text
    top = client.get("/report").json()["top_insiders"][0]["customer_id"]
    assert f'href="/dashboard/customers/{top}"' in page
    assert 'href="/customers/' not in page  # raw JSON is reached from the customer's page


@pytest.mark.parametrize("insider", [True, False])
def test_a_customer_page_shows_features_why_and_history(client, insider):
    body = client.get("/report").json()
    if insider:
        cid = body["top_insiders"][0]["customer_id"]
    else:
        cid = next(a for a in body["actions"] if a["key"] == "nearly")["customer_ids"][0]
    answer = client.get(f"/dashboard/customers/{cid}")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in answer.headers["content-security-policy"]
    page = answer.text
    assert "<script" not in page
    # Features, by pandas from the sample.
    features = spec_v1(load_lines(SAMPLE)).loc[cid]
    assert f"<td>revenue</td><td class='n'>£{features['revenue']:,.0f}</td>" in page
    assert f"<td>invoices</td><td class='n'>{features['invoices']:,}</td>" in page
    # The why and the history, as the JSON routes give them.
    status = client.get(f"/customers/{cid}").json()
    assert status["insider"] is insider
    assert ("Insider</b> since" in page) is insider
    assert escape(status["why"]["summary"]) in page
    for driver in status["why"]["drivers"]:
        assert f"<td>{driver['feature']}</td>" in page
    events = client.get(f"/customers/{cid}/history").json()["events"]
    assert page.count("<td>entered</td>") == sum(e["type"] == "insider.entered" for e in events)
    for event in events:
        assert escape(event["reason"]["text"]) in page
    assert page.index("<h2>Why</h2>") < page.index("<h2>Features</h2>") < page.index("History<")
    assert f"href='/customers/{cid}'" in page  # the JSON stays where it was


def test_an_unknown_customer_is_a_404_page_and_a_bad_id_a_422(client):
    answer = client.get("/dashboard/customers/nobody.here")
    assert answer.status_code == 404 and "No customer nobody.here" in answer.text
    assert answer.headers["content-type"].startswith("text/html")
    assert client.get("/dashboard/customers/%3Cb%3E").status_code == 422


def test_a_customer_page_escapes_what_it_shows(client):
    cid = client.get("/report").json()["top_insiders"][0]["customer_id"]
    status = CustomerStatus.model_validate(client.get(f"/customers/{cid}").json())
    hostile = '"><img src=x onerror=alert(1)>'
    status = status.model_copy(update={"customer_id": hostile})
    history = History.model_validate(client.get(f"/customers/{cid}/history").json())
    history.events[0].reason.text = "<script>alert(2)</script>"
    page = customer_page(status, history)
    assert "<img src=x" not in page and "<script>" not in page
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in page
    assert "href='/customers/%22%3E%3Cimg%20src%3Dx%20onerror%3Dalert%281%29%3E'" in page


def test_a_customer_page_needs_a_key_when_keys_are_set(client):
    keyed = TestClient(create_app(client.app.state.store, keys=ApiKeys.of(read=[SecretStr("k1")])))
    cid = client.get("/report").json()["top_insiders"][0]["customer_id"]
    route = f"/dashboard/customers/{cid}"
    assert keyed.get(route).status_code == 401
    assert keyed.get(route).headers["www-authenticate"].startswith("Basic")
    login = base64.b64encode(b"anyone:k1").decode()
    assert keyed.get(route, headers={"Authorization": f"Basic {login}"}).status_code == 200
    assert keyed.get(route, headers={"Authorization": "Bearer k1"}).status_code == 200
    assert keyed.get("/docs").status_code == 200  # the docs hold no customer data
    assert keyed.get("/", follow_redirects=False).status_code == 307
