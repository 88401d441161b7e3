"""Where rendered emails go: SES, an SMTP server, or an outbox folder for local runs."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from keyrotation import logs
from keyrotation.aws.session import client
from keyrotation.errors import NotificationError
from keyrotation.notify.smtp import SmtpSender
from keyrotation.permissions import NOTIFIER, requires
from keyrotation.settings import Settings

log = logging.getLogger(__name__)


def mail_sender(session: boto3.Session, settings: Settings) -> SesSender | SmtpSender:
    """The SMTP server when SMTPHost is set, SES otherwise."""
    if settings.SMTPHost is not None:
        return SmtpSender(session, settings)
    return SesSender(session, settings.AdminEmailAddress)


class SesSender:
    def __init__(self, session: boto3.Session, sender: str):
        self._ses = client(session, "ses")
        self.sender = sender

    @requires(NOTIFIER, "ses:SendEmail")
    def send(self, to: str, subject: str, html: str, text: str) -> str:
        try:
            response = self._ses.send_email(
                Source=self.sender,
                Destination={"ToAddresses": [to]},
                Message={
                    "Subject": {"Data": subject, "Charset": "UTF-8"},
                    "Body": {
                        "Html": {"Data": html, "Charset": "UTF-8"},
                        "Text": {"Data": text, "Charset": "UTF-8"},
                    },
                },
            )
        except (ClientError, BotoCoreError) as exc:
            hint = ""
            if "not verified" in str(exc):
                hint = f" Verify {self.sender} (and, in the SES sandbox, {to}) in SES."
            raise NotificationError(f"SES did not send the email to {to}: {exc}.{hint}") from exc
        logs.event(log, "email sent", to=to, message_id=response["MessageId"])
        return "sent"


class OutboxSender:
    """Writes each email as an .html file, for the demo and local runs."""

    def __init__(self, folder: Path, sender: str):
        self.folder = folder
        self.sender = sender

    def send(self, to: str, subject: str, html: str, text: str) -> str:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise NotificationError(f"Cannot use outbox {self.folder}: {exc.strerror}") from exc
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", subject)[:120]
        path = self.folder / f"{stem}.html"
        number = 1
        while path.exists():
            number += 1
            path = self.folder / f"{stem}-{number}.html"
        try:
            path.write_text(html, encoding="utf-8")
        except OSError as exc:
            raise NotificationError(f"Cannot write the email to {path}: {exc.strerror}") from exc
        logs.event(log, "email written", to=to, path=str(path))
        return "written"
