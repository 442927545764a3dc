"""The ``insiders`` command line. Each subcommand is thin: parse, build, run, report."""

from __future__ import annotations

import argparse
import contextlib
import itertools
import logging
import os
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from consumer.gc_tuning import tune_collector
from consumer.progress import progress
from consumer.settings import ConsumerSettings
from consumer.signals import Stopper
from segmenter.errors import InsidersError

if TYPE_CHECKING:  # the model (river) takes a second to import: main() must start at once
    from consumer.ports import BlockSource, EventSink, FeatureStore

log = logging.getLogger("insiders")


def build_pipeline(
    store: FeatureStore, sink: EventSink, settings: ConsumerSettings, report: bool = False
) -> Any:
    """The pipeline with the model and policy the settings describe; ``report``: it builds
    the business report and saves it in the store for the API (api.saved_report)."""
    from consumer.pipeline import Pipeline, event_clock, wall_clock
    from segmenter.model import SegmentModel
    from segmenter.policy import InsiderPolicy, PolicySettings

    try:
        rules = PolicySettings(
            target_share=settings.target_share or None,
            share_band=settings.share_band,
            entry_margin=settings.entry_margin,
            exit_margin=settings.exit_margin,
            min_dwell_days=settings.min_dwell_days,
            lapse_days=settings.lapse_days,
            overdue_factor=settings.overdue_factor,
        )
    except ValueError as exc:
        raise InsidersError(f"INSIDERS_TARGET_SHARE / INSIDERS_SHARE_BAND: {exc}") from None
    policy = InsiderPolicy(rules)
    model = SegmentModel(n_segments=settings.segments, seed=settings.seed)
    clock = event_clock if settings.clock == "event" else wall_clock
    writer = None
    if report:
        from api.saved_report import ReportWriter

        writer = ReportWriter(store, settings.report_every)
    pipeline = Pipeline(store, sink, model, clock, policy, writer)
    # What exists now (the modules, a snapshot's state) lives as long as the process.
    tune_collector(settings.gc_young)
    return pipeline


def run_pipeline(
    source: BlockSource,
    store: FeatureStore,
    sink: EventSink,
    settings: ConsumerSettings,
    total: int | None = None,
    on_block: Callable[[], None] | None = None,
    report: bool = False,
) -> tuple[Any, float]:
    """Drive ``source`` through the pipeline until it ends or is stopped; returns (stats, secs).

    ``report``: the pipeline saves the business report in the store as it goes, and the
    last one when the source ends (for an API over the store)."""
    pipeline = build_pipeline(store, sink, settings, report)
    started = time.perf_counter()
    bar = progress(total, interval=settings.progress_every)
    try:
        for block in source.blocks():
            pipeline.process(block)
            source.commit(block)
            bar.update(len(block))
            bar.set_postfix(insiders=store.insider_count(), refresh=False)
            if on_block is not None:
                on_block()
        if not source.stopping:
            pipeline.write_report(final=True)
    finally:
        bar.close()
    elapsed = time.perf_counter() - started
    log_summary(pipeline.stats, elapsed, store)
    return pipeline.stats, elapsed


def log_summary(stats: Any, elapsed: float, store: FeatureStore) -> None:
    log.info(
        "%s in %.1fs (%.0f lines/s)", stats.summary(), elapsed, stats.records / max(elapsed, 1e-9)
    )
    if stats.rejected:
        log.info("rejected by reason: %s", dict(sorted(stats.rejected.items())))
    ignored = store.ignored_counts()
    if ignored:
        log.info("valid but ignored by spec v1: %s", dict(sorted(ignored.items())))


# --- subcommands -------------------------------------------------------------------------------


