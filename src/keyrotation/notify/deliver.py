"""Render a notification with its template and hand it to a sender."""

from __future__ import annotations

from typing import Any, Protocol

from keyrotation.notify.message import Notification
from keyrotation.notify.render import render, text_version


class Sender(Protocol):
    sender: str

    def send(self, to: str, subject: str, html: str, text: str) -> str: ...


def deliver(notification: Notification, template_source: str, sender: Sender) -> str:
    values: dict[str, Any] = {**notification.values, "sender_email": sender.sender}
    html = render(template_source, values)
    return sender.send(notification.to, notification.subject, html, text_version(values))
