"""Running ``dagster-webserver`` on loopback for a test or a screenshot, with bounded waits.

The server is started in its own session (it ignores SIGINT/SIGTERM otherwise) and stopped by
SIGINT to its process group, then SIGKILL if it does not exit in time.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

#: The webserver launches runs itself (no daemon): the default coordinator does that at once.
INSTANCE_YAML = """\
telemetry:
  enabled: false
run_coordinator:
  module: dagster._core.run_coordinator
  class: DefaultRunCoordinator
"""


class WebserverError(RuntimeError):
    """The webserver exited, or something it should do did not happen in time."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(workspace: Path, port: int, *, cwd: Path, env: Mapping[str, str],
          output: IO[bytes] | int = subprocess.DEVNULL) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [str(Path(sys.executable).with_name("dagster-webserver")), "-h", "127.0.0.1",
         "-p", str(port), "-w", str(workspace)],
        cwd=cwd, env=dict(env), stdout=output, stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL, start_new_session=True)


def is_up(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=5) as resp:
            return resp.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def wait_for(server: subprocess.Popen[bytes], what: str, deadline_s: float,
             probe: Callable[[], Any], log: Path | None = None) -> Any:
    """Poll ``probe`` until it answers; the pause between polls is a bounded wait on the server
    process, so a server that dies is reported at once instead of at the deadline."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        try:
            code = server.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            continue
        tail = f":\n{log.read_text(errors='replace')[-3000:]}" if log else ""
        raise WebserverError(f"dagster-webserver exited {code}{tail}")
    raise WebserverError(f"timed out after {deadline_s:.0f} s waiting for {what}")


def stop(server: subprocess.Popen[bytes], timeout_s: float = 30.0) -> None:
    if server.poll() is not None:
        return
    os.killpg(server.pid, signal.SIGINT)
    try:
        server.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=timeout_s)
