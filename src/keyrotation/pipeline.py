"""One daily run: inventory the accounts, decide per key, act, notify. The CLI, the Lambda
handlers and the demo all go through here."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from keyrotation import logs
from keyrotation.aws.iam import IamAccount
from keyrotation.aws.organizations import list_accounts
from keyrotation.aws.secrets import SecretStore
from keyrotation.aws.session import assume_role, partition_of
from keyrotation.errors import (
    AccountError,
    KeyRotationError,
    NotificationError,
    RotationError,
    TemplateError,
    UserGoneError,
)
from keyrotation.model import AccessKey, Account, Action, ActionKind, KeyRecord, Mode, User
from keyrotation.notify.message import Notification, build
from keyrotation.policy import decide
from keyrotation.reasons import Reason
from keyrotation.report import AccountReport, Outcome, RunReport, Status
from keyrotation.scan import users_to_scan
from keyrotation.settings import Settings

log = logging.getLogger(__name__)

AWS_ERRORS = (ClientError, BotoCoreError)
Notifier = Callable[[Notification], str]
# A user's state is read again after changes, so the day's follow-up warnings go out today
# and a second run on the same day finds nothing new. Three rounds always settle.
MAX_ROUNDS = 3


@dataclass(frozen=True)
class RunContext:
    settings: Settings
    now: datetime
    dated: bool = False
    forced_users: frozenset[str] = field(default_factory=frozenset)

    @property
    def mode(self) -> Mode:
        return self.settings.mode


def run_organization(
    session: boto3.Session,
    context: RunContext,
    notifier: Notifier | None,
    only_accounts: Iterable[str] = (),
    on_account: Callable[[AccountReport], None] | None = None,
    on_accounts_listed: Callable[[int], None] | None = None,
) -> RunReport:
    """Run every ACTIVE account of the organization (or those in `only_accounts`)."""
    report = RunReport(
        run_id=uuid.uuid4().hex[:12],
        started=context.now,
        mode=context.mode,
        dated=context.now.date() if context.dated else None,
    )
    try:
        accounts = select_accounts(session, context.settings, only_accounts)
    except AccountError as exc:
        report.errors.append(str(exc))
        logs.event(log, "inventory failed", logging.ERROR, error=str(exc))
        return report

    if on_accounts_listed:
        on_accounts_listed(len(accounts))
    report.accounts.extend(run_accounts(session, accounts, context, notifier, on_account))

    found = {u for a in report.accounts for u in a.forced_found}
    for user in sorted(context.forced_users - found):
        report.errors.append(f"ForceRotate names user {user}, found in no scanned account")
    return report


def run_accounts(
    session: boto3.Session,
    accounts: list[Account],
    context: RunContext,
    notifier: Notifier | None,
    on_account: Callable[[AccountReport], None] | None = None,
) -> list[AccountReport]:
    """Run up to MaxConcurrentAccounts accounts at once; reports come back in `accounts` order.

    `on_account` is called from this thread, as each account finishes."""
    workers = min(context.settings.MaxConcurrentAccounts, len(accounts)) or 1
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="account") as pool:
        futures = {
            pool.submit(run_account, session, account, context, notifier): index
            for index, account in enumerate(accounts)
        }
        reports: list[AccountReport | None] = [None] * len(accounts)
        for future in as_completed(futures):
            reports[futures[future]] = future.result()
            if on_account:
                on_account(future.result())
    return [r for r in reports if r is not None]


def select_accounts(
    session: boto3.Session, settings: Settings, only_accounts: Iterable[str] = ()
) -> list[Account]:
    """The ACTIVE accounts to run; an empty organization is an error, never a success."""
    listed = list_accounts(session, settings.OrganizationalUnitId, settings.ListPageSize)
    wanted = set(only_accounts)
    known = {a.account_id for a in listed}
    if wanted - known:
        raise AccountError(
            f"Account(s) {', '.join(sorted(wanted - known))} are not in the organization"
        )
    for account in listed:
        if account.status != "ACTIVE":
            logs.event(log, "account skipped", account=account.account_id, status=account.status)
    accounts = [
        a for a in listed if a.status == "ACTIVE" and (not wanted or a.account_id in wanted)
    ]
    if not accounts:
        raise AccountError(
            "The organization listing returned no ACTIVE accounts. Check the scope "
            "(OrganizationalUnitId) and that the caller may list the organization's accounts."
        )
    return accounts


def run_account(
    session: boto3.Session, account: Account, context: RunContext, notifier: Notifier | None
) -> AccountReport:
    """One account, start to end. A failure here is reported and never stops other accounts."""
    report = AccountReport(account, context.mode)
    logs.event(log, "account started", account=account.account_id, mode=context.mode.value)
    try:
        member = assume_role(session, account.account_id, context.settings.IAMRoleName)
        run = _AccountRun(member, account, context, report)
        run.scan()
        run.notify(notifier, partition_of(session))
    except (AccountError, *AWS_ERRORS) as exc:
        report.failed = True
        report.errors.append(str(exc))
        logs.event(log, "account failed", logging.ERROR, account=account.account_id, error=str(exc))
    logs.event(
        log,
        "account finished",
        account=account.account_id,
        mode=context.mode.value,
        users=report.users_scanned,
        actions=len(report.outcomes),
        errors=len(report.errors),
    )
    return report


class _AccountRun:
    def __init__(
        self, session: boto3.Session, account: Account, context: RunContext, report: AccountReport
    ):
        self.account = account
        self.context = context
        self.settings = context.settings
        self.today = context.now.date()
        self.report = report
        self.iam = IamAccount(session, self.settings.ListPageSize)
        self.secrets = SecretStore(session)

    def scan(self) -> None:
        exempt = self.iam.group_members(self.settings.IAMExemptionGroup)
        method, users = users_to_scan(
            self.iam,
            self.settings.ScanMethod,
            self.settings.periods,
            self.context.now,
            self.context.forced_users,
            self.account.account_id,
        )
        self.report.scan = method
        for user, read_live in users:
            if user.name in self.context.forced_users:
                self.report.forced_found.add(user.name)
            if user.name in exempt:
                self.report.users_exempt += 1
                self._log("user exempt", user.name)
                continue
            self.report.users_scanned += 1
            if not read_live:
                continue
            try:
                self._user(user)
            except UserGoneError as exc:
                self.report.skipped.append(f"user {user.name}: {exc}, skipped")
                self._log("user skipped", user.name, logging.WARNING, outcome="gone")
            except (KeyRotationError, *AWS_ERRORS) as exc:
                self.report.errors.append(f"user {user.name}: {exc}")
                self._log("user failed", user.name, logging.ERROR, error=str(exc))

    def _user(self, user: User) -> None:
        forced = user.name in self.context.forced_users
        seen: set[tuple[str, ActionKind, Reason]] = set()
        for round_ in range(MAX_ROUNDS):
            keys = self.iam.access_keys(user.name)
            records = self.iam.records(user.name)
            if self.context.mode is Mode.ENFORCE:
                records = self._keep_records(user.name, keys, records)
            plan = decide(
                keys, records, self.settings.periods, self.context.now, forced and round_ == 0
            )
            fresh = [a for a in plan.actions if (a.key_id, a.kind, a.reason) not in seen]
            seen.update((a.key_id, a.kind, a.reason) for a in fresh)
            if not fresh:
                return
            if self.context.mode is Mode.AUDIT:
                self._record_all(user, fresh, Status.PLANNED)
                return
            if not self._act(user, keys, records, fresh):
                return
            if not any(a.changes for a in fresh):
                return

    def _record_all(self, user: User, actions: list[Action], status: str) -> None:
        for action in actions:
            self._outcome(user, action, status)

    def _act(
        self,
        user: User,
        keys: list[AccessKey],
        records: dict[str, KeyRecord],
        actions: list[Action],
    ) -> bool:
        """Run the actions in order; stop the user's plan at the first failure."""
        by_id = {k.key_id: k for k in keys}
        for action in actions:
            try:
                detail = self._execute(user, action, by_id[action.key_id], records)
            except UserGoneError:
                raise
            except (KeyRotationError, *AWS_ERRORS) as exc:
                self._outcome(user, action, Status.FAILED, str(exc))
                self.report.errors.append(f"user {user.name}, key {action.key_id}: {exc}")
                return False
            self._outcome(user, action, Status.DONE, detail)
        return True

    def _execute(
        self, user: User, action: Action, key: AccessKey, records: dict[str, KeyRecord]
    ) -> str:
        record = records.get(key.key_id, KeyRecord())
        periods = self.settings.periods
        if action.kind is ActionKind.ROTATE:
            return self._rotate(user, key, record)
        if action.kind is ActionKind.DEACTIVATE:
            self.iam.deactivate_key(user.name, key.key_id)
            self.iam.write_record(user.name, key.key_id, replace(record, deactivated=self.today))
            deletion = self.today + timedelta(days=periods.recovery_grace)
            return f"to be deleted on {deletion}"
        if action.kind is ActionKind.DELETE:
            self.iam.delete_key(user.name, key.key_id)
            self.iam.forget_records(user.name, [key.key_id])
            return ""
        return ""

    def _rotate(self, user: User, old: AccessKey, record: KeyRecord) -> str:
        """Create, store, then record. The old key is never touched here."""
        if len(self.iam.access_keys(user.name)) >= 2:
            raise RotationError("the user already has two keys; no key was created")
        new = self.iam.create_key(user.name)
        try:
            stored = self.secrets.store(user, new)
            self.iam.allow_secret_read(user.name, stored.arn)
        except AWS_ERRORS as exc:
            self.iam.delete_key(user.name, new.key_id)
            raise RotationError(
                f"storing new key {new.key_id} failed, so it was deleted again and key "
                f"{old.key_id} stays as it was: {exc}"
            ) from exc
        self.iam.write_record(user.name, old.key_id, replace(record, replaced=self.today))
        periods = self.settings.periods
        deactivation = max(
            old.created.date() + timedelta(days=periods.inactive),
            self.today + timedelta(days=periods.inactive_buffer),
        )
        return (
            f"new key {new.key_id} stored in secret {stored.name}; "
            f"key {old.key_id} to be deactivated on {deactivation}"
        )

    def _keep_records(
        self, user: str, keys: list[AccessKey], records: dict[str, KeyRecord]
    ) -> dict[str, KeyRecord]:
        """Date inactive keys on first sight; forget records of keys that are gone."""
        kept = {k: r for k, r in records.items() if k in {key.key_id for key in keys}}
        self.iam.forget_records(user, sorted(set(records) - set(kept)))
        for key in keys:
            record = kept.get(key.key_id, KeyRecord())
            if not key.active and record.deactivated is None:
                kept[key.key_id] = replace(record, deactivated=self.today)
                self.iam.write_record(user, key.key_id, kept[key.key_id])
        return kept

    def notify(self, notifier: Notifier | None, partition: str) -> None:
        notification = build(self.report, self.settings, partition, self.context.now)
        if notification is None or notifier is None:
            return
        try:
            self.report.notification = notifier(notification)
        except (NotificationError, TemplateError, *AWS_ERRORS) as exc:
            self.report.notification = f"failed: {exc}"
            self.report.errors.append(f"notification to {notification.to} failed: {exc}")
            logs.event(log, "notification failed", logging.ERROR, account=self.account.account_id)
            return
        if self.context.mode is Mode.ENFORCE:
            self._remember_warnings()

    def _remember_warnings(self) -> None:
        """Record each sent warning on its key, so it is not sent again."""
        by_user: dict[str, list[Action]] = {}
        for outcome in self.report.outcomes:
            if outcome.action.kind is ActionKind.WARN:
                by_user.setdefault(outcome.user, []).append(outcome.action)
        for user, warnings in by_user.items():
            try:
                records = self.iam.records(user)
                for warning in warnings:
                    record = records.get(warning.key_id, KeyRecord())
                    records[warning.key_id] = replace(
                        record, warned=record.warned | {warning.reason}
                    )
                    self.iam.write_record(user, warning.key_id, records[warning.key_id])
            except (KeyRotationError, *AWS_ERRORS) as exc:
                self.report.errors.append(f"user {user}: warning not recorded: {exc}")

    def _outcome(self, user: User, action: Action, status: str, detail: str = "") -> None:
        self.report.outcomes.append(Outcome(user.name, action, status, detail))
        level = logging.ERROR if status == Status.FAILED else logging.INFO
        self._log(
            action.kind.value.lower(),
            user.name,
            level,
            key_id=action.key_id,
            action=action.kind.value,
            reason=action.reason.value,
            outcome=status,
            on=action.on.isoformat(),
            detail=detail,
        )

    def _log(self, name: str, user: str, level: int = logging.INFO, **fields) -> None:
        logs.event(
            log,
            name,
            level,
            account=self.account.account_id,
            user=user,
            mode=self.context.mode.value,
            dated=self.today.isoformat() if self.context.dated else None,
            **fields,
        )
