"""Sending through an SMTP server over TLS, with a login read from SSM Parameter Store."""

from __future__ import annotations

import logging
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import make_msgid

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from keyrotation import logs
from keyrotation.aws.session import client
from keyrotation.errors import NotificationError
from keyrotation.permissions import NOTIFIER, requires
from keyrotation.settings import Settings

log = logging.getLogger(__name__)

TIMEOUT_SECONDS = 30


class SmtpSender:
    """STARTTLS or TLS from the first byte; the server's certificate is always verified.

    The login is read from SSM on every send, so a changed password takes effect at once and
    never sits in the environment. It is handed to smtplib only, never logged or raised.
    """

    def __init__(self, session: boto3.Session, settings: Settings):
        if settings.SMTPHost is None:
            raise NotificationError("SMTPHost is not set; SMTP cannot be used")
        self._ssm = client(session, "ssm")
        self.sender = settings.AdminEmailAddress
        self.host = settings.SMTPHost
        self.port = settings.SMTPPort
        self.security = settings.SMTPSecurity
        self.user_parameter = settings.SMTPUserParamName
        self.password_parameter = settings.SMTPPasswordParamName

    def send(self, to: str, subject: str, html: str, text: str) -> str:
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = to
        message["Subject"] = subject
        message["Message-ID"] = make_msgid(domain=self.sender.rpartition("@")[2])
        message.set_content(text)
        message.add_alternative(html, subtype="html")

        login = self._login()
        where = f"{self.host}:{self.port} ({self.security})"
        try:
            with self._connect() as smtp:
                if login is not None:
                    smtp.login(*login)
                smtp.send_message(message)
        except (smtplib.SMTPException, OSError, UnicodeError) as exc:
            check = (
                "SMTPHost, SMTPPort, SMTPSecurity and the login in SSM"
                if login is not None
                else "SMTPHost, SMTPPort and SMTPSecurity"
            )
            raise NotificationError(
                f"The SMTP server {where} did not take the email to {to}: "
                f"{_describe(exc).rstrip('.')}. Check {check}."
            ) from exc
        logs.event(log, "email sent", to=to, server=where, message_id=message["Message-ID"])
        return "sent"

    def _connect(self) -> smtplib.SMTP:
        # The default context verifies the chain (SSL_CERT_FILE or the system store) and the
        # host name; no setting turns that off.
        context = ssl.create_default_context()
        if self.security == "tls":
            return smtplib.SMTP_SSL(self.host, self.port, context=context, timeout=TIMEOUT_SECONDS)
        smtp = smtplib.SMTP(self.host, self.port, timeout=TIMEOUT_SECONDS)
        try:
            smtp.starttls(context=context)  # refuses a server that does not offer STARTTLS
        except BaseException:
            smtp.close()
            raise
        return smtp

    def _login(self) -> tuple[str, str] | None:
        if self.user_parameter is None or self.password_parameter is None:
            return None
        user = self._parameter(self.user_parameter, secure=False)
        password = self._parameter(self.password_parameter, secure=True)
        # smtplib sends AUTH as ASCII; anything else would fail inside it with the whole login
        # in the exception, so refuse it here, naming the parameters, never their values.
        if not (user.isascii() and password.isascii()):
            raise NotificationError(
                f"The SMTP login in {self.user_parameter} and {self.password_parameter} holds "
                "characters other than ASCII, which SMTP AUTH cannot send; store an ASCII login."
            )
        return user, password

    @requires(NOTIFIER, "ssm:GetParameter", "kms:Decrypt")
    def _parameter(self, name: str, secure: bool) -> str:
        try:
            found = self._ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]
        except (ClientError, BotoCoreError) as exc:
            raise NotificationError(
                f"Cannot read the SMTP login parameter {name} from SSM: {exc}. Create it, or "
                "grant this function ssm:GetParameter on it (and kms:Decrypt on its key)."
            ) from exc
        if secure and found.get("Type") != "SecureString":
            raise NotificationError(
                f"The SMTP password parameter {name} is a {found.get('Type')}; store it as a "
                "SecureString, which SSM encrypts and does not show in the console."
            )
        return found["Value"]


def _describe(exc: BaseException) -> str:
    """The server's answer or the socket's error, which carry no part of the login."""
    if isinstance(exc, smtplib.SMTPResponseException):
        answer = exc.smtp_error
        text = answer.decode(errors="replace") if isinstance(answer, bytes) else str(answer)
        return f"{exc.smtp_code} {text}"
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return f"recipient refused: {exc.recipients}"
    return f"{type(exc).__name__}: {exc}"
