"""The demo: a sample organization on the embedded emulator, walked through a few days."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import time_machine

from keyrotation.aws.secrets import secret_name
from keyrotation.compliance.render import to_html
from keyrotation.compliance.standing import assess
from keyrotation.emulator.sample import (
    KeySpec,
    SampleAccount,
    UserSpec,
    add_account,
    add_users,
    use_key,
)
from keyrotation.history.local import HistoryFile
from keyrotation.inventory import read_organization
from keyrotation.model import KeyRecord
from keyrotation.notify.unsent import FolderStore
from keyrotation.pipeline import RunContext, run_organization
from keyrotation.reasons import Reason
from keyrotation.report import RunReport
from keyrotation.settings import Settings

DEMO_DAYS = (0, 10, 20)
ADMIN = "keyrotation-admin@example.com"
FORCED = ("forced-single", "forced-two-active", "forced-with-inactive")
ODD_NAME = "svc+ci=prod,eu.ops@corp_x-1"


def decision_table_users(today: datetime) -> list[UserSpec]:
    """One user per row of the README's decision table, named after the row."""
    ago = lambda days: (today - timedelta(days=days)).date()  # noqa: E731
    return [
        UserSpec("fresh-key", (KeySpec(10),)),
        UserSpec("due-soon", (KeySpec(85),)),
        UserSpec("expired-in-use", (KeySpec(95, used_days_ago=1),)),
        UserSpec("expired-never-used", (KeySpec(120, used_days_ago=None),)),
        UserSpec("unused-due-soon", (KeySpec(86, used_days_ago=None),)),
        UserSpec("rotated-recently", (KeySpec(95), KeySpec(5))),
        UserSpec("install-grace-over", (KeySpec(105), KeySpec(12))),
        UserSpec(
            "recovery-over",
            (KeySpec(110, active=False, record=KeyRecord(deactivated=ago(12))), KeySpec(20)),
        ),
        UserSpec(
            "deletion-soon",
            (KeySpec(104, active=False, record=KeyRecord(deactivated=ago(5))), KeySpec(14)),
        ),
        UserSpec(
            "both-active-expired",
            (KeySpec(97, used_days_ago=30), KeySpec(92, used_days_ago=1)),
        ),
        UserSpec(
            "expired-beside-unused-inactive",
            (KeySpec(95), KeySpec(30, used_days_ago=None, active=False)),
        ),
        UserSpec(
            "expired-beside-used-inactive",
            (KeySpec(95), KeySpec(40, active=False, record=KeyRecord(deactivated=ago(2)))),
        ),
        UserSpec(
            "expiry-blocked-soon",
            (KeySpec(85), KeySpec(30, active=False, record=KeyRecord(deactivated=ago(0)))),
        ),
        UserSpec("held-in-use", (KeySpec(105), KeySpec(12, used_days_ago=None))),
        UserSpec(
            "held-replacement-used",
            (KeySpec(110, record=KeyRecord(held=ago(1))), KeySpec(20)),
        ),
        UserSpec("held-to-the-limit", (KeySpec(140), KeySpec(40, used_days_ago=None))),
        UserSpec("forced-single", (KeySpec(30),)),
        UserSpec("forced-two-active", (KeySpec(60), KeySpec(20, used_days_ago=None))),
        UserSpec("forced-with-inactive", (KeySpec(50), KeySpec(20, active=False))),
        UserSpec("exempt-break-glass", (KeySpec(400),), exempt=True),
        UserSpec("no-keys"),
        UserSpec(ODD_NAME, (KeySpec(93),), path="/team/payments/"),
    ]


@dataclass
class DemoResult:
    reports: list[tuple[datetime, RunReport]]
    outbox: Path
    checks: list[tuple[str, bool]]
    report: Path
    history: Path

    @property
    def passed(self) -> bool:
        return all(ok for _, ok in self.checks)


