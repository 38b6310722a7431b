"""``governance-pipeline metrics``: the Landscape's operational metrics for Prometheus.

Once: the text exposition format on stdout (``--json``: the same samples as JSON). With
``--serve``: an HTTP endpoint ``/metrics`` (``prometheus_client``'s WSGI app on the standard
library's WSGI server), reading the database at every scrape; loopback only unless ``--host``
says otherwise. ``--port 0`` takes a free port; the address served is printed on stderr.
"""

from __future__ import annotations

import ipaddress
import signal
import threading
from types import FrameType
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import click
from prometheus_client import make_wsgi_app
from prometheus_client.parser import text_string_to_metric_families

from governance_pipeline.cli.access import open_landscape
from governance_pipeline.cli.output import CliState, reporting
from governance_pipeline.contracts.errors import ExitCode, OperationalError, register
from governance_pipeline.governance.metrics import DEFAULT_RECENT_RUNS, exposition, registry_for

METRICS_BIND_FAILED = register(
    "GP-METRICS-001", "The metrics endpoint cannot listen on the address given",
    "Another process holds the port, or the address is not this host's: pick another --port "
    "(0 takes a free one) or --host (default 127.0.0.1).",
    ExitCode.OPERATIONAL)


class _QuietHandler(WSGIRequestHandler):
    """One stderr line per scrape would drown the operator's terminal: log errors only."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        if str(code).startswith(("4", "5")):
            super().log_request(code, size)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


@click.command("metrics")
@reporting
@click.option("--serve", is_flag=True, help="Serve /metrics over HTTP until interrupted.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (--serve); the endpoint has no authentication.")
@click.option("--port", type=click.IntRange(min=0, max=65535), default=9464, show_default=True,
              help="Port to listen on (--serve); 0 takes a free port.")
@click.option("--recent-runs", type=click.IntRange(min=1, max=1000),
              default=DEFAULT_RECENT_RUNS, show_default=True,
              help="How many recent ended runs the per-run gauges cover.")
def metrics_cmd(state: CliState, serve: bool, host: str, port: int, recent_runs: int) -> int:
    """Print (or serve) rows/s of recent runs, outcome counts, quarantine rate, policy
    decisions by mode and result, policy stops, approvals pending and overdue, event delivery
    failures and operator actions, in the Prometheus text format."""
    with open_landscape(state.settings()) as landscape:
        if serve:
            return _serve(state, landscape, host, port, recent_runs)
        text = exposition(landscape, recent_runs=recent_runs)
    if state.json:
        state.emit({"command": "metrics", "metrics": [
            {"name": f.name, "type": f.type, "help": f.documentation,
             "samples": [{"name": s.name, "labels": s.labels, "value": s.value}
                         for s in f.samples]}
            for f in text_string_to_metric_families(text)]})
        return 0
    click.echo(text, nl=False)
    return 0


def _serve(state: CliState, landscape: object, host: str, port: int, recent_runs: int) -> int:
    app = make_wsgi_app(registry_for(landscape, recent_runs=recent_runs))  # type: ignore[arg-type]
    try:
        server: WSGIServer = make_server(host, port, app, handler_class=_QuietHandler)
    except OSError as exc:
        raise OperationalError(f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                               code=METRICS_BIND_FAILED,
                               details={"host": host, "port": port}) from exc
    bound = server.server_address[1]
    if not _is_loopback(host):
        click.echo(f"warning: /metrics on {host} is reachable from other hosts and has no "
                   "authentication", err=True)
    # SIGTERM (a supervisor) and SIGINT (Ctrl-C, even where a shell started us ignoring it)
    # stop the server between requests: raising inside a request would be caught by wsgiref's
    # error handler and lost, so the loop is told to end instead (from a thread: shutdown waits).
    def stop(signum: int, frame: FrameType | None) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    # Printed only once the socket listens: a caller may read this line, then scrape at once.
    click.echo(f"serving metrics on http://{host}:{bound}/metrics (Ctrl-C stops)", err=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    state.note("metrics endpoint stopped")
    return 0
