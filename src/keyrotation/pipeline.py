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
from keyrotation.aws import sns
from keyrotation.aws.advice import explain
from keyrotation.aws.iam import IamAccount
from keyrotation.aws.lock import AccountBusy, AccountLock
from keyrotation.aws.organizations import list_accounts
from keyrotation.aws.records import Lifecycle
from keyrotation.aws.secrets import CENTRAL_KEY_ALIAS, SecretStore, central_prefix
from keyrotation.aws.session import assume_role, partition_of
from keyrotation.aws.sts import KeyChecker
from keyrotation.errors import (
    AccountError,
    InputError,
    KeyRotationError,
    NotificationError,
    RecordingError,
    ReplicaError,
    TemplateError,
    UserGoneError,
)
from keyrotation.history.event import HistoryEvent, HistorySink
from keyrotation.model import (
    AccessKey,
    Account,
    Action,
    ActionKind,
    KeyRecord,
    KeyStatus,
    Mode,
    User,
    UserKeys,
)
from keyrotation.notify.message import Notification, build, build_for_owner, describe
from keyrotation.notify.owners import (
    OWNER_EMAIL,
    REFUSED_DAYS,
    Ownership,
    decode_lines,
    encode_lines,
    journal_key,
    owner_of,
    refusals_key,
)
from keyrotation.notify.unsent import UnsentStore
from keyrotation.policy import decide
from keyrotation.reasons import Reason
from keyrotation.report import AccountReport, Outcome, RunReport, Status
from keyrotation.rotation import Rotator
from keyrotation.scan import ReportedLastUse, users_to_scan
from keyrotation.settings import Settings
from keyrotation.summary import summarize

log = logging.getLogger(__name__)

AWS_ERRORS = (ClientError, BotoCoreError)
Notifier = Callable[[Notification], str]
# A user's state is read again after changes, so the day's follow-up warnings go out today
# and a second run on the same day finds nothing new. Three rounds always settle.
MAX_ROUNDS = 3
# The key id shown for a key known only from the credential report, which has no key ids.
REPORTED_KEY_ID = "(not read: credential report)"


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
    # Called after the scan and before the email, with each user's keys kept on the report.
    on_scanned: Callable[[AccountReport], None] | None = None

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
            run = _AccountRun(
                member,
                account,
                context,
                report,
                secret_store(session, member, account, context.settings),
            )
            run.scan()
            _scanned(run, report, context)
            if context.mode is Mode.ENFORCE:
                run.replicate()
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
        report.errors.append(f"internal error, account not finished: {_bug(exc)}")
        log.exception(
            "account failed with an internal error",
            extra={"kr_fields": {"account": account.account_id}},
        )
    if context.settings.SummaryTopicArn:
        _publish_summary(session, report, context)
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


def _rotates(actions: Iterable[Action]) -> bool:
    return any(action.kind is ActionKind.ROTATE for action in actions)


def _bug(exc: Exception) -> str:
    """An unexpected error in words for the report, the email and the summary. Never its repr:
    a UnicodeError's repr holds the whole string it failed on, which may be a secret."""
    return f"{type(exc).__name__}: {exc}"[:500]


def _publish_summary(session: boto3.Session, report: AccountReport, context: RunContext) -> None:
    """With the caller's own session: the topic lives in the deployment's account. A publish
    that fails is reported and undoes nothing."""
    topic = context.settings.SummaryTopicArn
    assert topic is not None
    account = report.account.account_id
    summary = summarize(report, context.run_id, context.now, context.dated)
    try:
        message_id = sns.publish(
            session, topic, f"keyrotation {report.mode.value} summary of account {account}", summary
        )
    except AWS_ERRORS as exc:
        report.errors.append(
            f"account summary not published to {topic}: {exc}. Check that the topic exists "
            "and that the stack's SummaryTopicArn names it; the run's changes stand."
        )
        logs.event(log, "summary not published", logging.ERROR, account=account, error=str(exc))
        return
    logs.event(log, "summary published", account=account, topic=topic, message_id=message_id)


