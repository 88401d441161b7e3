"""Faults injected into the product's AWS calls through botocore's event hooks.

The product's calls still go over HTTP to moto's server; a rule either answers a call with an
error response in place of the server (inside botocore's retry loop, so retries see it), or
stops the process right after a call succeeded, as a crash would.
"""

from __future__ import annotations

import json
import sys
import threading
from collections import Counter
from dataclasses import dataclass

from botocore.awsrequest import AWSResponse

# Service names as botocore spells them in event names.
JSON_SERVICES = {"secrets-manager", "organizations", "lambda"}


class Crash(BaseException):
    """The process stopped. A BaseException, so no `except Exception` in the product stops it."""


@dataclass
class Rule:
    service: str
    operation: str
    mode: str  # "error" or "crash"
    code: str = "AccessDenied"
    occurrence: int = 1
    match: str = ""
    times: int = 1
    seen: int = 0
    fired: bool = False


class _Raw:
    def __init__(self, body: bytes):
        self.body = body

    def stream(self, **kwargs):
        yield self.body


class Faults:
    def __init__(self):
        self.rules: list[Rule] = []
        self.calls: Counter[str] = Counter()
        self.throttle_every = 0
        self.throttled = 0
        self._lock = threading.Lock()
        self._sent = 0

    def fail(self, service, operation, occurrence=1, code="AccessDenied", match="", times=1):
        """Answer the matching calls from the `occurrence`-th on, `times` of them, with `code`."""
        self.rules.append(Rule(service, operation, "error", code, occurrence, match, times))

    def crash_after(self, service: str, operation: str, occurrence: int = 1, match=""):
        self.rules.append(Rule(service, operation, "crash", occurrence=occurrence, match=match))

    @property
    def fired(self) -> list[Rule]:
        return [r for r in self.rules if r.fired]

    def attach(self, client) -> None:
        events = client.meta.events
        events.register("before-call", self._before_call)
        events.register("before-send", self._before_send)
        events.register("after-call", self._after_call)

    def _rule(self, service: str, operation: str, mode: str, body: str) -> Rule | None:
        for rule in self.rules:
            if (rule.service, rule.operation, rule.mode) != (service, operation, mode):
                continue
            if rule.match and rule.match not in body:
                continue
            rule.seen += 1
            if rule.occurrence <= rule.seen < rule.occurrence + rule.times:
                rule.fired = True
                return rule
        return None

    def _before_send(self, request, event_name: str, **kwargs):
        _, service, operation = event_name.split(".", 2)
        # The URL as well, so a rule can match an S3 object's key.
        body = f"{request.url} {_text(request.body)}"
        with self._lock:
            self.calls[f"{service}.{operation}"] += 1
            self._sent += 1
            if self.throttle_every and self._sent % self.throttle_every == 0:
                self.throttled += 1
                return _error(request.url, service, "Throttling", 400)
            rule = self._rule(service, operation, "error", body)
        if rule is not None:
            return _error(request.url, service, rule.code, 400 if "Throttl" in rule.code else 403)
        return None

    def _before_call(self, params=None, context=None, **kwargs):
        if context is not None:
            context["fault_params"] = json.dumps(params or {}, default=str)

    def _after_call(self, event_name: str, http_response=None, context=None, **kwargs):
        _, service, operation = event_name.split(".", 2)
        if http_response is None or http_response.status_code >= 300:
            return
        with self._lock:
            rule = self._rule(service, operation, "crash", (context or {}).get("fault_params", ""))
        if rule is not None:
            raise Crash(f"stopped right after {service}.{operation}")


def _text(body) -> str:
    if body is None:
        return ""
    if isinstance(body, bytes):
        return body.decode("utf-8", "replace")
    return str(body)


def _error(url: str, service: str, code: str, status: int) -> AWSResponse:
    message = f"injected fault: {code}"
    if service in JSON_SERVICES:
        body = json.dumps({"__type": code, "message": message}).encode()
        headers = {"x-amzn-ErrorType": code, "Content-Type": "application/x-amz-json-1.1"}
    else:
        body = (
            f"<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code>"
            f"<Message>{message}</Message></Error><RequestId>fault</RequestId></ErrorResponse>"
        ).encode()
        headers = {"Content-Type": "text/xml"}
    return AWSResponse(url, status, headers, _Raw(body))


def patch_product_clients(monkeypatch, faults: Faults) -> None:
    """Attach the faults to every client the product makes from now on."""
    from keyrotation.aws import session as aws_session

    real_client = aws_session.client

    def faulty_client(*args, **kwargs):
        made = real_client(*args, **kwargs)
        faults.attach(made)
        return made

    for name, module in list(sys.modules.items()):
        if name.startswith("keyrotation") and getattr(module, "client", None) is real_client:
            monkeypatch.setattr(module, "client", faulty_client)