def cmd_publish(args: argparse.Namespace, settings: ConsumerSettings) -> int:
    from consumer.file_source import check_accepted
    from consumer.files import in_time_order
    from consumer.kafka_io import KafkaPublisher, RateLimiter, ensure_topics

    path = Path(args.path)
    # Before Kafka is touched: the file, its layout, and that the consumer would accept a
    # line of it (read up to the first valid line; every line only when none is).
    check_accepted(path)
    records = in_time_order(path)
    first = next(records, None)
    kafka = settings.kafka()
    ensure_topics(kafka, [settings.topic], args.partitions)
    publisher = KafkaPublisher(kafka, settings.topic, settings.outage_seconds)
    limiter = RateLimiter(args.rate)
    stopper: Stopper = args.stopper
    stopper.on_stop(lambda: None)  # stop between records, after confirming what was sent
    count = 0
    started = time.perf_counter()
    try:
        with progress(desc=path.name, interval=settings.progress_every) as bar:
            for record in itertools.chain([first] if first else [], records):
                if stopper.requested.is_set():
                    break
                publisher.send(record)
                limiter.tick()
                count += 1
                if count % 2000 == 0:
                    bar.update(2000)
            bar.update(count % 2000)
        publisher.flush()
    finally:
        publisher.close()
    elapsed = time.perf_counter() - started
    if stopper.requested.is_set():
        print(f"stopped: published {count:,} lines from {path} (all acknowledged)")
        return 130
    print(
        f"published {count:,} lines from {path} to {settings.topic} "
        f"in {elapsed:.1f}s ({count / max(elapsed, 1e-9):,.0f} lines/s)"
    )
    return 0


def cmd_consume(args: argparse.Namespace, settings: ConsumerSettings) -> int:
    from consumer.kafka_io import (
        KEEP_FOREVER,
        KafkaEventSink,
        KafkaInvoiceSource,
        dlq_topic,
        ensure_topics,
    )
    from consumer.redis_store import RedisFeatureStore
    from consumer.service import ConsumerService

    stopper: Stopper = args.stopper
    sources: list[KafkaInvoiceSource] = []

    def stop_reading() -> None:
        for source in sources:
            source.stopping = True

    stopper.on_stop(stop_reading)  # from here on a signal is a clean stop, not an interrupt
    store = RedisFeatureStore.from_url(
        settings.redis_url,
        settings.redis_prefix,
        settings.seen_buckets,
        retention=settings.retention(),
    )
    kafka = settings.kafka()
    ensure_topics(kafka, [settings.topic])
    ensure_topics(kafka, [dlq_topic(settings.topic), settings.events_topic], configs=KEEP_FOREVER)
    sink = KafkaEventSink(kafka, settings.events_topic, give_up_after=settings.outage_seconds)
    # Unique per process start: a restarted container with the same host name and pid
    # is still another owner.
    owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    metrics = None
    if settings.metrics_port:
        from consumer.metrics import ConsumerMetrics

        metrics = ConsumerMetrics()
    service = ConsumerService(
        store,
        lambda: build_pipeline(store, sink, settings, report=True),
        owner,
        settings.writer_ttl,
        settings.writer_wait,
        settings.outage_seconds,
        stopper.requested,
        metrics,
    )
    stopper.on_force(service.release)
    server = None
    try:
        if metrics is not None and settings.metrics_port:
            server = metrics.serve(settings.metrics_port)  # a port in use: one line, here
        service.claim()
        if stopper.requested.is_set():
            return 0
        source = KafkaInvoiceSource(
            kafka,
            settings.topic,
            settings.group,
            settings.block_size,
            exit_at_end=args.exit_at_end,
            start_offset=service.start_offset,
            accept_gap=args.accept_gap,
            outage_seconds=settings.outage_seconds,
        )
        sources.append(source)
        if stopper.requested.is_set():
            source.stopping = True
        total = sum(source.end_offsets.values()) if args.exit_at_end else None
        bar = progress(total, interval=settings.progress_every)
        started = time.perf_counter()
        try:
            stats = service.run(source, on_block=bar.update)
        finally:
            bar.close()
            source.close()
    finally:
        if server is not None:
            server.close()
        service.release()
        sink.close()
    log_summary(stats, time.perf_counter() - started, store)
    if service.recoveries:
        log.info("resumed from Redis %d time(s) after it diverged or went away", service.recoveries)
    return 0


def cmd_export(args: argparse.Namespace, settings: ConsumerSettings) -> int:
    from consumer.export import export_frame, write_export
    from consumer.redis_store import RedisFeatureStore

    store = RedisFeatureStore.from_url(settings.redis_url, settings.redis_prefix)
    now = store.watermark() if settings.clock == "event" else int(time.time())
    frame = export_frame(store, now)
    out = Path(args.out or f"insiders.{args.format}")
    write_export(frame, out, args.format)
    print(f"wrote {len(frame):,} customers ({int(frame['insider'].sum()):,} Insiders) to {out}")
    return 0