def _scanned(run: _AccountRun, report: AccountReport, context: RunContext) -> None:
    """Hand the scanned keys on (to the compliance report). It is a by-product of the run:
    whatever fails in it is an error on the account, and the changes are still told."""
    if context.on_scanned is None:
        return
    report.keys = run.keys()
    try:
        context.on_scanned(report)
    except Exception as exc:
        report.errors.append(f"compliance report not written: internal error {_bug(exc)}")
        log.exception(
            "report not written", extra={"kr_fields": {"account": report.account.account_id}}
        )


def secret_store(
    session: boto3.Session, member: boto3.Session, account: Account, settings: Settings
) -> SecretStore:
    """The account's users' secrets: in the account itself, or in the main account (written
    with the deployment's own session, so the member role needs no rights on them)."""
    regions = settings.CredentialReplicationRegions
    if settings.StoreSecretsInCentralAccount:
        return SecretStore(session, central_prefix(account.account_id), CENTRAL_KEY_ALIAS, regions)
    return SecretStore(member, regions=regions)


class _AccountRun:
    def __init__(
        self,
        session: boto3.Session,
        account: Account,
        context: RunContext,
        report: AccountReport,
        secrets: SecretStore,
    ):
        self.account = account
        self.context = context
        self.settings = context.settings
        self.today = context.now.date()
        self.report = report
        self.iam = IamAccount(session, self.settings.ListPageSize)
        self.secrets = secrets
        checker = context.key_checker or KeyChecker(session.region_name or "us-east-1")
        self.rotator = Rotator(self.iam, self.secrets, checker, self.today)
        self.journal = context.unsent if context.mode is Mode.ENFORCE else None
        self.owner_tag = self.settings.ResourceOwnerTag
        self.ownership: dict[str, Ownership] = {}
        self.owner_journal_used = False
        # Per owner, the run days its mail was refused since it last went out; owners refused
        # on REFUSED_DAYS of them are mailed no more this run.
        self.refusals: dict[str, set[str]] = {}
        self.refused_owners: set[str] = set()
        self.keep_keys = context.on_scanned is not None
        self._seen: dict[str, UserKeys] = {}

    def keys(self) -> list[UserKeys]:
        """Each user's keys as last read, in the order the users were listed."""
        return list(self._seen.values())

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
        if self.journal is not None and self.owner_tag:
            self._load_owner_journal(self.journal)

        audit = self.context.mode is Mode.AUDIT
        for user, read_live, reported_last_use in users:
            if user.name in self.context.forced_users:
                self.report.forced_found.add(user.name)
            if user.name in exempt:
                self.report.users_exempt += 1
                self._log("user exempt", user.name)
                self._keep_exempt(user, reported_last_use)
                if user.name in self.context.forced_users:
                    self.report.skipped.append(
                        f"user {user.name}: forced rotation not done, the user is exempt"
                    )
                continue
            self.report.users_scanned += 1
            if not read_live:
                self._keep_reported(user, reported_last_use or {})
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

    def replicate(self) -> None:
        """Start each missing or failed replica; a failure is reported and retried next run."""
        try:
            missing = self.secrets.missing_replicas()
        except AWS_ERRORS as exc:
            self.report.errors.append(
                f"replicas not checked, the next run tries again: {explain(exc)}"
            )
            return
        for replica in missing:
            where = f"secret {replica.secret}: replica in {replica.region}"
            try:
                started = self.secrets.replicate(replica)
            except (ReplicaError, *AWS_ERRORS) as exc:
                self.report.errors.append(
                    f"{where} failed, the next run tries again: {explain(exc)}"
                )
                logs.event(
                    log,
                    "replica failed",
                    logging.ERROR,
                    account=self.account.account_id,
                    secret=replica.secret,
                    region=replica.region,
                    error=str(exc),
                )
                continue
            # A first replica goes with its rotation, already told; a retried one is news.
            if started.retried:
                self.report.recoveries.append(f"{where} {started.done}")
            logs.event(
                log,
                "replica started",
                account=self.account.account_id,
                secret=replica.secret,
                region=replica.region,
                detail=started.done,
            )

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
            lifecycle = self.iam.lifecycle(user.name)
        except AWS_ERRORS as exc:
            raise _NotScanned(
                f"its keys could not be read, so nothing was changed: {explain(exc)}"
            ) from exc
        if self.owner_tag:
            self.ownership[user.name] = owner_of(user.name, lifecycle.tags, self.owner_tag)
        if self.keep_keys:
            self._seen[user.name] = UserKeys(self.account, user, tuple(keys), lifecycle.records)
        return keys, lifecycle

    def _keep_exempt(self, user: User, reported_last_use: ReportedLastUse | None) -> None:
        """An exempt user is never decided on; the report still lists its keys."""
        if not self.keep_keys:
            return
        try:
            keys = self.iam.access_keys(user.name, reported_last_use)
        except (KeyRotationError, *AWS_ERRORS) as exc:
            self.report.not_scanned.append(f"user {user.name}: keys not read for the report")
            self._log("user not scanned", user.name, logging.ERROR, error=str(exc))
            return
        self._seen[user.name] = UserKeys(self.account, user, tuple(keys), {}, exempt=True)

    def _keep_reported(self, user: User, reported_last_use: ReportedLastUse) -> None:
        """A user the credential report showed with one young active key and nothing due.

        The report has no key ids, so the key is listed under REPORTED_KEY_ID."""
        if not self.keep_keys:
            return
        keys = tuple(
            AccessKey(REPORTED_KEY_ID, KeyStatus.ACTIVE, created, last_used)
            for created, last_used in reported_last_use.items()
        )
        self._seen[user.name] = UserKeys(self.account, user, keys, {})

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
            if forced and round_ == 0 and not _rotates(plan.actions):
                self.report.skipped.append(
                    f"user {user.name}: forced rotation not done: it has no active key, or a "
                    "key of it was made today (a user is rotated at most once a day)"
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
        owner = self._owner(user.name)
        if self.owner_tag and (owner or self.owner_journal_used):
            by_owner = self._owner_lines()
            if owner:
                by_owner.setdefault(owner, []).append(started)
            self.journal.save(journal_key(self.account.account_id), encode_lines(by_owner))
            self.owner_journal_used = True

    def _load_owner_journal(self, journal: UnsentStore) -> None:
        """The owners' unsent lines. Those of an owner no longer mailed (refused too many days
        running, or an address no longer taken) go to the account email: none is lost."""
        stored = journal.load(journal_key(self.account.account_id))
        self.owner_journal_used = bool(stored)
        if not stored:
            return
        stored_days = journal.load(refusals_key(self.account.account_id))
        self.refusals = {o: set(days) for o, days in decode_lines(stored_days).items()}
        self.refused_owners = {o for o, days in self.refusals.items() if len(days) >= REFUSED_DAYS}
        for owner, lines in decode_lines(stored).items():
            if owner in self.refused_owners:
                why = f"owner mail to {owner} refused {REFUSED_DAYS} days running"
            elif not OWNER_EMAIL.fullmatch(owner):
                why = f"owner address {owner!r} is not taken any more"
            else:
                self.report.owner_earlier[owner] = lines
                continue
            self.report.earlier += [f"{why}; its line: {line}" for line in lines]

    def _lines(self, owner: str | None = None) -> list[str]:
        return [
            f"{self.today}: {describe(o, self.report.mode)}"
            for o in self.report.outcomes
            if owner is None or self._owner(o.user) == owner
        ]

    def _owner(self, user: str) -> str | None:
        """The user's owner address, unless it is the account's own (its email tells all) or
        its mail was refused too many days running."""
        ownership = self.ownership.get(user)
        owner = ownership.owner if ownership else None
        if owner == self.account.email.lower() or owner in self.refused_owners:
            return None
        return owner

    def _owner_lines(self) -> dict[str, list[str]]:
        """Per owner: what its mail has not told yet, and today's lines about its users."""
        owners = {self._owner(o.user) for o in self.report.outcomes} | set(
            self.report.owner_earlier
        )
        return {
            owner: [*self.report.owner_earlier.get(owner, []), *self._lines(owner)]
            for owner in sorted(o for o in owners if o)
        }

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
        """The account email, then each owner's. A warning is recorded as sent only when every
        mail that carried it went out, so a failed mail's warnings are told again."""
        if notifier is None:
            return
        if self.owner_tag:
            self._assign_owners()
        central = self._central_account()
        account_told = self._notify_account(notifier, partition, central)
        owners_untold = (
            self._notify_owners(notifier, partition, central) if self.owner_tag else set()
        )
        if account_told and self.context.mode is Mode.ENFORCE:
            untold = {user for user, owner in self.report.owners.items() if owner in owners_untold}
            self._remember_warnings(untold)

    def _notify_account(self, notifier: Notifier, partition: str, central: str) -> bool:
        notification = build(
            self.report, self.settings, partition, self.context.now, self.context.dated, central
        )
        if notification is None:
            return False
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
            return False
        if self.journal is not None:
            self.journal.clear(self.account.account_id)
        return True

    def _central_account(self) -> str:
        """The account keeping the secrets, for the email, when it is not the member itself;
        empty when unknown, which leaves the email without the id rather than the account
        without its email."""
        if not self.settings.StoreSecretsInCentralAccount:
            return ""
        try:
            return self.secrets.account_id()
        except AWS_ERRORS as exc:
            logs.event(log, "central account unknown", logging.WARNING, error=str(exc))
            return ""

    def _assign_owners(self) -> None:
        """Each user in today's lines goes to its owner, or is listed as told the account.
        Every such user was read live, so its tags are known."""
        for user in dict.fromkeys(o.user for o in self.report.outcomes):
            owner = self._owner(user)
            ownership = self.ownership[user]
            if owner is not None:
                self.report.owners[user] = owner
            elif ownership.owner in self.refused_owners:
                self.report.owner_fallbacks.append(
                    f"user {user}: owner mail to {ownership.owner} refused {REFUSED_DAYS} days "
                    "running; told the account email only"
                )
            elif ownership.fallback:
                self.report.owner_fallbacks.append(ownership.fallback)

    def _notify_owners(self, notifier: Notifier, partition: str, central: str) -> set[str]:
        """Send each owner its mail; the owners whose mail failed keep their lines."""
        unsent: dict[str, list[str]] = {}
        lines = self._owner_lines()
        for owner in sorted(set(self.report.owners.values()) | set(self.report.owner_earlier)):
            notification = build_for_owner(
                self.report,
                owner,
                self.settings,
                partition,
                self.context.now,
                self.context.dated,
                central,
            )
            if notification is None:
                continue
            try:
                self.report.owner_mails[owner] = notifier(notification)
            except (NotificationError, TemplateError, *AWS_ERRORS) as exc:
                self.report.owner_mails[owner] = f"failed: {exc}"
                self.report.errors.append(f"owner mail to {owner} failed: {explain(exc)}")
                logs.event(log, "owner mail failed", logging.ERROR, account=self.account.account_id)
                unsent[owner] = lines.get(owner, [])
        if self.journal is not None and (unsent or self.owner_journal_used):
            key = journal_key(self.account.account_id)
            if unsent:
                self.journal.save(key, encode_lines(unsent))
            else:
                self.journal.clear(key)
        if self.journal is not None:
            self._count_refusals(self.journal, set(unsent))
        return set(unsent)

    def _count_refusals(self, journal: UnsentStore, refused: set[str]) -> None:
        """Add today to each owner refused today; an owner whose mail went out, or that fell
        back to the account email today, starts again from nothing."""
        days = {owner: self.refusals.get(owner, set()) | {str(self.today)} for owner in refused}
        key = refusals_key(self.account.account_id)
        if days:
            journal.save(key, encode_lines({o: sorted(d) for o, d in days.items()}))
        elif self.refusals:
            journal.clear(key)

    def _remember_warnings(self, untold: set[str]) -> None:
        """Record each sent warning on its key, so it is not sent again."""
        by_user: dict[str, list[Action]] = {}
        for outcome in self.report.outcomes:
            if outcome.action.kind is ActionKind.WARN and outcome.user not in untold:
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
