"""Each key's standing against the controls auditors ask about, and its next step. Pure.

The next step is never worked out here: each user is run forward through the policy with
`forecast.walk`, and the first change that reaches the key is its next step.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from keyrotation.forecast import ForecastEvent, walk
from keyrotation.inventory import UserKeys
from keyrotation.model import AccessKey, Account, Action, Periods

# Security Hub IAM.8 finds credentials not used for 90 days, whatever the rotation period.
UNUSED_DAYS = 90
CALENDAR_DAYS = 30


class Standing(enum.StrEnum):
    COMPLIANT = "compliant"
    DUE_SOON = "due soon"
    OVERDUE = "overdue"
    UNUSED = "unused"
    EXEMPT = "exempt"


@dataclass(frozen=True)
class StandingText:
    control: str
    meaning: str


STANDING_TEXT: dict[Standing, StandingText] = {
    Standing.COMPLIANT: StandingText(
        "CIS AWS Foundations 1.14 and Security Hub IAM.3: passed",
        "The key is younger than the rotation period (or inactive), so it meets the requirement "
        "that access keys are rotated every 90 days or less.",
    ),
    Standing.DUE_SOON: StandingText(
        "CIS AWS Foundations 1.14 and Security Hub IAM.3: passed, action scheduled",
        "The key meets the rotation requirement today; its rotation, deactivation or deletion "
        "is scheduled within the warning period, on the date shown.",
    ),
    Standing.OVERDUE: StandingText(
        "CIS AWS Foundations 1.14 and Security Hub IAM.3: failed",
        "The key is active and at least as old as the rotation period. keyrotation replaces "
        "it and "
        "deactivates it on the date shown (later, up to MaxHoldDays, while an application "
        "still uses it and not its replacement); until then it is a finding.",
    ),
    Standing.UNUSED: StandingText(
        "Security Hub IAM.8: failed",
        "The key is active and has not been used in 90 days or more (or never since it was "
        "created): unused credentials should be removed. keyrotation deletes or deactivates it "
        "on the date shown.",
    ),
    Standing.EXEMPT: StandingText(
        "CIS AWS Foundations 1.14, Security Hub IAM.3 and IAM.8: documented exception",
        "The user is in the exemption group, so keyrotation never touches its keys. The "
        "exception needs its own justification and review.",
    ),
}


@dataclass(frozen=True)
class KeyRow:
    account: Account
    user: str
    key: AccessKey
    age: int
    standing: Standing
    next_step: Action | None

    @property
    def text(self) -> StandingText:
        return STANDING_TEXT[self.standing]

    def to_dict(self) -> dict[str, Any]:
        step = self.next_step
        return {
            "account_id": self.account.account_id,
            "account_name": self.account.name,
            "user": self.user,
            "key_id": self.key.key_id,
            "status": self.key.status.value,
            "created": self.key.created.date().isoformat(),
            "age_days": self.age,
            "last_used": self.key.last_used.date().isoformat() if self.key.last_used else None,
            "standing": self.standing.value,
            "control": self.text.control,
            "next_action": step.kind.value if step else None,
            "next_date": step.on.isoformat() if step else None,
            "next_reason": step.reason.value if step else None,
        }


@dataclass
class Assessment:
    generated: datetime
    periods: Periods
    rows: list[KeyRow] = field(default_factory=list)
    calendar: list[ForecastEvent] = field(default_factory=list)


def assess(users: Iterable[UserKeys], periods: Periods, now: datetime) -> Assessment:
    """Every key's row, and the changes of the next CALENDAR_DAYS days (today included)."""
    assessment = Assessment(now, periods)
    for user in users:
        rows, events = assess_user(user, periods, now)
        assessment.rows += rows
        assessment.calendar += events
    assessment.rows.sort(key=lambda r: (r.account.account_id, r.user, r.key.created))
    assessment.calendar.sort(key=lambda e: (e.day, e.account.account_id, e.user))
    return assessment


def assess_user(
    user: UserKeys, periods: Periods, now: datetime
) -> tuple[list[KeyRow], list[ForecastEvent]]:
    next_steps: dict[str, Action] = {}
    events: list[ForecastEvent] = []
    if not user.exempt:
        next_steps, events = _run_forward(user, periods, now)
    today = now.date()
    rows = [
        KeyRow(
            user.account,
            user.user.name,
            key,
            (today - key.created.date()).days,
            standing_of(key, user.exempt, next_steps.get(key.key_id), today, periods),
            next_steps.get(key.key_id),
        )
        for key in user.keys
    ]
    return rows, events


def _run_forward(
    user: UserKeys, periods: Periods, now: datetime
) -> tuple[dict[str, Action], list[ForecastEvent]]:
    """Walk until every key has its next change and the calendar is full, within one cycle."""
    horizon = max(periods.rotation, periods.inactive) + (periods.max_hold or 0)
    horizon += periods.recovery_grace + 1
    wanted = {k.key_id for k in user.keys}
    next_steps: dict[str, Action] = {}
    events = []
    last_day = now.date() + timedelta(days=CALENDAR_DAYS - 1)
    for offset, (day, actions) in enumerate(walk(user.keys, user.records, periods, now)):
        for action in actions:
            if not action.changes:
                continue
            if action.key_id in wanted:
                next_steps.setdefault(action.key_id, action)
            if day <= last_day:
                events.append(ForecastEvent(day, user.account, user.user.name, action))
        if offset >= horizon or (day >= last_day and wanted <= set(next_steps)):
            break
    return next_steps, events


def standing_of(
    key: AccessKey, exempt: bool, next_step: Action | None, today: date, periods: Periods
) -> Standing:
    if exempt:
        return Standing.EXEMPT
    if not key.active:
        return Standing.COMPLIANT
    last_activity = (key.last_used or key.created).date()
    if (today - last_activity).days >= UNUSED_DAYS:
        return Standing.UNUSED
    age = (today - key.created.date()).days
    if age >= periods.rotation:
        return Standing.OVERDUE
    # Due soon: overdue within the warning period, or acted on within it.
    if age + periods.warn >= periods.rotation:
        return Standing.DUE_SOON
    if next_step is not None and (next_step.on - today).days <= periods.warn:
        return Standing.DUE_SOON
    return Standing.COMPLIANT