def replay_embedded(
    path: Path | str,
    settings: ConsumerSettings,
    snapshot: str | None,
    until: datetime | None = None,
    stopper: Stopper | None = None,
    report: bool = False,
) -> tuple[Any, Any, float, bool]:
    """File source, in-memory state (from ``snapshot`` if it exists): (store, stats, s, stopped).

    ``report``: save the business report in the store for an API over it (the demo)."""
    from consumer.file_source import FileInvoiceSource
    from consumer.memory import MemoryEventSink, MemoryFeatureStore

    saved = Path(snapshot) if snapshot else None
    store = (
        MemoryFeatureStore.load_snapshot(saved, settings.retention())
        if saved is not None and saved.exists()
        else MemoryFeatureStore(retention=settings.retention())
    )
    source = FileInvoiceSource(path, settings.block_size, until=until)
    if stopper is not None:
        stopper.on_stop(lambda: setattr(source, "stopping", True))
    stats, elapsed = run_pipeline(source, store, MemoryEventSink(), settings, report=report)
    return store, stats, elapsed, source.stopping


def save_snapshot(store: Any, snapshot: str | None) -> None:
    if snapshot:
        store.save(Path(snapshot))
        print(f"saved state to {snapshot}")


def cmd_replay(args: argparse.Namespace, settings: ConsumerSettings) -> int:
    from consumer.export import export_frame, write_export

    store, stats, elapsed, _ = replay_embedded(
        args.path, settings, args.snapshot, args.until, args.stopper
    )
    save_snapshot(store, args.snapshot)
    insiders = store.insider_count()
    print(
        f"replayed {stats.records:,} lines in {elapsed:.1f}s "
        f"({stats.records / max(elapsed, 1e-9):,.0f} lines/s): "
        f"{store.customer_count():,} customers, {insiders:,} Insiders"
    )
    if args.export:
        out = Path(args.export)
        fmt = "parquet" if out.suffix == ".parquet" else "csv"
        frame = export_frame(store, store.watermark())
        write_export(frame, out, fmt)
        print(f"wrote {len(frame):,} customers to {out}")
    if args.report:
        write_report(store, Path(args.report), store.watermark())
    return 0


def cmd_report(args: argparse.Namespace, settings: ConsumerSettings) -> int:
    from consumer.redis_store import RedisFeatureStore

    store = RedisFeatureStore.from_url(settings.redis_url, settings.redis_prefix)
    now = store.watermark() if settings.clock == "event" else int(time.time())
    write_report(store, Path(args.out), now)
    return 0


def write_report(store: Any, out: Path, now: int | None) -> None:
    from api.report import as_markdown, current_report

    text = as_markdown(current_report(store, now))
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise InsidersError(f"cannot write {out}: {exc.strerror or exc}") from None
    print(f"wrote the report to {out}")


def _port_free(host: str, port: int) -> None:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            raise InsidersError(
                f"port {port} on {host} is in use; stop what holds it or pass --port N"
            ) from None


def cmd_demo(args: argparse.Namespace, settings: ConsumerSettings) -> int:
    from importlib import resources

    from api.app import create_app

    host = "127.0.0.1"
    _port_free(host, args.port)
    if args.data:
        data = Path(args.data)
    else:
        data = Path(str(resources.files("consumer").joinpath("data/online_retail_sample.csv.gz")))
    print(f"replaying {data.name} through the pipeline (embedded: no Kafka, no Redis)...")
    store, stats, elapsed, stopped = replay_embedded(
        data, settings, args.snapshot, stopper=args.stopper, report=True
    )
    if stopped:
        return 130
    save_snapshot(store, args.snapshot)
    customers = list(store.customers())
    total = sum(c.state.revenue_micros for c in customers)
    insiders = [c for c in customers if c.status.insider]
    share = sum(c.state.revenue_micros for c in insiders) / total if total else 0.0
    print(
        f"{stats.records:,} lines in {elapsed:.1f}s: {len(customers):,} customers, "
        f"{len(insiders):,} Insiders ({len(insiders) / max(len(customers), 1):.1%} of customers) "
        f"holding {share:.1%} of revenue"
    )
    app = create_app(store, clock=settings.clock)  # the clock the replay ran on
    stop_webhooks = start_webhooks(app, store)
    try:
        serve(app, host, args.port, log_level="warning", hint=True)
    finally:
        stop_webhooks()
    print("stopped")
    return 0


