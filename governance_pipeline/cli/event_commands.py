"""``governance-pipeline events``: the event stream, one delivery pass, and the delivery state.

``events`` lists envelopes newest last (``--json``: one JSON list of envelopes). ``events
deliver`` runs one delivery pass to the subscribers of ``$GOVERNANCE_SUBSCRIBERS_FILE`` (else
``$GOVERNANCE_HOME/subscribers.yaml``). ``events deliveries`` shows per-subscriber state, and
``--failed`` what was given up on, so a failed delivery is never silent.
"""

from __future__ import annotations

import click

from governance_pipeline.cli.access import open_landscape
from governance_pipeline.cli.output import CliState, reporting, table
from governance_pipeline.contracts.events import envelope
from governance_pipeline.governance.events.delivery import (
    DEFAULT_MAX_ATTEMPTS,
    deliver_pending,
    retry_failed,
)
from governance_pipeline.governance.events.outbox import backlog, list_deliveries, read_events
from governance_pipeline.governance.events.subscribers import load_subscribers, subscribers_path


@click.group("events", invoke_without_command=True)
@click.option("--type", "types", multiple=True, metavar="T",
              help="Only this event type; repeatable; 'ir.*' style patterns allowed.")
@click.option("--run", "run_id", metavar="RUN_ID", help="Only the events of this run.")
@click.option("--since", metavar="EVENT_ID", help="Only events after this event id.")
@click.option("--limit", type=click.IntRange(min=1), help="Only the newest N events.")
@click.option("--json", "as_json", is_flag=True, help="Print exactly one JSON document on stdout.")
@click.pass_context
def events_group(ctx: click.Context, types: tuple[str, ...], run_id: str | None,
                 since: str | None, limit: int | None, as_json: bool) -> int | None:
    """The event stream (outbox), newest last."""
    if ctx.invoked_subcommand is not None:
        return None
    state = ctx.ensure_object(CliState)
    state.json = as_json
    with open_landscape(state.settings()) as landscape:
        records = read_events(landscape, types=types, run_id=run_id, since=since, limit=limit)
    if state.json:
        state.emit([envelope(r) for r in records])
        return 0
    if not records:
        state.say("no events")
        return 0
    rows = [(r.event_id, r.timestamp, r.type, r.scope, r.source, r.target or "-")
            for r in records]
    for line in table(("EVENT ID", "TIMESTAMP", "TYPE", "SCOPE", "SOURCE", "TARGET"), rows):
        state.say(line)
    return 0


@events_group.command("deliver")
@reporting
@click.option("--max-attempts", type=click.IntRange(min=1), default=DEFAULT_MAX_ATTEMPTS,
              show_default=True, help="Attempts before a delivery is marked failed.")
@click.option("--batch", type=click.IntRange(min=1), default=500, show_default=True,
              help="At most this many events per subscriber in this pass.")
@click.option("--retry-failed", "retry", is_flag=True,
              help="First give failed deliveries a fresh set of attempts.")
def deliver_cmd(state: CliState, max_attempts: int, batch: int, retry: bool) -> int:
    """Run one delivery pass to the configured subscribers and print what happened."""
    settings = state.settings()
    subscribers = load_subscribers(settings)
    with open_landscape(settings) as landscape:
        requeued = retry_failed(landscape) if retry else 0
        report = deliver_pending(landscape, subscribers, max_attempts=max_attempts, batch=batch)
        waiting = {s.name: backlog(landscape, s.name, s.accepted_types()) for s in subscribers}
    if state.json:
        state.emit({"command": "events deliver", "subscribers_file":
                    str(subscribers_path(settings)), "requeued": requeued, **report.as_dict(),
                    "backlog": waiting})
        return 0
    if not subscribers:
        state.say(f"no subscribers configured ({subscribers_path(settings)} does not exist)")
        return 0
    rows = [(s.subscriber, str(s.delivered), str(s.retrying), str(s.failed),
             str(waiting[s.subscriber]), "held" if s.held else "")
            for s in report.subscribers]
    for line in table(("SUBSCRIBER", "DELIVERED", "RETRYING", "FAILED", "BACKLOG", ""), rows):
        state.say(line)
    for s in report.subscribers:
        for event_id, error in s.errors:
            state.say(f"{s.subscriber} {event_id}: {error}")
    if report.failed:
        state.note("see: governance-pipeline events deliveries --failed")
    return 0


@events_group.command("deliveries")
@reporting
@click.option("--failed", "failed_only", is_flag=True,
              help="Only deliveries that exhausted their attempts.")
@click.option("--subscriber", help="Only this subscriber.")
@click.option("--limit", type=click.IntRange(min=1), help="At most N rows.")
def deliveries_cmd(state: CliState, failed_only: bool, subscriber: str | None,
                   limit: int | None) -> int:
    """Delivery state per subscriber and event: status, attempts, last error, next attempt."""
    with open_landscape(state.settings()) as landscape:
        found = list_deliveries(landscape, failed_only=failed_only, subscriber=subscriber,
                                limit=limit)
    if state.json:
        state.emit({"command": "events deliveries", "failed_only": failed_only,
                    "deliveries": [d.as_dict() for d in found]})
        return 0
    if not found:
        state.say("no failed deliveries" if failed_only else "no deliveries recorded")
        return 0
    rows = [(d.subscriber, d.event_id, d.event_type, d.status.value, str(d.attempts),
             d.next_attempt_at or d.delivered_at or "-", d.last_error or "")
            for d in found]
    for line in table(("SUBSCRIBER", "EVENT ID", "TYPE", "STATUS", "ATTEMPTS", "NEXT/DONE AT",
                       "LAST ERROR"), rows):
        state.say(line)
    return 0


COMMANDS = (events_group,)
