"""The report's files: CSV, JSON, and one self-contained HTML page (inline style and script)."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import jinja2

from keyrotation.compliance.standing import (
    CALENDAR_DAYS,
    STANDING_TEXT,
    Assessment,
    KeyRow,
    Standing,
)
from keyrotation.model import Account

TEMPLATES = Path(__file__).parent / "templates"
COLUMNS = (
    "account_id",
    "account_name",
    "user",
    "key_id",
    "status",
    "created",
    "age_days",
    "last_used",
    "standing",
    "control",
    "next_action",
    "next_date",
    "next_reason",
)
PASSING = (Standing.COMPLIANT, Standing.DUE_SOON)


@dataclass(frozen=True)
class AccountSummary:
    account: Account
    keys: int
    passing: int
    exempt_keys: int
    exempt_users: int
    oldest: KeyRow | None
    standings: Counter

    @property
    def share(self) -> str:
        assessed = self.keys - self.exempt_keys
        return f"{100 * self.passing / assessed:.0f}%" if assessed else "no keys"


def summaries(assessment: Assessment, accounts: list[Account]) -> list[AccountSummary]:
    result = []
    for account in accounts:
        rows = [r for r in assessment.rows if r.account.account_id == account.account_id]
        exempt = [r for r in rows if r.standing is Standing.EXEMPT]
        active = [r for r in rows if r.key.active]
        result.append(
            AccountSummary(
                account,
                keys=len(rows),
                passing=sum(1 for r in rows if r.standing in PASSING),
                exempt_keys=len(exempt),
                exempt_users=len({r.user for r in exempt}),
                oldest=max(active, key=lambda r: r.age, default=None),
                standings=Counter(r.standing for r in rows),
            )
        )
    return result


def to_csv(assessment: Assessment) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in assessment.rows:
        writer.writerow(row.to_dict())
    return buffer.getvalue()


def to_json(assessment: Assessment, errors: list[str]) -> str:
    return json.dumps(
        {
            "generated": assessment.generated.isoformat(),
            "keys": [row.to_dict() for row in assessment.rows],
            "calendar": [
                {
                    "date": event.day.isoformat(),
                    "account_id": event.account.account_id,
                    "user": event.user,
                    "key_id": event.action.key_id,
                    "action": event.action.kind.value,
                    "reason": event.action.reason.value,
                }
                for event in assessment.calendar
            ],
            "errors": errors,
        },
        indent=2,
    )


def to_html(
    assessment: Assessment,
    accounts: list[Account],
    errors: list[str],
    missing: Sequence[Account] = (),
) -> str:
    """The page; `missing` are accounts expected on the page whose rows are not there."""
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    today = assessment.generated.date()
    return environment.get_template("report.html").render(
        generated=assessment.generated,
        periods=assessment.periods,
        rows=assessment.rows,
        summaries=summaries(assessment, accounts),
        calendar=_calendar(assessment, today),
        standings=list(Standing),
        texts=STANDING_TEXT,
        errors=errors,
        missing=missing,
    )


def _calendar(assessment: Assessment, today: date) -> list[tuple[date, list]]:
    days = [today + timedelta(days=n) for n in range(CALENDAR_DAYS)]
    by_day: dict[date, list] = {day: [] for day in days}
    for event in assessment.calendar:
        by_day.setdefault(event.day, []).append(event)
    return [(day, by_day[day]) for day in days]
