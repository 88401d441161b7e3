"""Which users an account's scan decides on, and which of them it reads live.

With the credential report, a handful of calls cover every user and only users whose keys may
need an action or a warning are read one by one. Without it, every user is read one by one.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime

from keyrotation import logs
from keyrotation.aws.credential_report import CredentialReport, ReportedUser
from keyrotation.aws.iam import IamAccount
from keyrotation.errors import CredentialReportError
from keyrotation.model import Periods, User
from keyrotation.policy import decide

log = logging.getLogger(__name__)

REPORT = "report"
PER_USER = "per-user"
# What the report says of each of a user's keys: its last use, by the key's creation time.
ReportedLastUse = dict[datetime, datetime | None]
# A user, whether to read its live state (keys, last use, records) and decide on that, and
# the report's last use of its keys (None on the per-user path).
Listed = tuple[User, bool, ReportedLastUse | None]


def users_to_scan(
    iam: IamAccount,
    method: str,
    periods: Periods,
    now: datetime,
    forced: frozenset[str],
    account_id: str,
) -> tuple[str, Iterator[Listed]]:
    """How the account is scanned, and its users. The report is read here, before any user,
    so a report that cannot be had falls back to per-user calls without scanning twice."""
    if method == REPORT:
        try:
            report = iam.credential_report()
        except CredentialReportError as exc:
            logs.event(
                log,
                "scan falls back to per-user calls",
                logging.WARNING,
                account=account_id,
                reason=str(exc),
            )
            return "per-user (credential report unavailable)", _every_user(iam)
        return "credential report", _reported_users(report, periods, now, forced)
    return PER_USER, _every_user(iam)


def needs_live_read(user: ReportedUser, periods: Periods, now: datetime, forced: bool) -> bool:
    """False only when the per-user path is sure to plan nothing for this user.

    Lifecycle records are user tags, which the report lacks. With a single active key they can
    only silence a warning, so no plan without records means no plan at all. An inactive key's
    recovery period and the deactivation date of two active keys depend on records, and enforce
    mode dates an inactive key on first sight: such users are always read live."""
    if forced or len(user.keys) > 1 or any(not key.active for key in user.keys):
        return True
    keys = [key.as_access_key() for key in user.keys]
    return bool(decide(keys, {}, periods, now).actions)


def _reported_users(
    report: CredentialReport, periods: Periods, now: datetime, forced: frozenset[str]
) -> Iterator[Listed]:
    for reported in report.users:
        user = User(reported.name, reported.arn, reported.path)
        last_use = {
            key.created.astimezone(UTC).replace(microsecond=0): key.last_used
            for key in reported.keys
        }
        yield user, needs_live_read(reported, periods, now, reported.name in forced), last_use


def _every_user(iam: IamAccount) -> Iterator[Listed]:
    for user in iam.users():
        yield user, True, None
