"""The FastAPI application: thin routes over the feature store's read side.

Routes are plain ``def``: FastAPI runs them in its thread pool, so the store's
blocking client never stalls the event loop, and one store interface serves both
Redis and the embedded in-memory store.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any

import redis
from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from fastapi.sse import EventSourceResponse, ServerSentEvent
from pydantic import AfterValidator

from api import metrics, pages
from api.asyncapi import add_asyncapi
from api.docs import add_docs
from api.report import current_segmenter
from api.saved_report import served
from api.schemas import (
    CustomerStatus,
    Driver,
    ErrorBody,
    EventPage,
    Features,
    Health,
    History,
    HistoryEntry,
    InsiderPage,
    Report,
    Stats,
    Why,
)
from api.security import ApiKeys, require_key, require_page_key
from api.snapshots import ReportSnapshots, Snapshot
from api.stream import EventTail, follow
from api.subscriptions import router as subscriptions_router
from consumer.event_codec import UnreadableEvent
from consumer.ports import Customer, FeatureStore
from consumer.ports import EventPage as StoredPage
from consumer.subscriptions import UnreadableSubscription
from segmenter.errors import CheckpointError
from segmenter.explain import explain
from segmenter.features import features_of, to_datetime
from segmenter.segmentation import Segmenter

CUSTOMER_ID_PATTERN = r"^[0-9A-Za-z_.-]{1,64}$"
# Event cursors: a position in the in-memory outbox ("42") or a Redis stream id ("1700-0");
# empty means from the start.
CURSOR_PATTERN = r"^([0-9]{1,20}(-[0-9]{1,20})?)?$"
# Bounds the stores can take: past them a request is the client's error (422), not a 500.
MAX_OFFSET = 10**9
MAX_LIMIT = 1000
STREAM_ID_PART = 2**64  # each part of a Redis stream id is an unsigned 64-bit number

NowFn = Callable[[FeatureStore], int | None]

# Every route answers 503 with an ErrorBody when the store does not answer. Routes whose
# success is not JSON (the page, the metrics) say the error is JSON all the same.
UNAVAILABLE = "The store (Redis) did not answer"
ERROR_JSON = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
UNAVAILABLE_JSON: dict[int | str, dict[str, Any]] = {
    503: {"description": UNAVAILABLE, "content": ERROR_JSON}
}
# With keys set, a request without a valid one gets a 401 (JSON, on every route).
UNAUTHORIZED_JSON: dict[int | str, dict[str, Any]] = {
    401: {"description": "No API key, or an unknown one", "content": ERROR_JSON}
}

log = logging.getLogger("insiders.api")


def valid_cursor(cursor: str | None) -> str | None:
    """``cursor`` if a store can read after it (the pattern is checked before).

    >>> valid_cursor("1700000000000-3"), valid_cursor(None)
    ('1700000000000-3', None)
    >>> valid_cursor("18446744073709551616")
    Traceback (most recent call last):
    ValueError: each part of a cursor must be below 2**64
    """
    if cursor:
        parts = [int(part) for part in cursor.split("-")]
        if any(part >= STREAM_ID_PART for part in parts):
            raise ValueError("each part of a cursor must be below 2**64")
        if parts == [STREAM_ID_PART - 1] * 2:
            raise ValueError("no event can come after the largest cursor")
    return cursor


def read_events(store: FeatureStore, after: str | None, limit: int, loc: tuple[str, str]) -> Any:
    """The store's page after ``after``; a cursor of the other store's kind is a 422 at ``loc``."""
    try:
        return store.events(after, limit)
    except ValueError:
        raise RequestValidationError(
            [
                {
                    "type": "value_error",
                    "loc": loc,
                    "msg": f"not a cursor of the {store.backend} store",
                    "input": after,
                }
            ]
        ) from None


def get_store(request: Request) -> FeatureStore:
    store: FeatureStore = request.app.state.store
    return store


def get_snapshots(request: Request) -> ReportSnapshots:
    snapshots: ReportSnapshots = request.app.state.snapshots
    return snapshots


def _age(snapshot: Snapshot) -> dict[str, str]:
    return {"Age": str(int(snapshot.age()))}


def get_now(request: Request) -> int | None:
    now: NowFn = request.app.state.now
    return now(request.app.state.store)


Store = Annotated[FeatureStore, Depends(get_store)]
Now = Annotated[int | None, Depends(get_now)]
Snapshots = Annotated[ReportSnapshots, Depends(get_snapshots)]
CustomerId = Annotated[
    str, Path(pattern=CUSTOMER_ID_PATTERN, description="customer id, e.g. 12347")
]
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET, description="Insiders to skip")]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="most items in the answer")]
Cursor = Annotated[
    str | None,
    Query(pattern=CURSOR_PATTERN, description="cursor to read after (`next_cursor`, an SSE id)"),
    AfterValidator(valid_cursor),
]
LastEventId = Annotated[
    str | None,
    Header(pattern=CURSOR_PATTERN, description="the SSE id a reconnecting client saw last"),
    AfterValidator(valid_cursor),
]


async def open_stream(
    store: Store, after: Cursor = None, last_event_id: LastEventId = None
) -> tuple[str | None, StoredPage]:
    """Where an event stream starts, and its first page. It is read before the answer
    starts: a subscriber arriving while the store is down gets the 503, like every route."""
    start = last_event_id or after
    loc = ("header", "last-event-id") if last_event_id else ("query", "after")
    return start, await run_in_threadpool(read_events, store, start, 100, loc)


Opening = Annotated[tuple[str | None, StoredPage], Depends(open_stream)]


def why_of(segmenter: Segmenter, customer: Customer, now: int) -> Why:
    found = explain(segmenter, customer.state, customer.status, now)
    return Why(
        summary=found.summary,
        margin=found.margin,
        to_change=found.to_change,
        lapse_in_days=found.lapse_in_days,
        drivers=[
            Driver(
                feature=d.feature,
                value=d.value,
                insider_typical=d.insider_typical,
                effect="for" if d.pull > 0 else "against",
                weight=abs(d.pull),
            )
            for d in found.drivers
        ],
    )


def status_of(
    customer: Customer, now: int | None, segmenter: Segmenter | None = None
) -> CustomerStatus:
    state, status = customer.state, customer.status
    at = now if now is not None else (state.last_ts or 0)
    features = features_of(state, at)
    return CustomerStatus(
        customer_id=customer.customer_id,
        insider=status.insider,
        insider_since=to_datetime(status.insider_since) if status.insider_since else None,
        segment=status.segment,
        model_version=status.model_version,
        as_of=to_datetime(now) if now is not None else None,
        features=Features.model_validate(features.as_dict()),
        why=why_of(segmenter, customer, at) if segmenter is not None else None,
    )


def create_app(
    store: FeatureStore,
    clock: str = "event",
    stream_poll: float = 0.5,
    keepalive: float = 15.0,
    store_name: str | None = None,
    keys: ApiKeys | None = None,
    report_refresh: float = 5.0,
) -> FastAPI:
    """Build the app over ``store``; ``clock`` is "event" (watermark) or "wall".

    ``stream_poll``: while the store does not answer, how often an event stream tries it
    again (new events wake the streams; none polls). ``keepalive``: how long a stream stays
    silent before it sends a comment line.
    ``store_name`` names the store in 503 answers (e.g. "Redis at redis://host:6379/0",
    its password masked); by default it is the store's backend.
    ``keys``: with any, every route but ``/healthz`` (and the docs) needs one; without, all
    are open.
    ``report_refresh``: the report and the dashboard answer from a snapshot, rebuilt in the
    background at most every this many seconds (see :mod:`api.snapshots`).
    """
    name = store_name or f"the {store.backend} store"
    app = FastAPI(
        title="Insiders",
        summary="Who the Insiders are, since when, and the events of entries and exits.",
        version="0.1.0",
        responses={503: {"model": ErrorBody, "description": UNAVAILABLE}},
        docs_url=None,  # served from the package's files by add_docs, not from a CDN
        redoc_url=None,
    )
    add_docs(app)
    add_asyncapi(app)  # GET /asyncapi.json: the events' document, open like the docs
    app.state.store = store
    app.state.api_keys = keys or ApiKeys()
    # Every route of this router needs a key when keys are set. The dashboard checks its own,
    # which a browser may send as a Basic password; /healthz and the docs hold no customer data.
    api = APIRouter(dependencies=[Depends(require_key)], responses=UNAUTHORIZED_JSON)
    # Set by the server on SIGINT/SIGTERM: event streams end so the stop is not held up.
    app.state.stopping = threading.Event()
    stopping: threading.Event = app.state.stopping
    app.state.now = (lambda s: s.watermark()) if clock == "event" else (lambda s: int(time.time()))
    now_of: NowFn = app.state.now
    app.state.snapshots = ReportSnapshots(
        store,
        lambda: served(store, now_of(store)),
        refresh=report_refresh,
        wall_clock=clock == "wall",
    )

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse(
            {"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(redis.RedisError)
    async def store_down(request: Request, exc: redis.RedisError) -> JSONResponse:
        # Down, frozen (the client's timeout) or still loading: the answer is a prompt 503
        # that names the store. The client reconnects on the next command.
        detail = f"{name} is unavailable: {str(exc) or type(exc).__name__}"
        log.warning("%s %s: %s", request.method, request.url.path, detail)
        return JSONResponse({"detail": detail}, status_code=503)

    def unusable(what: str) -> Callable[[Request, Exception], Awaitable[JSONResponse]]:
        """A 503 naming what in the store cannot be read: nothing of it was used."""

        async def answer(request: Request, exc: Exception) -> JSONResponse:
            detail = f"{what} in {name} is unusable: {exc}"
            log.error("%s %s: %s", request.method, request.url.path, detail)
            return JSONResponse({"detail": detail}, status_code=503)

        return answer

    app.add_exception_handler(UnreadableSubscription, unusable("a webhook subscription"))
    app.add_exception_handler(UnreadableEvent, unusable("an event"))
    # The stored checkpoint is not one we can read (corrupt, another version, or not ours):
    # nothing in it ran. Answers that need the model wait for a good one.
    app.add_exception_handler(CheckpointError, unusable("the model checkpoint"))

    @api.get(
        "/customers/{customer_id}",
        response_model=CustomerStatus,
        responses={404: {"model": ErrorBody}},
        summary="A customer's features, segment and Insider status",
    )
    def get_customer(customer_id: CustomerId, store: Store, now: Now) -> CustomerStatus:
        customer = store.customer(customer_id)
        if customer is None or not customer.state.has_purchases:
            raise HTTPException(404, f"customer {customer_id} not found (no purchases seen)")
        return status_of(customer, now, current_segmenter(store))

    @api.get(
        "/customers/{customer_id}/history",
        response_model=History,
        responses={404: {"model": ErrorBody}},
        summary="A customer's Insider entries and exits, with their reasons",
    )
    def get_history(customer_id: CustomerId, store: Store) -> History:
        customer = store.customer(customer_id)
        if customer is None:
            raise HTTPException(404, f"customer {customer_id} not found")
        events = [HistoryEntry.model_validate(e) for e in store.history(customer_id)]
        return History(customer_id=customer_id, insider=customer.status.insider, events=events)

    @api.get("/stats", response_model=Stats, summary="Counts of customers, Insiders and events")
    def stats(store: Store, now: Now) -> Stats:
        segmenter = current_segmenter(store)
        rules = segmenter.policy.settings if segmenter is not None else None
        return Stats(
            customers=store.customer_count(),
            insiders=store.insider_count(),
            model_version=segmenter.model.version if segmenter is not None else 0,
            as_of=to_datetime(now) if now is not None else None,
            events=store.event_counts(),
            policy=dataclasses.asdict(rules) if rules is not None else {},
        )

    @api.get("/insiders", response_model=InsiderPage, summary="Current Insiders, by entry time")
    def list_insiders(
        store: Store,
        now: Now,
        offset: Offset = 0,
        limit: Limit = 100,
    ) -> InsiderPage:
        customers, total = store.insiders(offset, limit)
        end = offset + len(customers)
        return InsiderPage(
            total=total,
            offset=offset,
            limit=limit,
            next_offset=end if end < total else None,
            items=[status_of(c, now) for c in customers],
        )

    @api.get("/events", response_model=EventPage, summary="Insider entries and exits, oldest first")
    def list_events(store: Store, after: Cursor = None, limit: Limit = 100) -> EventPage:
        page = read_events(store, after, limit, ("query", "after"))
        return EventPage.model_validate({"events": page.events, "next_cursor": page.next_cursor})

    tail = EventTail(store)

    @api.get(
        "/events/stream",
        summary="Insider entries and exits as server-sent events, live",
        response_class=EventSourceResponse,
        responses=UNAVAILABLE_JSON,  # the 503 (before the stream starts) is JSON
    )
    async def stream_events(store: Store, opening: Opening) -> AsyncIterator[ServerSentEvent]:
        """Every event after the cursor (`after`, or the `Last-Event-ID` header), then new
        ones as they come. Each carries its cursor as the SSE `id`, so a reconnecting client
        resumes with `Last-Event-ID`. If the store stops answering mid-stream, the stream
        stays open and resumes at the same cursor once it answers again."""
        start, first = opening
        async for item in follow(store, tail, start, first, stopping, keepalive, stream_poll, name):
            yield item

    @api.get("/report", response_model=Report, summary="The business report, live")
    def report(snapshots: Snapshots) -> Response:
        """The report as of its last build: it is rebuilt in the background once the store
        has changed (at most every few seconds); the `Age` header says how old it is."""
        snapshot = snapshots.latest()
        return Response(snapshot.body, media_type="application/json", headers=_age(snapshot))

    @app.get(
        "/dashboard",
        response_class=HTMLResponse,
        dependencies=[Depends(require_page_key)],
        responses={**UNAVAILABLE_JSON, **UNAUTHORIZED_JSON},
        summary="The business report as a page for people",
    )
    def show_dashboard(snapshots: Snapshots) -> HTMLResponse:
        snapshot = snapshots.latest()
        return HTMLResponse(snapshot.html(), headers={**_age(snapshot), **pages.HEADERS})

    @app.get("/", include_in_schema=False)
    def front() -> RedirectResponse:
        return RedirectResponse("/dashboard")

    @app.get(
        "/dashboard/customers/{customer_id}",
        response_class=HTMLResponse,
        dependencies=[Depends(require_page_key)],
        responses={
            404: {"description": "No purchase of theirs seen", "content": {"text/html": {}}},
            **UNAVAILABLE_JSON,
            **UNAUTHORIZED_JSON,
        },
        summary="A customer as a page for people: status, why, features, history",
    )
    def show_customer(customer_id: CustomerId, store: Store, now: Now) -> HTMLResponse:
        customer = store.customer(customer_id)
        if customer is None or not customer.state.has_purchases:
            page = pages.not_found_page(customer_id)
            return HTMLResponse(page, status_code=404, headers=pages.HEADERS)
        status = status_of(customer, now, current_segmenter(store))
        events = [HistoryEntry.model_validate(e) for e in store.history(customer_id)]
        history = History(customer_id=customer_id, insider=status.insider, events=events)
        return HTMLResponse(pages.customer_page(status, history), headers=pages.HEADERS)

    @api.get(
        "/metrics",
        response_class=PlainTextResponse,
        responses=UNAVAILABLE_JSON,
        summary="Counts for Prometheus: customers, Insiders, events, ignored lines",
    )
    def show_metrics(store: Store, request: Request) -> PlainTextResponse:
        """The Prometheus text format, or OpenMetrics when the `Accept` header asks for it.
        Every figure is read from the store at scrape time."""
        body, content_type = metrics.exposition(store, request.headers.get("accept"))
        return PlainTextResponse(body, media_type=content_type)

    @app.get("/healthz", response_model=Health, responses={503: {"model": Health}})
    def healthz(store: Store) -> Health | JSONResponse:
        if not store.ping():
            body = Health(status="unavailable", store=store.backend, customers=0)
            return JSONResponse(body.model_dump(), status_code=503)
        return Health(status="ok", store=store.backend, customers=store.customer_count())

    app.include_router(api)
    app.include_router(subscriptions_router)
    return app
