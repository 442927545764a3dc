"""Events as Redis keeps them: their JSON deflated against a dictionary of what events say.

An event's JSON is about 640 bytes, and Redis holds each twice: in the events stream and in
its customer's history. Most of it is the same in every event (the keys, the reason's
words), which deflate with a preset dictionary of a typical event leaves out: about 120
bytes an event on UCI's, a fifth. :func:`pack` writes ``FORMAT`` and the raw deflate stream;
:func:`unpack` reads that, and the plain JSON that releases before this one wrote (it starts
with ``{``). Kafka, the API and webhooks still get the JSON.

The dictionary of a format never changes: what was packed with it must stay readable. A
better one is a new format byte, beside this one.

>>> doc = b'{"event_id":"17850:1","type":"insider.entered","customer_id":"17850"}'
>>> packed = pack(doc)
>>> packed[:1], len(packed) < len(doc), unpack(packed, "h:17850") == unpack(doc, "h:17850")
(b'\\x01', True, True)
"""

from __future__ import annotations

import zlib
from typing import Any

import orjson

from segmenter.errors import InsidersError

FORMAT = b"\x01"


class UnreadableEvent(InsidersError):
    """A value in an events stream or a history that is not an event: nothing of it is used."""


# The most an event may inflate to: events are under a kilobyte; this bounds what a corrupt
# or hostile value in Redis can make a reader allocate.
MAX_EVENT_BYTES = 64 * 1024

# Format 1's dictionary: an entry and an exit as the service writes them. Deflate finds the
# repeats of its later bytes first, so the commonest words come last. Never edit it.
DICTIONARY_V1 = (
    b'"reason":{"code":"left_top_segment","text":"margin 0.12 below the exit edge 0.45 after '
    b"30 days: kept_value 310.5 against (Insiders ~1,621.0); tenure_days 35.2 against "
    b'(Insiders ~103.3)"}"reason":{"code":"outranked","text":"margin 0.41 below the exit '
    b'edge 0.45 after 64 days: "},"reason":{"code":"lapsed","text":"no purchase for 126 days '
    b'(limit 120, and more than 2 times their usual gap)"},"segment":1,"model_version":16}'
    b'{"event_id":"17400:2","type":"insider.exited","customer_id":"17400","at":"2011-12-09T'
    b'12:31:00+00:00","reason":{"code":"top_segment","text":"margin 0.63 at or above the '
    b"entry edge 0.59 (set for 12.0% of 4,179 customers, \xc2\xb11.5%, filled to the target): "
    b'kept_value 1,167.2 for (Insiders ~1,621.0); tenure_days 121.7 for (Insiders ~103.3)"},'
    b'"features":{"revenue":1167.24,"invoices":3,"lines":25,"units":211,"returned_value":0.0,'
    b'"returned_units":0,"kept_value":1167.24,"first_purchase_at":"2010-12-16T19:09:00+00:00",'
    b'"last_purchase_at":"2011-04-07T10:43:00+00:00","recency_days":10.1375,"frequency":'
    b'0.0247,"avg_ticket":389.08},"segment":4,"model_version":16}'
)


def pack(doc: bytes) -> bytes:
    """An event's JSON, as Redis keeps it."""
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15, 9, zdict=DICTIONARY_V1)
    return FORMAT + deflate.compress(doc) + deflate.flush()


def unpack(raw: bytes, where: str) -> dict[str, Any]:
    """The event a value in Redis holds (packed, or the JSON of a release before);
    :class:`UnreadableEvent` naming ``where`` (its key) if it is not one."""
    if raw[:1] == FORMAT:
        inflate = zlib.decompressobj(-15, zdict=DICTIONARY_V1)
        try:
            doc = inflate.decompress(raw[1:], MAX_EVENT_BYTES)
        except zlib.error as exc:
            raise UnreadableEvent(f"{where}: not a packed event ({exc})") from None
        if inflate.unconsumed_tail or not inflate.eof:
            raise UnreadableEvent(
                f"{where}: not a packed event (cut short, or over {MAX_EVENT_BYTES:,} bytes)"
            )
    elif raw[:1] == b"{":
        doc = raw
    else:
        raise UnreadableEvent(f"{where}: not an event (starts with {raw[:8]!r})")
    try:
        event = orjson.loads(doc)
    except orjson.JSONDecodeError as exc:
        raise UnreadableEvent(f"{where}: not an event (not JSON: {exc})") from None
    if not isinstance(event, dict):
        raise UnreadableEvent(f"{where}: not an event (JSON {type(event).__name__})")
    return event
