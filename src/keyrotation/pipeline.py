"""One daily run: inventory the accounts, decide per key, act, notify. The CLI, the Lambda
handlers and the demo all go through here."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from keyrotation import logs
from keyrotation.aws.advice import explain
from keyrotation.aws.iam import IamAccount
from keyrotation.aws.lock import AccountBusy, AccountLock
from keyrotation.aws.organizations import list_accounts
from keyrotation.aws.records import Lifecycle
from keyrotation.aws.secrets import SecretStore
from keyrotation.aws.session import assume_role, partition_of
from keyrotation.aws.sts import KeyChecker
from keyrotation.errors import (
    AccountError,
    InputError,
    KeyRotationError,
    NotificationError,
    RecordingError,
    TemplateError,
    UserGoneError,
)
from keyrotation.history.event import HistoryEvent, HistorySink
from keyrotation.model import AccessKey, Account, Action, ActionKind, KeyRecord, Mode, User
from keyrotation.notify.message import Notification, build, describe
from keyrotation.notify.unsent import UnsentStore
from keyrotation.policy import decide
from keyrotation.reasons import Reason
from keyrotation.report import AccountReport, Outcome, RunReport, Status
from keyrotation.rotation import Rotator
from keyrotation.scan import ReportedLastUse, users_to_scan
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
    # A single-account job checks its forced users exist before it changes anything.
    forced_users_must_exist: bool = False
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    key_checker: KeyChecker | None = None
    unsent: UnsentStore | None = None
    history: HistorySink | None = None

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
        run_id=context.run_id,
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

    if context.forced_users and context.mode is Mode.ENFORCE:
        _check_forced_users_exist(session, accounts, context)
    if on_accounts_listed:
        on_accounts_listed(len(accounts))
    report.accounts.extend(run_accounts(session, accounts, context, notifier, on_account))

    found = {u for a in report.accounts for u in a.forced_found}
    for user in sorted(context.forced_users - found):
        report.errors.append(f"ForceRotate names user {user}, found in no scanned account")
    return report


def _check_forced_users_exist(
    session: boto3.Session, accounts: list[Account], context: RunContext
) -> None:
    """Refuse a forced rotation of a user found in no account, before any change."""
    missing = set(context.forced_users)
    for account in accounts:
        if not missing:
            return
        try:
            member = IamAccount(
                assume_role(session, account.account_id, context.settings.IAMRoleName)
            )
            missing -= {user for user in missing if member.exists(user)}
        except (AccountError, *AWS_ERRORS):
            continue  # the account's own run reports it
    if missing:
        raise InputError(
            f"--force-rotate names {', '.join(sorted(missing))}, a user of no scanned account; "
            "nothing was changed"
        )


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
        raise InputError(
            f"Account(s) {', '.join(sorted(wanted - known))} are not in the organization; "
            "nothing was changed"
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
    dated = context.now.date().isoformat() if context.dated else None
    logs.event(
        log, "account started", account=account.account_id, mode=context.mode.value, dated=dated
    )
    try:
        member = assume_role(session, account.account_id, context.settings.IAMRoleName)
        lock = AccountLock(member, context.run_id, context.now)
        if context.mode is Mode.ENFORCE:
            lock.acquire()
        try:
            run = _AccountRun(member, account, context, report)
            run.scan()
            run.notify(notifier, partition_of(session))
        finally:
            if context.mode is Mode.ENFORCE:
                lock.release()
    except AccountBusy as exc:
        report.busy = str(exc)
        logs.event(log, "account busy", logging.WARNING, account=account.account_id)
    except InputError:
        raise
    except (AccountError, *AWS_ERRORS) as exc:
        report.failed = True
        report.errors.append(explain(exc))
        logs.event(log, "account failed", logging.ERROR, account=account.account_id, error=str(exc))
    # A bug met in one account is reported there and must not stop the other accounts.
    except Exception as exc:
        report.failed = True
        report.errors.append(f"internal error, account not finished: {exc!r}")
        log.exception(
            "account failed with an internal error",
            extra={"kr_fields": {"account": account.account_id}},
        )
    logs.event(
        log,
        "account finished",
        account=account.account_id,
        mode=context.mode.value,
        dated=dated,
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
        checker = context.key_checker or KeyChecker(session.region_name or "us-east-1")
        self.rotator = Rotator(self.iam, self.secrets, checker, self.today)
        self.journal = context.unsent if context.mode is Mode.ENFORCE else None

    def scan(self) -> None:
        """Read the account's user list and exemptions whole before changing anything: a read
        that fails is never taken for an empty answer."""
        try:
            exempt = self.iam.group_members(self.settings.IAMExemptionGroup)
            method, listed = users_to_scan(
                self.iam,
                self.settings.ScanMethod,
                self.settings.periods,
                self.context.now,
                self.context.forced_users,
                self.account.account_id,
            )
            users = list(listed)
        except AWS_ERRORS as exc:
            raise AccountError(f"account not scanned: {explain(exc)}") from exc
        self.report.scan = method
        self._check_forced_users({user.name for user, *_ in users})
        if self.journal is not None:
            self.report.earlier = self.journal.load(self.account.account_id)

        audit = self.context.mode is Mode.AUDIT
        for user, read_live, reported_last_use in users:
            if user.name in self.context.forced_users:
                self.report.forced_found.add(user.name)
            if user.name in exempt:
                self.report.users_exempt += 1
                self._log("user exempt", user.name)
                if user.name in self.context.forced_users:
                    self.report.skipped.append(
                        f"user {user.name}: forced rotation not done, the user is exempt"
                    )
                continue
            self.report.users_scanned += 1
            if not read_live:
                continue
            try:
                # An audit changes nothing, so the report's last use stands in for a live read.
                self._user(user, reported_last_use if audit else None)
            except UserGoneError as exc:
                self.report.skipped.append(f"user {user.name}: {exc}, skipped")
                self._log("user skipped", user.name, logging.WARNING, outcome="gone")
            except _NotScanned as exc:
                self.report.not_scanned.append(f"user {user.name}: {exc}")
                self._log("user not scanned", user.name, logging.ERROR, error=str(exc))
            except (KeyRotationError, *AWS_ERRORS) as exc:
                self.report.errors.append(f"user {user.name}: {explain(exc)}")
                self._log("user failed", user.name, logging.ERROR, error=str(exc))

    def _check_forced_users(self, names: set[str]) -> None:
        missing = sorted(self.context.forced_users - names)
        if missing and self.context.forced_users_must_exist:
            raise InputError(
                f"ForceRotate names {', '.join(missing)}, not a user of account "
                f"{self.account.account_id}; nothing was changed"
            )

    def _read(
        self, user: User, reported_last_use: ReportedLastUse | None = None
    ) -> tuple[list[AccessKey], Lifecycle]:
        try:
            keys = self.iam.access_keys(user.name, reported_last_use)
            return keys, self.iam.lifecycle(user.name)
        except AWS_ERRORS as exc:
            raise _NotScanned(
                f"its keys could not be read, so nothing was changed: {explain(exc)}"
            ) from exc

    def _user(self, user: User, reported_last_use: ReportedLastUse | None = None) -> None:
        forced = user.name in self.context.forced_users
        enforce = self.context.mode is Mode.ENFORCE
        keys, lifecycle = self._read(user, reported_last_use)
        if lifecycle.rotation is not None and not enforce:
            self.report.recoveries.append(
                f"user {user.name}: a rotation of key {lifecycle.rotation.old_key_id} was "
                "interrupted; the next enforce run finishes it or takes its new key back"
            )
        elif lifecycle.rotation is not None:
            note = self.rotator.resume(user, keys, lifecycle)
            self.report.recoveries.append(f"user {user.name}: {note}")
            self._log("rotation resumed", user.name, logging.WARNING, detail=note)
            keys, lifecycle = self._read(user)

        seen: set[tuple[str, ActionKind, Reason]] = set()
        for round_ in range(MAX_ROUNDS):
            if round_:
                keys, lifecycle = self._read(user)
            records = lifecycle.records
            if enforce:
                records = self._keep_records(user.name, keys, records)
            plan = decide(
                keys, records, self.settings.periods, self.context.now, forced and round_ == 0
            )
            fresh = [a for a in plan.actions if (a.key_id, a.kind, a.reason) not in seen]
            seen.update((a.key_id, a.kind, a.reason) for a in fresh)
            if not fresh:
                return
            if not enforce:
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
            if action.changes:
                self._write_ahead(user, action)
            try:
                detail = self._execute(user, action, by_id[action.key_id], records)
            except UserGoneError:
                raise
            except RecordingError as exc:
                self._outcome(user, action, Status.DONE, str(exc))
                self.report.errors.append(f"user {user.name}, key {action.key_id}: {explain(exc)}")
                return False
            except (KeyRotationError, *AWS_ERRORS) as exc:
                self._outcome(user, action, Status.FAILED, str(exc))
                self.report.errors.append(f"user {user.name}, key {action.key_id}: {explain(exc)}")
                return False
            self._outcome(user, action, Status.DONE, detail)
        return True

    def _execute(
        self, user: User, action: Action, key: AccessKey, records: dict[str, KeyRecord]
    ) -> str:
        record = records.get(key.key_id, KeyRecord())
        periods = self.settings.periods
        if action.kind is ActionKind.ROTATE:
            stored = self.rotator.rotate(user, key, record)
            deactivation = max(
                key.created.date() + timedelta(days=periods.inactive),
                self.today + timedelta(days=periods.inactive_buffer),
            )
            return f"{stored}; key {key.key_id} to be deactivated on {deactivation}"
        if action.kind is ActionKind.DEACTIVATE:
            self.iam.deactivate_key(user.name, key.key_id)
            deletion = self.today + timedelta(days=periods.recovery_grace)
            try:
                self.iam.write_record(
                    user.name, key.key_id, replace(record, deactivated=self.today)
                )
            except AWS_ERRORS as exc:
                raise RecordingError(f"key {key.key_id} was deactivated", exc) from exc
            return f"to be deleted on {deletion}"
        if action.kind is ActionKind.DELETE:
            self.iam.delete_key(user.name, key.key_id)
            try:
                self.iam.forget_records(user.name, [key.key_id])
            except AWS_ERRORS as exc:
                raise RecordingError(f"key {key.key_id} was deleted", exc) from exc
            return ""
        return ""

    def _write_ahead(self, user: User, action: Action) -> None:
        """Note the change before making it, so a run that stops cannot hide it."""
        if self.journal is None:
            return
        started = (
            f"{self.today}: started to {action.kind.value.lower()} key {action.key_id} of user "
            f"{user.name} [{action.reason.value}]; that run stopped before it confirmed the result"
        )
        lines = [*self.report.earlier, *self._lines(), started]
        self.journal.save(self.account.account_id, lines)

    def _lines(self) -> list[str]:
        return [f"{self.today}: {describe(o, self.report.mode)}" for o in self.report.outcomes]

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
            elif key.active and record.deactivated is not None:
                # Someone reactivated the key, as the email allows: its grace starts again.
                kept[key.key_id] = replace(
                    record, deactivated=None, replaced=self.today, warned=frozenset(), held=None
                )
                self.iam.write_record(user, key.key_id, kept[key.key_id])
                self.report.recoveries.append(
                    f"user {user}: key {key.key_id} was reactivated by hand; its installation "
                    "grace period starts again today"
                )
        return kept

    def notify(self, notifier: Notifier | None, partition: str) -> None:
        notification = build(
            self.report, self.settings, partition, self.context.now, self.context.dated
        )
        if notification is None or notifier is None:
            return
        try:
            self.report.notification = notifier(notification)
        except (NotificationError, TemplateError, *AWS_ERRORS) as exc:
            self.report.notification = f"failed: {exc}"
            self.report.errors.append(f"notification to {notification.to} failed: {explain(exc)}")
            logs.event(log, "notification failed", logging.ERROR, account=self.account.account_id)
            if self.journal is not None:
                unsent = [*self.report.earlier, *self._lines()]
                unsent += [f"{self.today}: Repaired: {n}" for n in self.report.recoveries]
                self.journal.save(self.account.account_id, unsent)
            return
        if self.journal is not None:
            self.journal.clear(self.account.account_id)
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
                    records[warning.key_id] = record.after_warning(warning.reason, self.today)
                    self.iam.write_record(user, warning.key_id, records[warning.key_id])
            except (KeyRotationError, *AWS_ERRORS) as exc:
                self.report.errors.append(f"user {user}: warning not recorded: {exc}")

    def _outcome(self, user: User, action: Action, status: str, detail: str = "") -> None:
        outcome = Outcome(user.name, action, status, detail)
        self.report.outcomes.append(outcome)
        if self.context.history is not None:
            self.context.history.append(
                HistoryEvent.from_outcome(
                    self.context.run_id,
                    self.context.mode.value,
                    self.account.account_id,
                    outcome,
                    datetime.now(UTC),
                )
            )
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


def _rotates(actions: Iterable[Action]) -> bool:
    return any(a.kind is ActionKind.ROTATE for a in actions)


class _NotScanned(Exception):
    """A read about a user failed; the user gets no change today."""
