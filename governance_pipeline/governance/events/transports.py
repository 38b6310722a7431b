"""Sending events to one subscriber: append to a JSON Lines file, POST to a webhook, or emit
OpenLineage RunEvents to a file or an HTTP endpoint.

A sender takes a batch in event-id order and sends as many as it can, in order, stopping at the
first failure; it reports how many went out and why the next one did not. It never raises for a
delivery problem: the caller records it.
"""

from __future__ import annotations

import http.client
import os
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import orjson

from governance_pipeline.contracts.events import envelope
from governance_pipeline.contracts.records import EventRecord
from governance_pipeline.governance.events import openlineage
from governance_pipeline.governance.events.subscribers import (
    JsonlSubscriber,
    OpenLineageSubscriber,
    WebhookSubscriber,
)
from governance_pipeline.landscape.store import Landscape

MAX_ERROR_CHARS = 500


@dataclass(frozen=True, slots=True)
class SendResult:
    sent: int                 # the first ``sent`` events of the batch were delivered
    error: str | None = None  # why event ``sent`` was not (None: the whole batch went out)


class Sender(Protocol):
    def send(self, events: Sequence[EventRecord]) -> SendResult: ...


def _short(text: str) -> str:
    return text if len(text) <= MAX_ERROR_CHARS else text[:MAX_ERROR_CHARS - 1] + "…"


def _append_lines(path: Path, docs: Sequence[Mapping[str, Any]]) -> str | None:
    """Append one JSON document per line, durably; an error message on failure."""
    data = b"".join(orjson.dumps(d, option=orjson.OPT_SORT_KEYS) + b"\n" for d in docs)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("ab") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        return _short(f"cannot append to {path}: {exc}")
    return None


def _post(url: str, doc: Mapping[str, Any], headers: Mapping[str, str], timeout_s: float,
          event_id: str) -> str | None:
    """POST one JSON document; None on a 2xx answer, else why not."""
    request = urllib.request.Request(
        url, data=orjson.dumps(doc), method="POST",
        headers={"Content-Type": "application/json", "User-Agent": openlineage.PRODUCER,
                 "Idempotency-Key": event_id, **headers})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310 - http(s) only (validated)
            response.read()
            return None
    except urllib.error.HTTPError as exc:
        return _short(f"POST {url}: HTTP {exc.code} {exc.reason}")
    except urllib.error.URLError as exc:
        return _short(f"POST {url}: {exc.reason}")
    except (OSError, http.client.HTTPException) as exc:
        return _short(f"POST {url}: {type(exc).__name__}: {exc}")


class JsonlSender:
    def __init__(self, subscriber: JsonlSubscriber) -> None:
        self.path = subscriber.path

    def send(self, events: Sequence[EventRecord]) -> SendResult:
        error = _append_lines(self.path, [envelope(e) for e in events])
        return SendResult(0, error) if error else SendResult(len(events))


class WebhookSender:
    def __init__(self, subscriber: WebhookSubscriber) -> None:
        self.subscriber = subscriber

    def send(self, events: Sequence[EventRecord]) -> SendResult:
        sub = self.subscriber
        for index, event in enumerate(events):
            error = _post(sub.url, envelope(event), sub.headers, sub.timeout_s, event.event_id)
            if error:
                return SendResult(index, error)
        return SendResult(len(events))


class OpenLineageSender:
    def __init__(self, subscriber: OpenLineageSubscriber, landscape: Landscape) -> None:
        self.subscriber = subscriber
        self.landscape = landscape

    def send(self, events: Sequence[EventRecord]) -> SendResult:
        sub = self.subscriber
        facts = openlineage.run_facts(self.landscape, (e.scope for e in events))
        docs = []
        for event in events:
            try:
                docs.append(openlineage.run_event(event, facts, namespace=sub.namespace))
            except openlineage.LineageUnavailable as exc:
                error = str(exc)
                break
        else:
            error = None
        if sub.path is not None:
            written = _append_lines(sub.path, docs) if docs else None
            return SendResult(0, written) if written else SendResult(len(docs), error)
        assert sub.url is not None  # the model requires exactly one of url and path
        for index, (event, doc) in enumerate(zip(events, docs, strict=False)):
            failed = _post(sub.url, doc, sub.headers, sub.timeout_s, event.event_id)
            if failed:
                return SendResult(index, failed)
        return SendResult(len(docs), error)


def build_sender(subscriber: JsonlSubscriber | WebhookSubscriber | OpenLineageSubscriber,
                 landscape: Landscape) -> Sender:
    if isinstance(subscriber, JsonlSubscriber):
        return JsonlSender(subscriber)
    if isinstance(subscriber, WebhookSubscriber):
        return WebhookSender(subscriber)
    return OpenLineageSender(subscriber, landscape)
