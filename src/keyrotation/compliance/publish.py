"""The report in the deployed stack: each account's rows and page after its run, and the
organization's page for the last finished day."""

from __future__ import annotations

import logging
from datetime import datetime

from keyrotation import logs
from keyrotation.compliance.render import to_html
from keyrotation.compliance.s3 import ReportStore, ReportStoreError
from keyrotation.compliance.standing import assess
from keyrotation.model import Account, Periods
from keyrotation.report import AccountReport

log = logging.getLogger(__name__)


class AccountPage:
    """Writes an account's rows and page from the keys its run read; remembers the page.

    A write that fails is an error on the account's report and in the log; it never undoes
    or hides what the run did, and the email still goes (without a link)."""

    def __init__(self, store: ReportStore, periods: Periods, now: datetime):
        self.store = store
        self.periods = periods
        self.now = now
        self.page = ""

    def __call__(self, report: AccountReport) -> None:
        account = report.account
        assessment = assess(report.keys, self.periods, self.now)
        try:
            rows = self.store.put_account(account, assessment, report.not_scanned)
            html = to_html(assessment, [account], report.not_scanned)
            self.page = self.store.put_account_page(account, self.now.date(), html)
        except ReportStoreError as exc:
            report.errors.append(f"compliance report not written: {exc}")
            logs.event(
                log, "report not written", logging.ERROR, account=account.account_id, error=str(exc)
            )
            return
        logs.event(
            log,
            "report written",
            account=account.account_id,
            rows=rows,
            page=self.page,
            keys=len(assessment.rows),
        )


def write_organization_page(store: ReportStore, accounts: list[Account], now: datetime) -> str:
    """The page of the latest day before today that has rows; "" when there is none yet.

    Today's rows are still being written by the jobs the inventory starts, so the page is made
    from a finished day. An account listed today without rows that day is shown as missing."""
    day = store.latest_day(now.date())
    if day is None:
        logs.event(log, "no report rows yet", folder=store.root)
        return ""
    assessment, present, not_read = store.read_day(day)
    seen = {a.account_id for a in present}
    missing = [a for a in accounts if a.account_id not in seen]
    errors = not_read + [
        f"account {a.account_id} ({a.name}): no report rows for {day}; its rotation job did "
        "not finish"
        for a in missing
    ]
    key = store.put_page(day, to_html(assessment, present, errors, missing))
    logs.event(
        log, "organization report written", page=key, accounts=len(present), missing=len(missing)
    )
    return key
