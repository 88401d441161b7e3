"""The report in S3 (moto's server): account rows written and read back, the page, its link."""

from __future__ import annotations

import urllib.request
import uuid

import boto3

from keyrotation.compliance.render import to_html
from keyrotation.compliance.s3 import ReportStore
from keyrotation.compliance.standing import Assessment, assess
from keyrotation.inventory import UserKeys
from keyrotation.model import Account, User
from tests.test_policy import NOW, PERIODS, key

PAYMENTS = Account("111111111111", '<b>Payments</b> & "Ops"', "p@example.com")
LEDGER = Account("222222222222", "Ledger", "l@example.com")


def one_account(account: Account, *keys) -> Assessment:
    user = UserKeys(account, User(f"app-{account.account_id[:3]}", "arn"), tuple(keys), {})
    return assess([user], PERIODS, NOW)


def test_account_rows_come_back_as_one_organization_report_with_a_link(emulator):
    bucket = f"reports-{uuid.uuid4().hex[:10]}"
    session = boto3.Session(region_name="us-east-1")
    session.client("s3").create_bucket(Bucket=bucket)
    store = ReportStore(session, bucket, "asa/asa-iam-rotation")
    written = {
        PAYMENTS.account_id: one_account(PAYMENTS, key("A", 95), key("B", 5)),
        LEDGER.account_id: one_account(LEDGER, key("C", 88)),
    }

    keys = [
        store.put_account(PAYMENTS, written[PAYMENTS.account_id]),
        store.put_account(LEDGER, written[LEDGER.account_id], ["user bob: not read"]),
    ]
    assessment, accounts, errors = store.read_day(NOW.date())
    page_key = store.put_page(NOW.date(), to_html(assessment, accounts, errors))
    link = store.link(page_key, seconds=300)

    assert keys == [
        "asa/asa-iam-rotation/Reports/dt=2026-06-15/111111111111.json",
        "asa/asa-iam-rotation/Reports/dt=2026-06-15/222222222222.json",
    ]
    assert [a.name for a in accounts] == [PAYMENTS.name, LEDGER.name]
    assert errors == ["account 222222222222: user bob: not read"]
    expected = [r for a in written.values() for r in a.rows]
    assert [r.to_dict() for r in assessment.rows] == [r.to_dict() for r in expected]
    assert [(e.day, e.user, e.action.kind) for e in assessment.calendar] == [
        (e.day, e.user, e.action.kind) for a in written.values() for e in a.calendar
    ]
    assert link.startswith("http://127.0.0.1:") and "Expires=" in link
    with urllib.request.urlopen(link, timeout=10) as response:
        page = response.read().decode()
    assert "&lt;b&gt;Payments&lt;/b&gt;" in page and "app-222" in page
    assert "account 222222222222: user bob: not read" in page
