"""GET /metrics: the store's counters in the Prometheus text format (version 0.0.4).

Written by hand rather than with a client library: every figure is read from the
store on each scrape, so the API process keeps no metric state of its own and any
number of API replicas report the same values.
"""

from __future__ import annotations

from collections.abc import Iterable

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    """Exact: `%g` would round a Unix timestamp to six digits.

    >>> _number(1323433860), _number(0.25)
    ('1323433860', '0.25')
    """
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _family(
    name: str, kind: str, help_text: str, samples: Iterable[tuple[dict[str, str], float]]
) -> list[str]:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    for labels, value in samples:
        inner = ",".join(f'{k}="{_label(v)}"' for k, v in sorted(labels.items()))
        text = _number(value)
        lines.append(f"{name}{{{inner}}} {text}" if inner else f"{name} {text}")
    return lines


def exposition(
    customers: int,
    insiders: int,
    model_version: int,
    watermark: int | None,
    events: dict[str, int],
    ignored: dict[str, int],
) -> str:
    """The text a scrape returns.

    >>> print(exposition(3, 1, 7, None, {"insider.entered:top_segment": 2}, {}), end="")
    # HELP insiders_customers Customers with at least one purchase.
    # TYPE insiders_customers gauge
    insiders_customers 3
    # HELP insiders_members Current Insiders.
    # TYPE insiders_members gauge
    insiders_members 1
    # HELP insiders_model_version Version of the model in the latest checkpoint.
    # TYPE insiders_model_version gauge
    insiders_model_version 7
    # HELP insiders_events_total Insider entries and exits, by type and reason.
    # TYPE insiders_events_total counter
    insiders_events_total{reason="top_segment",type="insider.entered"} 2
    # HELP insiders_lines_ignored_total Valid lines that feature spec v1 does not count.
    # TYPE insiders_lines_ignored_total counter
    """
    lines = _family(
        "insiders_customers", "gauge", "Customers with at least one purchase.", [({}, customers)]
    )
    lines += _family("insiders_members", "gauge", "Current Insiders.", [({}, insiders)])
    lines += _family(
        "insiders_model_version",
        "gauge",
        "Version of the model in the latest checkpoint.",
        [({}, model_version)],
    )
    if watermark is not None:
        lines += _family(
            "insiders_watermark_seconds",
            "gauge",
            "Latest invoice time applied (event time), as a Unix timestamp.",
            [({}, watermark)],
        )
    lines += _family(
        "insiders_events_total",
        "counter",
        "Insider entries and exits, by type and reason.",
        [
            (dict(zip(("type", "reason"), key.split(":", 1), strict=True)), count)
            for key, count in sorted(events.items())
        ],
    )
    lines += _family(
        "insiders_lines_ignored_total",
        "counter",
        "Valid lines that feature spec v1 does not count.",
        [({"reason": reason}, count) for reason, count in sorted(ignored.items())],
    )
    return "\n".join(lines) + "\n"
