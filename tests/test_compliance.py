"""The compliance report: each key's standing and next step, and the report's files."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta
from pathlib import Path

import pytest

from keyrotation.compliance.render import to_csv, to_html, to_json
from keyrotation.compliance.standing import STANDING_TEXT, Standing, assess, assess_user
from keyrotation.inventory import UserKeys, read_organization
from keyrotation.model import Account, ActionKind, User
from keyrotation.policy import decide
from keyrotation.reasons import Reason
from tests.orgs import KeySpec, UserSpec
from tests.test_cli import cli
from tests.test_policy import DECISION_TABLE, NOW, PERIODS, TODAY, key

COMPLIANT, DUE_SOON, OVERDUE, UNUSED, EXEMPT = (
    Standing.COMPLIANT,
    Standing.DUE_SOON,
    Standing.OVERDUE,
    Standing.UNUSED,
    Standing.EXEMPT,
)
ACCOUNT = Account("111111111111", "Payments", "owner@example.com")

# The standing of each key in each row of the decision table (tests/test_policy.py).
STANDINGS = {
    "one active key, young": {"A": COMPLIANT},
    "one active key, due soon": {"A": DUE_SOON},
    "one active key, due soon, already warned": {"A": DUE_SOON},
    "one active key, expired, used": {"A": OVERDUE},
    "one active key, expired, never used": {"A": UNUSED},
    "one active key, never used, due soon": {"A": DUE_SOON},
    "one active key, forced": {"A": COMPLIANT},
    "one inactive key, first seen": {"A": COMPLIANT},
    "one inactive key, recovery ends soon": {"A": COMPLIANT},
    "one inactive key, recovery over": {"A": COMPLIANT},
    "one inactive key, forced: nothing to rotate": {"A": COMPLIANT},
    "two active, replaced recently": {"A": OVERDUE, "B": COMPLIANT},
    "two active, deactivation soon": {"A": OVERDUE, "B": COMPLIANT},
    "two active, install grace over": {"A": OVERDUE, "B": COMPLIANT},
    "two active, buffer counts from the recorded replacement": {"A": OVERDUE, "B": COMPLIANT},
    "two active, both expired, older one least recently used": {"A": OVERDUE, "B": OVERDUE},
    "two active, both expired, newer one never used": {"A": OVERDUE, "B": UNUSED},
    "two active, newer one expires while the older lingers": {"A": OVERDUE, "B": DUE_SOON},
    "two active, forced": {"A": COMPLIANT, "B": COMPLIANT},
    "inactive older, active newer, recovery ends soon": {"A": COMPLIANT, "B": COMPLIANT},
    "inactive older, active newer, recovery over": {"A": COMPLIANT, "B": COMPLIANT},
    "active expired, inactive key never used": {"A": OVERDUE, "B": COMPLIANT},
    "active expired, used inactive key still in recovery": {"A": OVERDUE, "B": COMPLIANT},
    "active expired, inactive key's recovery over": {"A": OVERDUE, "B": COMPLIANT},
    "active due soon, inactive key outlives its rotation date": {"A": DUE_SOON, "B": COMPLIANT},
    "active and inactive, forced": {"A": COMPLIANT, "B": COMPLIANT},
    "forced again on the day of a rotation changes nothing": {"A": COMPLIANT, "B": COMPLIANT},
    "two inactive keys, both recovered": {"A": COMPLIANT, "B": COMPLIANT},
    "two active, both expired, the old one in use: the unused one goes": {
        "A": OVERDUE,
        "B": UNUSED,
    },
    "two active, forced again: the key already replaced goes, not the unused new one": {
        "A": COMPLIANT,
        "B": COMPLIANT,
    },
    # Auditors read the age IAM reports, whatever a dated run recorded.
    "a key this tool created in a dated run counts from the recorded day": {"A": OVERDUE},
    "one active key stored by this tool, never used, expired: rotated, not deleted": {"A": UNUSED},
    # A held key is past its rotation: a finding until it is deactivated.
    "two active, old key used after its replacement, new never used: held": {
        "A": OVERDUE,
        "B": COMPLIANT,
    },
    "two active, held, warned today: quiet": {"A": OVERDUE, "B": COMPLIANT},
    "two active, held, warned yesterday: warned again today": {"A": OVERDUE, "B": COMPLIANT},
    "two active, held to the hard limit": {"A": OVERDUE, "B": COMPLIANT},
    "two active, held key's replacement now used: deactivated at once": {
        "A": OVERDUE,
        "B": COMPLIANT,
    },
    "two active, new key used only on the day it was stored (our check): held": {
        "A": OVERDUE,
        "B": COMPLIANT,
    },
    "two active, old key last used on the day its replacement was stored: no hold": {
        "A": OVERDUE,
        "B": COMPLIANT,
    },
    "no keys": {},
    "no keys, forced": {},
}


def rows_of(keys, records=None, exempt=False):
    user = UserKeys(ACCOUNT, User("alice", "arn:aws:iam::1:user/alice"), tuple(keys), records or {})
    user = UserKeys(user.account, user.user, user.keys, user.records, exempt)
    return {row.key.key_id: row for row in assess_user(user, PERIODS, NOW)[0]}


@pytest.mark.parametrize(
    ("keys", "records", "expected"),
    [pytest.param(k, r, STANDINGS[row], id=row) for row, k, r, _, _ in DECISION_TABLE],
)
def test_standing_of_each_decision_table_row(keys, records, expected):
    assert {k: row.standing for k, row in rows_of(keys, records).items()} == expected


def test_every_decision_table_row_has_a_standing():
    assert set(STANDINGS) == {row for row, *_ in DECISION_TABLE}


# The run forward has each application use its most recently used key every day, so a key
# last used on the day it was replaced is used again today, and held.
USED_AGAIN_TODAY = {"two active, old key last used on the day its replacement was stored: no hold"}


def test_a_change_due_today_is_the_next_step_the_policy_plans_today():
    for row, keys, records, forced, _ in DECISION_TABLE:
        if forced or row in USED_AGAIN_TODAY:
            continue
        rows = rows_of(keys, records)
        for action in decide(keys, records, PERIODS, NOW).changes:
            step = rows[action.key_id].next_step
            assert (step.kind, step.reason, step.on) == (action.kind, action.reason, TODAY)


def test_next_step_of_a_young_key_is_its_rotation_on_the_policys_date():
    (row,) = rows_of([key("A", 10)]).values()

    assert row.next_step.kind is ActionKind.ROTATE
    assert row.next_step.reason is Reason.EXPIRED_ACTIVE_KEY
    assert row.next_step.on == TODAY + timedelta(days=80)


def test_next_step_of_a_held_key_is_its_deactivation_at_the_hard_limit():
    rows = rows_of([key("A", 100), key("B", 10, used=None)])

    step = rows["A"].next_step
    assert (step.kind, step.reason) == (ActionKind.DEACTIVATE, Reason.MAX_HOLD_PERIOD_END)
    assert step.on == TODAY + timedelta(days=PERIODS.max_hold)
    assert rows["A"].standing is OVERDUE


def test_a_key_the_application_uses_again_today_is_held_in_the_run_forward():
    (row,) = USED_AGAIN_TODAY
    keys, records = next((k, r) for name, k, r, *_ in DECISION_TABLE if name == row)

    step = rows_of(keys, records)["A"].next_step

    assert (step.reason, step.on) == (Reason.MAX_HOLD_PERIOD_END, TODAY + timedelta(days=30))


def test_exempt_users_keys_are_exempt_with_no_next_step():
    (row,) = rows_of([key("A", 400)], exempt=True).values()

    assert row.standing is EXEMPT and row.next_step is None


def test_every_standing_names_its_control_in_auditor_words():
    assert "CIS AWS Foundations 1.14" in STANDING_TEXT[OVERDUE].control
    assert "IAM.3" in STANDING_TEXT[OVERDUE].control
    assert "IAM.8" in STANDING_TEXT[UNUSED].control
    assert all(text.meaning.endswith(".") for text in STANDING_TEXT.values())


def test_a_key_exactly_the_rotation_period_old_is_overdue_as_the_page_and_readme_say():
    (row,) = rows_of([key("A", PERIODS.rotation)]).values()

    assert row.standing is OVERDUE
    assert "at least as old as the rotation period" in STANDING_TEXT[OVERDUE].meaning
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    assert "| overdue | CIS 1.14 and IAM.3: failed | active and at least `RotationPeriod`" in readme


STEP_WORDS = {ActionKind.ROTATE: "rotation", ActionKind.DEACTIVATE: "deactivation"}


@pytest.mark.parametrize(
    ("row", "keys_in_readme"),
    [
        ("two active, newer one expires while the older lingers", "2 active"),
        ("active due soon, inactive key outlives its rotation date", "1 active + 1 inactive"),
    ],
)
def test_the_readme_names_the_step_an_expiration_conflict_warning_announces(row, keys_in_readme):
    keys, records = next((k, r) for name, k, r, *_ in DECISION_TABLE if name == row)
    (warning,) = decide(keys, records, PERIODS, NOW).warnings
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    (line,) = [
        line
        for line in readme.splitlines()
        if line.startswith(f"| {keys_in_readme} |")
        and f"`{Reason.KEY_PENDING_EXPIRATION_CONFLICT.value}`" in line
    ]

    assert warning.reason is Reason.KEY_PENDING_EXPIRATION_CONFLICT
    assert f"| WARN {STEP_WORDS[warning.step]}" in line


def test_the_calendar_holds_the_next_30_days_of_changes_only():
    user = UserKeys(ACCOUNT, User("alice", "arn"), (key("A", 88),), {})

    assessment = assess([user], PERIODS, NOW)

    assert [(e.day - TODAY, e.action.kind) for e in assessment.calendar] == [
        (timedelta(days=2), ActionKind.ROTATE),
        (timedelta(days=12), ActionKind.DEACTIVATE),
        (timedelta(days=22), ActionKind.DELETE),
    ]


def test_report_files_hold_every_key_and_escape_what_aws_returns():
    account = Account("222222222222", '<b>Pay & "Ops"</b>', "x@example.com")
    user = UserKeys(account, User("bob", "arn"), (key("A", 95), key("B", 5)), {})
    assessment = assess([user], PERIODS, NOW)

    table = list(csv.DictReader(io.StringIO(to_csv(assessment))))
    data = json.loads(to_json(assessment, []))
    page = to_html(assessment, [account], [])

    assert [(r["key_id"], r["standing"]) for r in table] == [("A", "overdue"), ("B", "compliant")]
    assert [k["key_id"] for k in data["keys"]] == ["A", "B"]
    assert data["keys"][0]["next_action"] == "DEACTIVATE"
    assert "&lt;b&gt;Pay &amp; &#34;Ops&#34;&lt;/b&gt;" in page
    assert "<b>Pay" not in page
    assert "http://" not in page and "https://" not in page, "the page loads nothing"


def test_report_reads_the_organization_and_changes_nothing(org):
    account = org.account(
        [
            UserSpec("fresh", (KeySpec(10),)),
            UserSpec("old", (KeySpec(95),)),
            UserSpec("idle", (KeySpec(120, used_days_ago=None),)),
            UserSpec("break-glass", (KeySpec(400),), exempt=True),
        ]
    )
    iam = account.session.client("iam")
    before = {u: iam.list_access_keys(UserName=u)["AccessKeyMetadata"] for u in account.key_ids}

    inventory = read_organization(org.session, org.settings(), [account.account_id])
    rows = assess(inventory.users, org.settings().periods, org.now).rows

    assert {r.user: r.standing for r in rows} == {
        "fresh": COMPLIANT,
        "old": OVERDUE,
        "idle": UNUSED,
        "break-glass": EXEMPT,
    }
    after = {u: iam.list_access_keys(UserName=u)["AccessKeyMetadata"] for u in account.key_ids}
    assert after == before
    assert iam.list_user_tags(UserName="old")["Tags"] == []


def test_report_command_writes_csv_json_and_html(org, tmp_path):
    account = org.account([UserSpec("carol", (KeySpec(95),))])
    credentials = org.session.get_credentials().get_frozen_credentials()
    outputs = {}

    for output_format in ("csv", "json", "html", "table"):
        target = tmp_path / f"report.{output_format}"
        args = ["report", "--account", account.account_id, "--format", output_format]
        if output_format != "table":
            args += ["--output", str(target)]
        result = cli(*args, credentials=credentials)
        assert result.returncode == 0, result.stderr
        outputs[output_format] = target.read_text() if target.exists() else result.stdout

    assert "carol" in outputs["csv"] and "overdue" in outputs["csv"]
    assert json.loads(outputs["json"])["keys"][0]["standing"] == "overdue"
    assert outputs["html"].startswith("<!DOCTYPE html>")
    assert "carol" in outputs["table"] and "overdue" in outputs["table"]
