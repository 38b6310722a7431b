"""The event delivery sensor: one outbox delivery pass per tick.

Delivery is decoupled from the runs that write events: a subscriber that is down only makes this
sensor report failures (and ``events deliveries --failed`` list them); no run waits for it.
Subscribers come from the same file the command line reads.
"""

from __future__ import annotations

from dagster import DefaultSensorStatus, SensorEvaluationContext, SkipReason, sensor

from governance_pipeline.governance.events.delivery import deliver_pending
from governance_pipeline.governance.events.subscribers import load_subscribers, subscribers_path
from governance_pipeline.orchestration.resources import LandscapeResource

#: Seconds between delivery passes.
EVENT_DELIVERY_INTERVAL_S = 30


@sensor(name="event_delivery", minimum_interval_seconds=EVENT_DELIVERY_INTERVAL_S,
        default_status=DefaultSensorStatus.RUNNING,
        description="Delivers new outbox events to the configured subscribers (JSON Lines, "
                    "webhooks, OpenLineage), retrying failures with backoff.")
def event_delivery_sensor(context: SensorEvaluationContext,
                          landscape: LandscapeResource) -> SkipReason:
    settings = landscape.settings()
    subscribers = load_subscribers(settings)
    if not subscribers:
        return SkipReason(f"no subscribers configured ({subscribers_path(settings)})")
    with landscape.open() as ls:
        report = deliver_pending(ls, subscribers)
    summary = (f"delivered {report.delivered}, retrying {report.retrying}, "
               f"failed {report.failed}")
    for sub in report.subscribers:
        for event_id, error in sub.errors:
            context.log.warning(f"event {event_id} to {sub.subscriber}: {error}")
    if report.delivered or not report.ok:
        context.log.info(summary)
    return SkipReason(summary)
