"""``call``: an external request per row, recorded (request, response or error, latency) through
``ctx.record_call``.

``provider: local`` is a deterministic stand-in for a model: label and score come from the
SHA-256 of the canonical request, so the same input gives the same output in every process. Its
simulated latency advances an injected clock that can be advanced (``ManualClock``) and never
sleeps; ``fail_every_n`` fails the calls whose hash falls in a 1-in-n bucket, which depends only on
the input, so a resumed run fails exactly the same rows. ``provider: http`` POSTs the inputs as
JSON with ``urllib`` (no redirects followed) and records status and latency.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from governance_pipeline.contracts.enums import Determinism
from governance_pipeline.contracts.errors import CanonicalizationError
from governance_pipeline.contracts.hashing import canonical_json
from governance_pipeline.engine.plugin_api import (
    CallRecord, Row, Transform, TransformContext, TransformResult)
from governance_pipeline.plugins.transforms._options import (
    StrictOptions, fail_option, parse_options)

LOCAL_RESPONSE_KEYS = ("label", "score")
_BODY_SHOWN = 4096


class _Common(StrictOptions):
    input: list[str] | None = Field(default=None, min_length=1)
    output: dict[str, str] = Field(default_factory=lambda: {"label": "label", "score": "score"},
                                   min_length=1)


class LocalCallOptions(_Common):
    provider: Literal["local"]
    model: str = "local-classifier-v1"
    labels: list[str] = Field(default_factory=lambda: ["low", "medium", "high"], min_length=1)
    latency_ms: float = Field(default=0.0, ge=0, le=3_600_000)
    fail_every_n: int | None = Field(default=None, ge=1)


class HttpCallOptions(_Common):
    provider: Literal["http"]
    url: str
    timeout_s: float = Field(default=10.0, gt=0, le=300)
    headers: dict[str, str] = Field(default_factory=dict)
    max_response_bytes: int = Field(default=1_048_576, gt=0)

    @field_validator("url")
    @classmethod
    def _http_only(cls, value: str) -> str:
        # urllib also opens file:// and ftp:// URLs: a pipeline must not read local files this way.
        parts = urllib.parse.urlsplit(value)
        if parts.scheme.lower() not in ("http", "https"):
            raise ValueError("must be an http:// or https:// URL")
        if not parts.hostname or any(ch.isspace() or ord(ch) < 32 for ch in value):
            raise ValueError("must name a host and contain no spaces")
        return value


class ProviderChoice(StrictOptions):
    provider: Literal["local", "http"]


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def _error_body(exc: urllib.error.HTTPError, limit: int) -> bytes:
    try:
        return exc.read(limit)
    except (OSError, http.client.HTTPException):  # the status is the finding; the body is a bonus
        return b""
    finally:
        exc.close()


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


class Call(Transform):
    name: ClassVar[str] = "call"
    version: ClassVar[str] = "1"
    determinism: ClassVar[Determinism] = Determinism.EXTERNAL_CALL

    def __init__(self, options: Mapping[str, Any], *, base_dir: Path) -> None:
        super().__init__(options, base_dir=base_dir)
        provider = options.get("provider") if isinstance(options, Mapping) else None
        model = {"local": LocalCallOptions, "http": HttpCallOptions}.get(provider)  # type: ignore[arg-type]
        if model is None:
            parse_options(ProviderChoice, {"provider": provider} if provider else {}, self.name)
        self.config = parse_options(model, options, self.name)  # type: ignore[arg-type]
        if isinstance(self.config, LocalCallOptions):
            for key in self.config.output:
                if key not in LOCAL_RESPONSE_KEYS:
                    raise fail_option(self.name, ("output", key),
                                      "the local provider returns only label and score")

    def process(self, row: Row, ctx: TransformContext) -> TransformResult:
        fields = self.config.input
        if fields is None:
            inputs = dict(row)
        else:
            missing = [f for f in fields if f not in row]
            if missing:
                return TransformResult.fail("missing_field", f"call: input field "
                                            f"{', '.join(map(repr, missing))} not in the row")
            inputs = {f: row[f] for f in fields}
        if isinstance(self.config, LocalCallOptions):
            return self._local(row, inputs, ctx)
        return self._http(row, inputs, ctx)

    def _respond(self, row: Row, response: Mapping[str, Any]) -> TransformResult:
        absent = [key for key in self.config.output if key not in response]
        if absent:
            return TransformResult.fail("call_bad_response", "call: the response has no "
                                        f"{', '.join(map(repr, absent))}")
        out = dict(row)
        for key, target in self.config.output.items():
            out[target] = response[key]
        return TransformResult.ok(out)

    # --- local ----------------------------------------------------------------------------------
    def _local(self, row: Row, inputs: Row, ctx: TransformContext) -> TransformResult:
        cfg = self.config
        assert isinstance(cfg, LocalCallOptions)
        request = {"provider": "local", "model": cfg.model, "inputs": inputs}
        try:
            digest = hashlib.sha256(canonical_json(request)).hexdigest()
        except CanonicalizationError as exc:
            return TransformResult.fail("call_failed", f"call: inputs cannot be sent: {exc.message}")
        advance = getattr(ctx.clock, "advance", None)
        if cfg.latency_ms and callable(advance):
            advance(cfg.latency_ms / 1000.0)
        if cfg.fail_every_n is not None and int(digest[13:21], 16) % cfg.fail_every_n == 0:
            error = {"code": "simulated_failure",
                     "message": f"deterministic failure (fail_every_n={cfg.fail_every_n})"}
            ctx.record_call(CallRecord("local_classifier", request, None, error, cfg.latency_ms))
            return TransformResult.fail("call_failed", f"call: local classifier failed: "
                                        f"{error['message']}")
        score = round(int(digest[:13], 16) / 16**13, 6)
        label = cfg.labels[min(int(score * len(cfg.labels)), len(cfg.labels) - 1)]
        response = {"label": label, "score": score}
        ctx.record_call(CallRecord("local_classifier", request, response, None, cfg.latency_ms))
        return self._respond(row, response)

    # --- http -----------------------------------------------------------------------------------
    def _http(self, row: Row, inputs: Row, ctx: TransformContext) -> TransformResult:
        cfg = self.config
        assert isinstance(cfg, HttpCallOptions)
        request = {"method": "POST", "url": cfg.url, "body": inputs}
        try:
            body = json.dumps(inputs, allow_nan=False, separators=(",", ":")).encode()
        except (TypeError, ValueError) as exc:
            return TransformResult.fail("call_failed", f"call: inputs cannot be sent as JSON: {exc}")
        req = urllib.request.Request(cfg.url, data=body, method="POST",
                                     headers={"Content-Type": "application/json", **cfg.headers})
        started = time.perf_counter()
        status: int | None = None
        try:
            with _OPENER.open(req, timeout=cfg.timeout_s) as resp:
                status, raw = resp.status, resp.read(cfg.max_response_bytes + 1)
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, _error_body(exc, cfg.max_response_bytes + 1)
        except (OSError, http.client.HTTPException) as exc:  # refused, timeouts, broken replies
            latency = (time.perf_counter() - started) * 1000.0
            reason = getattr(exc, "reason", exc)
            error = {"code": "unreachable", "message": f"{type(exc).__name__}: {reason}"}
            ctx.record_call(CallRecord("http", request, None, error, latency))
            return TransformResult.fail("call_failed", f"call: {cfg.url}: {error['message']}")
        latency = (time.perf_counter() - started) * 1000.0
        return self._http_result(row, request, status, raw, latency, ctx)

    def _http_result(self, row: Row, request: Row, status: int, raw: bytes, latency: float,
                     ctx: TransformContext) -> TransformResult:
        cfg = self.config
        assert isinstance(cfg, HttpCallOptions)
        if len(raw) > cfg.max_response_bytes:
            error = {"code": "response_too_large", "status": status,
                     "message": f"response larger than max_response_bytes={cfg.max_response_bytes}"}
            ctx.record_call(CallRecord("http", request, None, error, latency))
            return TransformResult.fail("call_failed", f"call: {cfg.url}: {error['message']}")
        text = raw.decode("utf-8", errors="replace")
        try:
            parsed: Any = json.loads(text, parse_constant=_no_constants)
        except ValueError:  # not JSON, or NaN/Infinity, which no audit hash can hold
            parsed = None
        shown = parsed if parsed is not None else text[:_BODY_SHOWN]
        response = {"status": status, "body": shown}
        if not 200 <= status < 300:
            error = {"code": "http_status", "status": status, "message": f"HTTP {status}"}
            ctx.record_call(CallRecord("http", request, response, error, latency))
            return TransformResult.fail("call_failed", f"call: {cfg.url}: HTTP {status}")
        if not isinstance(parsed, dict):
            error = {"code": "bad_response", "status": status,
                     "message": "the response body is not a JSON object"}
            ctx.record_call(CallRecord("http", request, response, error, latency))
            return TransformResult.fail("call_bad_response", f"call: {cfg.url}: "
                                        f"{error['message']}")
        ctx.record_call(CallRecord("http", request, response, None, latency))
        return self._respond(row, parsed)