def start_webhooks(app: Any, store: Any) -> Callable[[], None]:
    """The demo's webhook worker, a thread sharing the app's in-memory subscriptions; returns
    what stops it."""
    from consumer.settings import WebhookSettings
    from consumer.subscriptions import MemorySubscriptionStore

    hooks = WebhookSettings()
    app.state.subscriptions = subscriptions = MemorySubscriptionStore(store)
    worker = hooks.worker(subscriptions, store)
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), name="webhooks", daemon=True)
    thread.start()

    def stopped() -> None:
        stop.set()
        thread.join(GRACE_JOIN)

    return stopped


GRACE_JOIN = 3.0  # seconds the demo waits for deliveries in hand when it stops


def cmd_evaluate(args: argparse.Namespace, settings: ConsumerSettings) -> int:
    from consumer.evaluate import evaluate, report
    from consumer.memory import MemoryEventSink, MemoryFeatureStore
    from consumer.pipeline import Pipeline

    def make_pipeline(store: MemoryFeatureStore) -> Pipeline:
        return build_pipeline(store, MemoryEventSink(), settings)

    result = evaluate(
        Path(args.path), make_pipeline, args.cut, settings.block_size, args.draws, settings.seed
    )
    print(report(result))
    return 0


def cmd_generate(args: argparse.Namespace, settings: ConsumerSettings) -> int:
    from consumer.synthetic import parse_start, write_history

    start = parse_start(args.start) if args.start is not None else None
    out = Path(args.out)
    written = write_history(out, args.customers, args.seed, start, args.days, args.level)
    print(
        f"wrote {written.lines:,} lines of {args.customers:,} customers (seed {args.seed}) "
        f"to {out} in {written.seconds:.1f}s "
        f"({written.lines / max(written.seconds, 1e-9):,.0f} lines/s, "
        f"{written.bytes / 2**20:,.1f} MiB)"
    )
    return 0


def serve(app: Any, host: str, port: int, log_level: str, hint: bool = False) -> None:
    """Run uvicorn until SIGINT or SIGTERM, then return normally (a clean stop, exit 0)."""
    import uvicorn

    # uvicorn handles both signals, shuts down gracefully, then re-raises the signal to
    # the handlers it found: make those a clean return, not a traceback or a kill.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda signum, frame: None)

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            # Event-stream subscribers never hang up on their own: tell the streams to
            # end, so a graceful stop is not held up by a subscriber.
            stopping = getattr(app.state, "stopping", None)
            if stopping is not None:
                stopping.set()
            super().handle_exit(sig, frame)

    # The grace period is a backstop for any other response that does not finish.
    config = uvicorn.Config(
        app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=10
    )
    server = Server(config)

    def announce() -> None:
        # Only once the socket is bound: a user who copies the URL must get an answer.
        while not server.started and not server.should_exit:
            time.sleep(0.05)
        if server.started:
            url = f"http://{host}:{port}"
            print(f"serving the API on {url}  (docs: {url}/docs)", flush=True)
            if hint:
                print(
                    f"try: curl {url}/insiders?limit=5, or open {url}/dashboard   (Ctrl-C stops)",
                    flush=True,
                )

    threading.Thread(target=announce, daemon=True).start()
    with contextlib.suppress(KeyboardInterrupt):
        server.run()


def cmd_api(args: argparse.Namespace, settings: ConsumerSettings) -> int:
    from api.app import create_app
    from api.security import ApiKeys, is_loopback
    from api.settings import ApiSettings
    from consumer.redis_store import RedisFeatureStore, masked

    api_settings = ApiSettings()
    if args.redis_url:
        api_settings.redis_url = args.redis_url
    host, port = args.host or api_settings.host, args.port or api_settings.port
    keys = ApiKeys.of(api_settings.api_keys, api_settings.admin_keys)
    # Protected mode, as Redis has it: without keys, only this machine may be served.
    if not keys.enabled and not is_loopback(host):
        if not args.insecure:
            raise InsidersError(
                f"refusing to serve {host} without API keys: set INSIDERS_API_KEYS "
                "(or INSIDERS_API_KEYS_FILE), bind 127.0.0.1, or pass --insecure"
            )
        log.warning("serving %s without API keys (--insecure): anyone who reaches it reads", host)
    elif keys.enabled:
        log.info("every route but /healthz and the docs needs an API key")
    # Short timeouts, and no check at start: while Redis is down or frozen, every route
    # answers a prompt 503, and the next request after it comes back reconnects.
    store = RedisFeatureStore.from_url(
        api_settings.redis_url,
        api_settings.redis_prefix,
        timeout=api_settings.redis_timeout,
        check=False,
    )
    store_name = f"Redis at {masked(api_settings.redis_url)}"
    if not store.ping():
        log.warning("%s does not answer; the API answers 503 until it does", store_name)
    _port_free(host, port)
    app = create_app(
        store,
        clock=api_settings.clock,
        stream_poll=api_settings.stream_poll,
        keepalive=api_settings.stream_keepalive,
        store_name=store_name,
        keys=keys,
        report_refresh=api_settings.report_refresh,
    )
    serve(app, host, port, log_level="info")
    return 0