def build_organization(today: datetime) -> dict[str, SampleAccount]:
    management = boto3.Session(region_name="us-east-1")
    organizations = management.client("organizations")
    organizations.create_organization(FeatureSet="ALL")
    management.client("ses").verify_email_identity(EmailAddress=ADMIN)

    accounts = {
        "production": add_account(management, "Production", "prod-owner@example.com"),
        "development": add_account(management, "Development", "dev-owner@example.com"),
        "sandbox": add_account(management, "Sandbox", "sandbox-owner@example.com"),
    }
    add_users(accounts["development"], decision_table_users(today), today)
    add_users(
        accounts["production"],
        [UserSpec(f"app-{n:03d}", (KeySpec(age=(n * 7) % 80),)) for n in range(118)]
        + [
            UserSpec("billing-exporter", (KeySpec(97, used_days_ago=2),)),
            UserSpec("ci-deployer", (KeySpec(84),)),
        ],
        today,
    )
    add_users(
        accounts["sandbox"],
        [
            UserSpec("experiment", (KeySpec(91),), path="/sandbox/"),
            UserSpec("old-tool", (KeySpec(300, used_days_ago=None),)),
            UserSpec("break-glass", (KeySpec(500),), exempt=True),
        ],
        today,
    )
    closed = add_account(management, "Closed", "closed@example.com")
    organizations.close_account(AccountId=closed.account_id)
    return accounts


def run_demo(
    outbox: Path,
    notifier_for: Callable[[Path], Callable],
    on_day: Callable[[datetime, RunReport], None] = lambda day, report: None,
) -> DemoResult:
    """Build the sample organization, then run enforce mode on each demo day."""
    start = datetime.now(UTC).replace(microsecond=0)
    accounts = build_organization(start)
    settings = Settings(DryRunFlag=False, AdminEmailAddress=ADMIN, ListPageSize=50)
    notifier = notifier_for(outbox)
    history = HistoryFile(outbox / "history.jsonl")
    reports = []
    for offset in DEMO_DAYS:
        day = start + timedelta(days=offset)
        with time_machine.travel(day, tick=True):
            context = RunContext(
                settings,
                now=datetime.now(UTC),
                forced_users=frozenset(FORCED if offset == 0 else ()),
                unsent=FolderStore(outbox / "state"),
                history=history,
            )
            report = run_organization(boto3.Session(region_name="us-east-1"), context, notifier)
        reports.append((day, report))
        on_day(day, report)
    with time_machine.travel(start + timedelta(days=DEMO_DAYS[-1]), tick=True):
        report = write_report(outbox / "compliance-report.html", settings)
    return DemoResult(reports, outbox, _checks(accounts, reports), report, history.path)


def write_report(path: Path, settings: Settings) -> Path:
    """The organization's compliance report as one HTML page, as of the clock's today."""
    inventory = read_organization(boto3.Session(region_name="us-east-1"), settings)
    assessment = assess(inventory.users, settings.periods, datetime.now(UTC))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(to_html(assessment, inventory.accounts, inventory.errors), encoding="utf-8")
    return path


def _checks(accounts: dict[str, SampleAccount], reports) -> list[tuple[str, bool]]:
    development = accounts["development"]
    iam = development.session.client("iam")
    secrets = development.session.client("secretsmanager")
    user = "expired-in-use"
    old_key = development.key_ids[user][0]
    stored = json.loads(
        secrets.get_secret_value(SecretId=secret_name(user), VersionStage="AWSCURRENT")[
            "SecretString"
        ]
    )
    live = {
        k["AccessKeyId"]: k["Status"]
        for k in iam.list_access_keys(UserName=user)["AccessKeyMetadata"]
    }
    caller = use_key(stored["AccessKeyId"], stored["SecretAccessKey"])
    odd = json.loads(
        secrets.get_secret_value(SecretId=secret_name(ODD_NAME), VersionStage="AWSCURRENT")[
            "SecretString"
        ]
    )
    exempt_keys = iam.list_access_keys(UserName="exempt-break-glass")["AccessKeyMetadata"]
    held = iam.list_access_keys(UserName="held-in-use")["AccessKeyMetadata"]
    held_warnings = {
        day.date()
        for day, report in reports
        for account in report.accounts
        for outcome in account.outcomes
        if outcome.user == "held-in-use" and outcome.action.reason is Reason.KEY_HELD_IN_USE
    }
    return [
        (
            f"{user}'s new key is in its secret and is the user's only key",
            list(live) == [stored["AccessKeyId"]],
        ),
        (f"{user}'s new key works for STS", caller.endswith(f":user/{user}")),
        (f"{user}'s old key {old_key} was deleted after deactivation", old_key not in live),
        (f"the comma in {ODD_NAME!r} maps to a valid secret", odd["UserName"] == ODD_NAME),
        ("the exempt user's key was not touched", len(exempt_keys) == 1),
        (
            "held-in-use's old key, still in use beside an unused new key, is held and its "
            "owner warned on every run",
            [k["Status"] for k in held] == ["Active", "Active"]
            and held_warnings == {day.date() for day, _ in reports},
        ),
        ("every day's run was clean", all(report.clean for _, report in reports)),
    ]
