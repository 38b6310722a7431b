"""Helpers for the event tests: a small real pipeline, events written through the recorder, and a
loopback HTTP server that records what webhooks receive."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from governance_pipeline.contracts.clock import ManualClock
from governance_pipeline.contracts.events import make_event
from governance_pipeline.contracts.records import EventRecord
from governance_pipeline.engine.config import load_pipeline
from governance_pipeline.engine.runner import RunResult, Runner
from governance_pipeline.landscape.recorder import Recorder
from governance_pipeline.landscape.schema import GLOBAL_SCOPE
from governance_pipeline.landscape.store import Landscape
from governance_pipeline_tests.engine_fixtures import EXAMPLES, write_claims

LINEAR_EXAMPLE = EXAMPLES / "pipelines" / "claims_linear.yaml"


def linear_pipeline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rows: int = 12) -> Path:
    """The shipped linear example on ``rows`` generated claims; outputs under a tmp home."""
    home = tmp_path / "home"
    monkeypatch.setenv("GOVERNANCE_HOME", str(home))
    data = write_claims(tmp_path / "data" / "claims.csv", rows, seed=7)
    doc: dict[str, Any] = yaml.safe_load(LINEAR_EXAMPLE.read_text(encoding="utf-8"))
    doc["source"]["options"]["path"] = str(data)
    path = tmp_path / "pipelines" / "claims_linear.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def start_run(landscape: Landscape, clock: ManualClock, path: Path) -> Runner:
    return Runner.start(landscape, load_pipeline(path), base_dir=path.parent,
                        pipeline_path=path, clock=clock)


def run_pipeline(landscape: Landscape, clock: ManualClock, path: Path) -> RunResult:
    return start_run(landscape, clock, path).execute()


def record_ir_events(landscape: Landscape, count: int) -> list[EventRecord]:
    """``count`` ir.approval_created events, each in its own recorder unit (as producers do)."""
    recorder = Recorder(landscape)
    made = []
    for i in range(count):
        with recorder.unit(GLOBAL_SCOPE) as uow:
            event = make_event("ir.approval_created", scope=GLOBAL_SCOPE, source="ir_governance",
                               tenant_id="acme", correlation_id=f"req_{i}", timestamp=uow.now,
                               payload={"approval_id": f"appr_{i}", "tenant_id": "acme",
                                        "ir_hash": "sha256:" + f"{i:064x}", "ttl_seconds": 3600,
                                        "expires_at": uow.now, "created_by": "alice",
                                        "created_at": uow.now})
            uow.add(event)
        made.append(event)
    return made


# --- a loopback webhook receiver ----------------------------------------------------------------
@dataclass
class Receiver:
    """What the server got, and the statuses it answers with next (then 200)."""

    url: str
    received: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    script: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def ids(self) -> list[str]:
        with self.lock:
            return [doc.get("id") or doc["run"]["runId"] for doc in self.received]


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with receiver.lock:
                status = receiver.script.pop(0) if receiver.script else 200
                if status == 200:
                    receiver.received.append(json.loads(body))
                    receiver.headers.append(dict(self.headers.items()))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            return

    return Handler


@contextmanager
def webhook_server(path: str = "/hook") -> Iterator[Receiver]:
    receiver = Receiver(url="")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(receiver))
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}{path}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def dead_url() -> str:
    """A loopback URL nothing listens on (the port was free a moment ago)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"
