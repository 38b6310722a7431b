"""The event outbox: schemas per event type, subscribers, and delivery (docs/events.md).

Producers write events with ``contracts.events.make_event`` inside the recorder unit of the change
they describe; this package validates them (``catalog``), reads them back (``outbox``) and
delivers them to the configured subscribers (``subscribers``, ``transports``, ``delivery``,
``openlineage``).
"""

from governance_pipeline.governance.events.catalog import (
    EVENT_TYPES,
    EventSchemaError,
    schema_for,
    validate_event,
)
from governance_pipeline.governance.events.delivery import (
    DeliveryReport,
    SubscriberReport,
    deliver_pending,
    retry_failed,
)
from governance_pipeline.governance.events.outbox import (
    DeliveryState,
    backlog,
    list_deliveries,
    read_events,
)
from governance_pipeline.governance.events.subscribers import (
    JsonlSubscriber,
    OpenLineageSubscriber,
    WebhookSubscriber,
    load_subscribers,
    parse_subscribers,
)

__all__ = [
    "EVENT_TYPES", "DeliveryReport", "DeliveryState", "EventSchemaError", "JsonlSubscriber",
    "OpenLineageSubscriber", "SubscriberReport", "WebhookSubscriber", "backlog",
    "deliver_pending", "list_deliveries", "load_subscribers", "parse_subscribers",
    "read_events", "retry_failed", "schema_for", "validate_event",
]
