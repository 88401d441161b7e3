"""The three entry points the Lambda functions call: inventory, rotate_account and notify.

Each takes the event as pasted into the Lambda console and reads its settings from the
environment the CloudFormation stack sets.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from keyrotation import logs
from keyrotation.aws.session import assume_role_arn, base_session, client
from keyrotation.aws.templates import load_from_bucket
from keyrotation.compliance.publish import AccountPage, write_organization_page
from keyrotation.compliance.s3 import ReportStore, ReportStoreError
from keyrotation.errors import AccountError, EventError
from keyrotation.handlers.events import NotifyEvent, RotationEvent, parse
from keyrotation.history.s3 import S3History
from keyrotation.model import Account
from keyrotation.notify.deliver import deliver
from keyrotation.notify.message import Notification
from keyrotation.notify.render import load_local
from keyrotation.notify.senders import mail_sender
from keyrotation.notify.unsent import BucketStore, UnsentStore
from keyrotation.permissions import INVENTORY, ROTATION, requires
from keyrotation.pipeline import Notifier, RunContext, run_account, select_accounts
from keyrotation.settings import Settings, load_settings

log = logging.getLogger(__name__)

ROTATION_FUNCTION = "RotationFunctionName"
NOTIFIER_FUNCTION = "NotifierFunctionName"
BUCKET = "S3BucketName"
PREFIX = "S3BucketPrefix"
ORG_MANAGEMENT_ROLE = "OrgManagementRoleArn"
DEFAULT_PREFIX = "asa/asa-iam-rotation"

# What each entry point reads from its environment besides the settings (settings.NAMES).
# The main stack must set exactly these; tests/test_deploy*.py holds the two to each other.
INVENTORY_ENVIRONMENT = (ROTATION_FUNCTION, ORG_MANAGEMENT_ROLE, BUCKET, PREFIX)
ROTATION_ENVIRONMENT = (NOTIFIER_FUNCTION, BUCKET, PREFIX)
NOTIFIER_ENVIRONMENT = (BUCKET, PREFIX)


def inventory(
    event: Any,
    session: boto3.Session | None = None,
    environ: Mapping[str, str] | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """List the ACTIVE accounts, start one rotation job per account, asynchronously, and write
    the organization's report page of the last finished day.

    The listing runs in the management account when OrgManagementRoleArn names a role there;
    without it, this account must be the management account or a delegated administrator.
    """
    environ = os.environ if environ is None else environ
    session = session or base_session()
    settings = load_settings(environ=environ)
    function = environ.get(ROTATION_FUNCTION, "")
    if not function:
        raise AccountError(f"{ROTATION_FUNCTION} is not set; deploy the main stack again")

    role_arn = environ.get(ORG_MANAGEMENT_ROLE, "")
    listing = _management_session(session, role_arn) if role_arn else session
    accounts = select_accounts(listing, settings)

    failed = []
    for account in accounts:
        job = {"account": account.account_id, "name": account.name, "email": account.email}
        try:
            _invoke(session, function, job)
        except (ClientError, BotoCoreError) as exc:
            failed.append(account.account_id)
            logs.event(
                log,
                "rotation job not started",
                logging.ERROR,
                account=account.account_id,
                error=str(exc),
            )
            continue
        logs.event(log, "rotation job started", account=account.account_id, function=function)
    page = _organization_page(session, environ, accounts, now or datetime.now(UTC))
    if failed:
        raise AccountError(
            f"Rotation jobs for account(s) {', '.join(failed)} could not be started on "
            f"{function}; the other {len(accounts) - len(failed)} were started"
        )
    return {"accounts": len(accounts), "function": function, "report": page}


def rotate_account(
    event: Any,
    session: boto3.Session | None = None,
    environ: Mapping[str, str] | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Run one account, then hand the notifier its payload."""
    request: RotationEvent = parse(RotationEvent, event)
    environ = os.environ if environ is None else environ
    session = session or base_session()
    overrides = {} if request.dryrun is None else {"DryRunFlag": request.dryrun}
    settings = load_settings(environ=environ, overrides=overrides)
    now = now or datetime.now(UTC)
    store = _report_store(session, environ)
    page = AccountPage(store, settings.periods, now) if store else None
    context = RunContext(
        settings,
        now=now,
        forced_users=frozenset(request.ForceRotate),
        forced_users_must_exist=True,
        unsent=_unsent_store(session, environ),
        history=_history(session, environ),
        on_scanned=page,
    )
    account = Account(request.account, request.name, request.email)
    report = run_account(session, account, context, _notifier(session, settings, environ, page))
    return {**report.to_dict(), "report_page": page.page if page else ""}


