"""Organizations on moto's server for tests: a fresh management account per test."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import time_machine

from keyrotation.aws.secrets import central_prefix, secret_name
from keyrotation.emulator.sample import (
    KeySpec,
    SampleAccount,
    UserSpec,
    add_account,
    add_users,
    session_in,
)
from keyrotation.errors import NotificationError
from keyrotation.history.event import HistorySink
from keyrotation.notify.deliver import deliver
from keyrotation.notify.render import PACKAGE_TEMPLATES, load_local
from keyrotation.notify.senders import OutboxSender
from keyrotation.notify.unsent import FolderStore
from keyrotation.pipeline import RunContext, run_organization
from keyrotation.report import RunReport
from keyrotation.settings import validate_settings

ADMIN = "admin@example.com"

__all__ = ["ADMIN", "KeySpec", "OrgBuilder", "UserSpec"]


class OrgBuilder:
    """A management account with its own organization, and helpers to run the pipeline."""

    def __init__(self, outbox: Path):
        self.management_id = f"{uuid.uuid4().int % 10**12:012d}"
        self.session = session_in(self.management_id)
        self.session.client("organizations").create_organization(FeatureSet="ALL")
        self.session.client("ses").verify_email_identity(EmailAddress=ADMIN)
        self.outbox = outbox
        self.now = datetime.now(UTC).replace(microsecond=0)
        # Every email written, as (recipient, html); mails to `refused` addresses fail as a
        # rejected SES send would.
        self.sent: list[tuple[str, str]] = []
        self.refused: set[str] = set()

    def account(self, users: list[UserSpec] = (), name: str | None = None) -> SampleAccount:
        name = name or f"acct-{uuid.uuid4().hex[:6]}"
        account = add_account(self.session, name, f"{name}@example.com")
        add_users(account, users, self.now)
        return account

    def settings(self, **values: Any):
        return validate_settings({"AdminEmailAddress": ADMIN, **values})

    def run(
        self,
        accounts: list[SampleAccount] | None = None,
        days: int = 0,
        forced: tuple[str, ...] = (),
        history: HistorySink | None = None,
        **settings: Any,
    ) -> RunReport:
        """One daily run `days` after the fixture's day, with the clock moved there."""
        config = self.settings(**settings)
        sender = _RecordingSender(self, OutboxSender(self.outbox, ADMIN))

        def notifier(notification):
            source = load_local(notification.template, [PACKAGE_TEMPLATES])
            return deliver(notification, source, sender)

        only = [a.account_id for a in accounts] if accounts else []
        day = self.now + timedelta(days=days)
        with time_machine.travel(day, tick=True):
            context = RunContext(
                config,
                datetime.now(UTC),
                forced_users=frozenset(forced),
                unsent=FolderStore(self.outbox.parent / "state"),
                history=history,
            )
            return run_organization(self.session, context, notifier, only)

    def emails(self) -> list[str]:
        return [p.read_text() for p in sorted(self.outbox.glob("*.html"))]


class _RecordingSender:
    def __init__(self, org: OrgBuilder, outbox: OutboxSender):
        self.org = org
        self.outbox = outbox
        self.sender = outbox.sender

    def send(self, to: str, subject: str, html: str, text: str) -> str:
        if to in self.org.refused:
            raise NotificationError(f"SES did not send the email to {to}: MessageRejected")
        status = self.outbox.send(to, subject, html, text)
        self.org.sent.append((to, html))
        return status


def keys_of(account: SampleAccount, user: str) -> dict[str, str]:
    """The user's keys as AWS has them now: id -> status."""
    listed = account.session.client("iam").list_access_keys(UserName=user)["AccessKeyMetadata"]
    return {k["AccessKeyId"]: k["Status"] for k in listed}


def secret_of(
    account: SampleAccount, user: str, central: boto3.Session | None = None
) -> dict[str, str]:
    """The user's secret value, current stage (moto's default read returns an older one);
    with `central`, the secret that session's account keeps for the user."""
    name = central_prefix(account.account_id) if central else ""
    value = (
        (central or account.session)
        .client("secretsmanager")
        .get_secret_value(SecretId=f"{name}{secret_name(user)}", VersionStage="AWSCURRENT")
    )
    return json.loads(value["SecretString"])


def user_session(key: dict[str, str]) -> boto3.Session:
    return boto3.Session(
        aws_access_key_id=key["AccessKeyId"],
        aws_secret_access_key=key["SecretAccessKey"],
        region_name="us-east-1",
    )