def cmd_webhooks(args: argparse.Namespace, settings: ConsumerSettings) -> int:
    from consumer.redis_store import RedisFeatureStore
    from consumer.settings import WebhookSettings
    from consumer.subscriptions import RedisSubscriptionStore

    hooks = WebhookSettings()
    if args.redis_url:
        hooks.redis_url = args.redis_url
    if args.webhook_metrics_port:
        hooks.webhook_metrics_port = args.webhook_metrics_port
    store = RedisFeatureStore.from_url(hooks.redis_url, hooks.redis_prefix)
    stopper: Stopper = args.stopper
    stop = threading.Event()
    stopper.on_stop(stop.set)  # finish the deliveries in hand, then stop
    subscriptions = RedisSubscriptionStore(store.client, store.prefix)
    metrics, server = None, None
    if hooks.webhook_metrics_port:
        from consumer.webhook_metrics import WebhookMetrics

        metrics = WebhookMetrics(subscriptions)
        server = metrics.serve(hooks.webhook_metrics_port)  # a port in use: one line, here
    worker = hooks.worker(subscriptions, store, metrics)
    try:
        worker.run(stop)
    finally:
        if server is not None:
            server.close()
    return 0


def _date(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date like 2011-09-08") from None


DATA_FILE = (
    ".csv, .csv.gz or .xlsx in the UCI, Online Retail II or Kaggle layout, or purchases "
    "(customer_id, date, amount per line; CDNOW's whitespace-separated .txt too)"
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="insiders",
        description="Streaming customer segmentation: finds the Insiders, the top-value "
        "customers, from invoice lines, and keeps the list current.",
        epilog="Settings come from INSIDERS_* environment variables "
        "(INSIDERS_KAFKA_BOOTSTRAP, INSIDERS_REDIS_URL, ...); flags override them.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def connection_flags(p: argparse.ArgumentParser, kafka: bool = True) -> None:
        if kafka:
            p.add_argument("--bootstrap", help="Kafka bootstrap servers (default 127.0.0.1:9092)")
        p.add_argument("--redis-url", help="Redis URL (default redis://127.0.0.1:6379/0)")

    p = sub.add_parser("publish", help="produce a file's invoice lines or purchases to Kafka")
    p.add_argument("path", help=DATA_FILE)
    p.add_argument("--topic", help="topic to produce to (default invoices)")
    p.add_argument("--rate", type=float, help="lines per second (default: as fast as possible)")
    p.add_argument("--partitions", type=int, default=1, help="partitions if the topic is new")
    connection_flags(p)
    p.set_defaults(func=cmd_publish)

    p = sub.add_parser("consume", help="apply invoice lines from Kafka to Redis and segment")
    p.add_argument("--topic", help="topic to consume (default invoices)")
    p.add_argument("--group", help="consumer group (default insiders)")
    p.add_argument(
        "--exit-at-end",
        action="store_true",
        help="backfill: consume up to the end offsets present at start, then exit",
    )
    p.add_argument("--block-size", type=int, help="lines per segmentation step (default 5000)")
    p.add_argument("--clock", choices=["event", "wall"], help="what 'now' is (default event)")
    p.add_argument(
        "--accept-gap",
        action="store_true",
        help="go on when the topic no longer holds the records after the state's last offset "
        "(removed by retention); without it the consumer refuses to start",
    )
    p.add_argument(
        "--metrics-port",
        metavar="[HOST:]PORT",
        help="serve the consumer's metrics for Prometheus at http://HOST:PORT/metrics: lag per "
        "partition, lines read and applied, block latency, dead letters by reason, last commit "
        "time. HOST defaults to 127.0.0.1 (0.0.0.0: every interface); port 0 takes a free one. "
        "Default: off (INSIDERS_METRICS_PORT)",
    )
    connection_flags(p)
    p.set_defaults(func=cmd_consume)

    p = sub.add_parser(
        "api", help="serve the HTTP API (status, Insiders, events, report, dashboard, docs)"
    )
    p.add_argument("--host", help="interface to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default 8000)")
    p.add_argument(
        "--insecure",
        action="store_true",
        help="serve an address other than loopback without API keys (INSIDERS_API_KEYS)",
    )
    connection_flags(p, kafka=False)
    p.set_defaults(func=cmd_api)

    p = sub.add_parser(
        "webhooks",
        help="deliver Insider entries and exits to webhook subscriptions (a worker)",
        description="Deliver every Insider entry and exit to every webhook subscription "
        "(POST /subscriptions on the API, with an admin key), one signed POST per event "
        "(Standard Webhooks: webhook-id is the event id; verify with the standardwebhooks "
        "library and the subscription's secret). Delivery is at least once, in order: an "
        "event is sent again until the receiver answers 2xx, after 2 s, 4 s, 8 s, ... up to "
        "an hour between tries, each jittered. A subscription still failing 24 hours after "
        "its first failure is parked: it keeps its place, gets nothing more, and shows as "
        "parked in GET /subscriptions/{id} until POST /subscriptions/{id}/resume. "
        "SIGINT or SIGTERM finishes the deliveries in hand and stops; an event whose "
        "delivery was cut short is sent again at the next start.",
        epilog="Settings: INSIDERS_REDIS_URL, INSIDERS_REDIS_PREFIX, INSIDERS_WEBHOOK_TIMEOUT "
        "(10 s), INSIDERS_WEBHOOK_BACKOFF (2 s, the first wait), INSIDERS_WEBHOOK_BACKOFF_MAX "
        "(3600 s), INSIDERS_WEBHOOK_RETRY_FOR (86400 s, then parked), INSIDERS_WEBHOOK_POLL "
        "(1 s between looks for new events), INSIDERS_WEBHOOK_CONCURRENCY (8 subscriptions "
        "at once), INSIDERS_WEBHOOK_METRICS_PORT (off).",
    )
    p.add_argument(
        "--metrics-port",
        dest="webhook_metrics_port",
        metavar="[HOST:]PORT",
        help="serve the worker's metrics for Prometheus at http://HOST:PORT/metrics: "
        "deliveries, failures by reason (HTTP status class, timeout, connection), lag per "
        "subscription, subscriptions parked. HOST defaults to 127.0.0.1 (0.0.0.0: every "
        "interface); port 0 takes a free one. Default: off (INSIDERS_WEBHOOK_METRICS_PORT)",
    )
    connection_flags(p, kafka=False)
    p.set_defaults(func=cmd_webhooks)

    p = sub.add_parser("export", help="write every customer's features and segment to a file")
    p.add_argument("--out", help="output path (default insiders.csv or insiders.parquet)")
    p.add_argument("--format", choices=["csv", "parquet"], default="csv")
    connection_flags(p, kafka=False)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("report", help="write the business report (Markdown) from Redis")
    p.add_argument(
        "--out", default="insiders-report.md", help="output path (default insiders-report.md)"
    )
    connection_flags(p, kafka=False)
    p.set_defaults(func=cmd_report)

    p = sub.add_parser(
        "demo",
        help="replay a file in-process, then serve the API and dashboard: a first look, no servers",
    )
    p.add_argument("--data", help="a file `publish` reads (default: the shipped sample)")
    p.add_argument("--port", type=int, default=8000, help="port to serve on (default 8000)")
    p.add_argument("--snapshot", metavar="FILE", help="load state from FILE if present; save it")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser(
        "evaluate", help="replay a file embedded and measure the Insiders (value, agreement)"
    )
    p.add_argument("path", help="the full history, e.g. online_retail.csv.gz")
    p.add_argument(
        "--cut",
        type=_date,
        default=datetime(2011, 9, 8, 23, 59, 59),
        help="take the Insiders at this event time (default 2011-09-08 end of day)",
    )
    p.add_argument("--draws", type=int, default=1000, help="bootstrap draws (default 1000)")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser(
        "generate",
        help="write a synthetic retail history of N customers (UCI layout), for scale tests",
        description="Write a synthetic retail history in the UCI Online Retail layout: "
        "N customers' invoice lines, in time order, with UCI's purchase rates, baskets, "
        "returns, customer mix, seasons and junk (lines without a customer, fees, "
        "adjustments). The same --customers, --seed, --start and --days give the same file, "
        "byte for byte. About 125 lines a customer: 1.2M lines for 10,000 customers, "
        "125M for 1,000,000.",
    )
    p.add_argument("out", metavar="OUT", help="the file to write: .csv, or .csv.gz (gzip)")
    p.add_argument(
        "--customers", type=int, required=True, metavar="N", help="customers (1 to 50,000,000)"
    )
    p.add_argument("--seed", type=int, required=True, metavar="S", help="random seed")
    p.add_argument(
        "--start", metavar="DATE", help="first day, like 2010-12-01 (default: UCI's, 2010-12-01)"
    )
    p.add_argument(
        "--days", type=int, metavar="D", help="days of history (default 374, to 2011-12-09)"
    )
    p.add_argument(
        "--level",
        type=int,
        default=1,
        choices=range(1, 10),
        metavar="1-9",
        help="gzip level of a .csv.gz (default 1: fastest)",
    )
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("replay", help="run a file through the pipeline in-process (no servers)")
    p.add_argument("path", help=DATA_FILE)
    p.add_argument("--export", metavar="OUT", help="write the export (.csv or .parquet) here")
    p.add_argument("--report", metavar="OUT.md", help="write the business report (Markdown) here")
    p.add_argument("--until", type=_date, help="stop at this event time, e.g. 2011-09-08")
    p.add_argument(
        "--snapshot", metavar="FILE", help="load state from FILE if present; save on exit"
    )
    p.add_argument("--block-size", type=int, help="lines per segmentation step (default 5000)")
    p.set_defaults(func=cmd_replay)
    return parser


def settings_from(args: argparse.Namespace) -> ConsumerSettings:
    overrides = {
        "kafka_bootstrap": getattr(args, "bootstrap", None),
        "redis_url": getattr(args, "redis_url", None),
        "topic": getattr(args, "topic", None),
        "group": getattr(args, "group", None),
        "block_size": getattr(args, "block_size", None),
        "clock": getattr(args, "clock", None),
        "metrics_port": getattr(args, "metrics_port", None),
    }
    return ConsumerSettings(**{k: v for k, v in overrides.items() if v is not None})


def setting_error(error: ValidationError) -> str:
    """A bad ``INSIDERS_*`` value in one line: the variable, its value and what is wrong."""
    first = error.errors()[0]
    if not first["loc"]:  # a check across settings: its message names the variable itself
        return f"setting {first['msg']}"
    name = "INSIDERS_" + "_".join(str(part) for part in first["loc"]).upper()
    return f"setting {name}={first.get('input')!r}: {first['msg']}"


def main(argv: Sequence[str] | None = None) -> int:
    # First: a signal in any phase stops the process within seconds, releasing its lock.
    stopper = Stopper()
    if threading.current_thread() is threading.main_thread():
        stopper.install()
    try:
        return _main(argv, stopper)
    except KeyboardInterrupt:  # a signal before a command could take it as a clean stop
        print("insiders: interrupted", file=sys.stderr)
        return 130
    finally:
        stopper.finished.set()
        stopper.uninstall()


def _main(argv: Sequence[str] | None, stopper: Stopper) -> int:
    args = build_parser().parse_args(argv)
    args.stopper = stopper
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # Even with -v: kafka-python's debug lines hold the client configuration, the password too.
    logging.getLogger("kafka").setLevel(logging.WARNING)
    # PLAIN and SCRAM over SASL_PLAINTEXT warn on every connection; README "Security" says it.
    logging.getLogger("kafka.net.sasl").setLevel(logging.ERROR)
    try:
        return int(args.func(args, settings_from(args)))
    except ValidationError as error:
        return fail(setting_error(error))
    except InsidersError as error:
        return fail(str(error))
    except KeyboardInterrupt:
        print("insiders: interrupted", file=sys.stderr)
        return 130


def fail(message: str) -> int:
    """Print the error as one line; kafka-python's clients would log more on their way out."""
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    print(f"insiders: error: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