def notify(
    event: Any, session: boto3.Session | None = None, environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Render the template named in the event and send it through SES or SMTPHost."""
    request: NotifyEvent = parse(NotifyEvent, event)
    environ = os.environ if environ is None else environ
    session = session or base_session()
    settings = load_settings(environ=environ)
    notification = Notification(
        to=request.email,
        subject=request.subject,
        template=request.email_template,
        values=request.template_values.model_dump(),
    )
    link = _page_link(session, environ, request.report_page, request.template_values.account_id)
    if link:
        notification = replace(notification, values={**notification.values, "report_link": link})
    source = _template(session, environ, request.email_template)
    status = deliver(notification, source, mail_sender(session, settings))
    return {"status": status}


def _notifier(
    session: boto3.Session,
    settings: Settings,
    environ: Mapping[str, str],
    page: AccountPage | None = None,
) -> Notifier:
    """Hand the payload to the notifier function when deployed; send directly otherwise."""
    function = environ.get(NOTIFIER_FUNCTION)

    def hand_over(notification: Notification) -> str:
        payload = {
            "email": notification.to,
            "invokedby": "rotation",
            "subject": notification.subject,
            "email_template": notification.template,
            "template_values": notification.values,
        }
        if page is not None and page.page and notification.whole_account:
            payload["report_page"] = page.page
        if function:
            _invoke(session, function, payload)
            return f"handed to {function}"
        return notify(payload, session, environ)["status"]

    return hand_over


@requires(ROTATION, "s3:ListBucket")
def _history(session: boto3.Session, environ: Mapping[str, str]) -> S3History | None:
    """Each change and notice, as JSON Lines in the bucket, partitioned by date for Athena."""
    bucket = environ.get(BUCKET)
    return S3History(session, bucket, environ.get(PREFIX, DEFAULT_PREFIX)) if bucket else None


def _report_store(session: boto3.Session, environ: Mapping[str, str]) -> ReportStore | None:
    bucket = environ.get(BUCKET)
    return ReportStore(session, bucket, environ.get(PREFIX, DEFAULT_PREFIX)) if bucket else None


def _organization_page(
    session: boto3.Session, environ: Mapping[str, str], accounts: list[Account], now: datetime
) -> str:
    """Written after the jobs are started, so a report that fails never holds up a rotation."""
    store = _report_store(session, environ)
    if store is None:
        return ""
    try:
        return write_organization_page(store, accounts, now)
    except ReportStoreError as exc:
        logs.event(log, "organization report not written", logging.ERROR, error=str(exc))
        return f"failed: {exc}"


def _page_link(session: boto3.Session, environ: Mapping[str, str], key: str, account: str) -> str:
    """A short-lived link to the account's own page; none without a bucket or a page."""
    store = _report_store(session, environ)
    if not key or store is None:
        return ""
    if not store.is_page(key, account):
        raise EventError(
            f"Invalid event: field 'report_page': {key!r} is not account {account}'s report "
            f"page under s3://{store.bucket}/{store.root}"
        )
    return store.link(key)


def _unsent_store(session: boto3.Session, environ: Mapping[str, str]) -> UnsentStore | None:
    """Unsent email lines kept in the deployment's bucket, beside the package.

    BucketStore.load reads a key that is usually missing; without s3:ListBucket on that prefix
    S3 answers AccessDenied instead of NoSuchKey, so the permission is declared here.
    """
    bucket = environ.get(BUCKET)
    return BucketStore(session, bucket, environ.get(PREFIX, DEFAULT_PREFIX)) if bucket else None


def _template(session: boto3.Session, environ: Mapping[str, str], name: str) -> str:
    bucket = environ.get(BUCKET)
    if bucket:
        return load_from_bucket(session, bucket, environ.get(PREFIX, DEFAULT_PREFIX), name)
    return load_local(name)


@requires(INVENTORY, "sts:AssumeRole")
def _management_session(session: boto3.Session, role_arn: str) -> boto3.Session:
    """A session in the management account, where the organization's accounts can be listed."""
    account = role_arn.split(":")[4] if role_arn.count(":") >= 5 else "?"
    try:
        return assume_role_arn(session, role_arn, "keyrotation-inventory", 900)
    except (ClientError, BotoCoreError) as exc:
        raise AccountError(
            f"Cannot assume {role_arn} in the management account {account}: {exc}. Deploy "
            f"deploy/management-role.yaml in account {account} (it trusts this stack's "
            f"inventory role), or clear {ORG_MANAGEMENT_ROLE} if this account is a delegated "
            "administrator of AWS Organizations."
        ) from exc


@requires(INVENTORY, "lambda:InvokeFunction")
@requires(ROTATION, "lambda:InvokeFunction")
def _invoke(session: boto3.Session, function: str, payload: dict[str, Any]) -> None:
    client(session, "lambda").invoke(
        FunctionName=function, InvocationType="Event", Payload=json.dumps(payload).encode()
    )
