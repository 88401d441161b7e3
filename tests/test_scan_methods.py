"""The credential report scan against the per-user scan on moto's server: same plan, fewer
calls, an account left unscanned rather than called compliant, and the fallback."""

from __future__ import annotations

import logging
import threading
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace

import pytest

from keyrotation.aws import credential_report
from keyrotation.aws.credential_report import ReportedKey, ReportedUser
from keyrotation.compliance.standing import Standing, assess
from keyrotation.model import Account, KeyRecord
from keyrotation.pipeline import REPORTED_KEY_ID, RunContext, run_account
from keyrotation.reasons import Reason
from keyrotation.report import AccountReport
from keyrotation.scan import needs_live_read
from keyrotation.settings import Settings
from tests.orgs import KeySpec, UserSpec

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
PERIODS = Settings().periods


def plan(report):
    return [
        (a.account.account_id, o.user, o.action.kind, o.action.key_id, o.action.reason, o.action.on)
        for a in report.accounts
        for o in a.outcomes
    ]


def reported(*keys: tuple[int, bool]) -> ReportedUser:
    """A report row with keys of (age in days, active)."""
    return ReportedUser(
        "ann",
        "arn:aws:iam::111122223333:user/ann",
        tuple(
            ReportedKey(slot, active, NOW - timedelta(days=age), NOW)
            for slot, (age, active) in enumerate(keys, 1)
        ),
    )


@pytest.mark.parametrize(
    ("keys", "forced", "live"),
    [
        ((), False, False),
        (((10, True),), False, False),
        (((82, True),), False, False),
        (((83, True),), False, True),
        (((95, True),), False, True),
        (((10, False),), False, True),
        (((10, True), (5, True)), False, True),
        (((10, True),), True, True),
    ],
    ids=[
        "no-key",
        "young",
        "day-before-warning",
        "warning",
        "expired",
        "inactive",
        "two-keys",
        "forced",
    ],
)
def test_only_users_the_policy_could_act_on_or_warn_are_read_live(keys, forced, live):
    assert needs_live_read(reported(*keys), PERIODS, NOW, forced) is live


def test_the_report_path_plans_exactly_what_the_per_user_path_plans(org, iam_hooks):
    today = org.now.date()
    warned = KeyRecord(warned=frozenset({Reason.KEY_PENDING_ROTATION}))
    users = [
        UserSpec("young", (KeySpec(10),)),
        UserSpec("warned-soon", (KeySpec(86),)),
        UserSpec("already-warned", (KeySpec(86, record=warned),)),
        UserSpec("expired", (KeySpec(95),)),
        UserSpec("expired-unused", (KeySpec(95, used_days_ago=None),)),
        UserSpec("unused-soon", (KeySpec(85, used_days_ago=None),)),
        UserSpec("two-active", (KeySpec(104), KeySpec(14))),
        # Key 1 is the young key, key 2 the old one in moto's report: slots are creation order.
        UserSpec("inactive-first", (KeySpec(40, active=False), KeySpec(30))),
        UserSpec(
            "inactive-recorded",
            (KeySpec(60, active=False, record=KeyRecord(deactivated=today - timedelta(8))),),
        ),
        UserSpec("replaced-recorded", (KeySpec(92, record=KeyRecord(replaced=date(2020, 1, 1))),)),
        UserSpec("inactive-old-used", (KeySpec(20, active=False), KeySpec(95))),
        UserSpec("forced", (KeySpec(20),)),
        UserSpec("exempt", (KeySpec(300),), exempt=True),
        UserSpec("nokeys"),
    ]
    account = org.account(users)
    calls: Counter = Counter()
    iam_hooks.append(
        (
            "before-parameter-build.iam.ListAccessKeys",
            lambda params, **_: calls.update([params["UserName"]]),
        )
    )

    by_report = org.run([account], forced=("forced",), ScanMethod="report")
    read_live = set(calls)
    by_user = org.run([account], forced=("forced",), ScanMethod="per-user")

    assert plan(by_report) == plan(by_user)
    assert len(plan(by_report)) >= 8
    (report_account,), (user_account,) = by_report.accounts, by_user.accounts
    assert (report_account.scan, user_account.scan) == ("credential report", "per-user")
    assert report_account.users_scanned == user_account.users_scanned == len(users) - 1
    assert report_account.users_exempt == user_account.users_exempt == 1
    assert "young" not in read_live and "nokeys" not in read_live
    assert {"forced", "expired", "inactive-first", "two-active"} <= read_live


def _report_never_ready(iam_hooks, where: str) -> None:
    if where == "generate":

        def still_running(parsed, **_):
            parsed["State"] = "INPROGRESS"

        iam_hooks.append(("after-call.iam.GenerateCredentialReport", still_running))
    else:
        iam_hooks.append(("before-call.iam.GetCredentialReport", _error("ReportInProgress", 410)))


def _error(code: str, status: int):
    """A before-call hook that answers for AWS with an error, without sending the request."""

    def answer(**_):
        http = SimpleNamespace(status_code=status, headers={})
        return http, {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {}}

    return answer


@pytest.mark.parametrize("where", ["generate", "get"])
def test_an_account_whose_report_never_becomes_ready_is_not_scanned(
    org, iam_hooks, monkeypatch, where
):
    monkeypatch.setattr(credential_report, "_sleep", lambda seconds: None)
    account = org.account([UserSpec("old", (KeySpec(300),))])
    _report_never_ready(iam_hooks, where)

    report = org.run([account])

    (result,) = report.accounts
    assert not report.clean and result.failed
    assert result.scan == "not scanned"
    assert result.users_scanned == 0 and result.outcomes == []
    assert any(e.startswith("not scanned: the IAM credential report") for e in result.errors)


def test_a_report_that_cannot_be_had_falls_back_to_per_user_calls(org, iam_hooks, caplog):
    account = org.account([UserSpec("old", (KeySpec(95),)), UserSpec("young", (KeySpec(5),))])
    iam_hooks.append(("before-call.iam.GenerateCredentialReport", _error("AccessDenied", 403)))

    report = org.run([account])

    (result,) = report.accounts
    assert report.clean
    assert result.scan == "per-user (credential report unavailable)"
    assert [(o.user, o.action.reason) for o in result.outcomes] == [
        ("old", Reason.EXPIRED_ACTIVE_KEY)
    ]
    (fallback,) = [
        r for r in caplog.records if r.getMessage() == "scan falls back to per-user calls"
    ]
    assert fallback.levelno == logging.WARNING
    assert fallback.kr_fields["account"] == account.account_id
    assert "AccessDenied" in fallback.kr_fields["reason"]


def test_accounts_run_in_parallel_and_are_reported_in_id_order(org, iam_hooks):
    accounts = [org.account([UserSpec(f"user-{n}", (KeySpec(95),))]) for n in range(3)]
    # Each account waits here for the others: run one after another, they would time out.
    together = threading.Barrier(3, timeout=20)
    threads = set()

    def meet(**_):
        threads.add(threading.current_thread().name)
        together.wait()

    iam_hooks.append(("before-call.iam.GetGroup", meet))

    report = org.run(accounts, MaxConcurrentAccounts=3)

    assert report.clean
    assert len(threads) == 3
    ids = [a.account.account_id for a in report.accounts]
    assert ids == sorted(a.account_id for a in accounts)
    assert [o.user for a in report.accounts for o in a.outcomes] == [
        f"user-{n}" for n in sorted(range(3), key=lambda n: accounts[n].account_id)
    ]


def test_an_audit_takes_last_use_from_the_report_and_enforce_reads_it_live(org, faults):
    account = org.account([UserSpec("due", (KeySpec(95),)), UserSpec("young", (KeySpec(10),))])

    audit = org.run([account])
    audit_calls = dict(faults.calls)
    faults.calls.clear()
    enforce = org.run([account], DryRunFlag=False)

    assert [o.action.kind.value for o in audit.accounts[0].outcomes] == ["ROTATE"]
    assert "iam.GetAccessKeyLastUsed" not in audit_calls
    assert audit_calls["iam.ListAccessKeys"] == 1, "only the due user is read live"
    assert faults.calls["iam.GetAccessKeyLastUsed"] >= 1, "before a change, last use is live"
    assert [o.action.kind.value for o in enforce.accounts[0].outcomes] == ["ROTATE"]


@pytest.mark.parametrize("method", ["report", "per-user"])
def test_the_run_keeps_every_users_keys_for_the_account_report(org, method):
    """An audit run; tests/test_deploy.py checks the keys kept after an enforce run's changes."""
    users = [
        UserSpec("young", (KeySpec(10),)),
        UserSpec("expired", (KeySpec(95),)),
        UserSpec("exempt", (KeySpec(300),), exempt=True),
        UserSpec("nokeys"),
    ]
    account = org.account(users)
    kept: list[AccountReport] = []
    context = RunContext(org.settings(ScanMethod=method), datetime.now(UTC), on_scanned=kept.append)

    run_account(
        org.session, Account(account.account_id, account.name, account.email), context, None
    )

    (report,) = kept
    by_user = {u.user.name: u for u in report.keys}
    assert set(by_user) == {"young", "expired", "exempt", "nokeys"}
    assert by_user["nokeys"].keys == ()
    exempt = by_user["exempt"]
    assert exempt.exempt and [k.key_id for k in exempt.keys] == account.key_ids["exempt"]
    assert [k.key_id for k in by_user["expired"].keys] == account.key_ids["expired"]
    (young,) = by_user["young"].keys
    # The credential report has no key ids: a key it alone showed is listed without one.
    expected = REPORTED_KEY_ID if method == "report" else account.key_ids["young"][0]
    assert young.key_id == expected and young.active
    rows = assess(report.keys, PERIODS, datetime.now(UTC)).rows
    assert sorted((r.user, r.standing) for r in rows) == [
        ("exempt", Standing.EXEMPT),
        ("expired", Standing.OVERDUE),
        ("young", Standing.COMPLIANT),
    ]


def test_a_broken_report_leaves_the_run_done_and_its_email_sent(org):
    account = org.account([UserSpec("expired", (KeySpec(95),))])
    sent: list = []

    def broken(report: AccountReport) -> None:
        raise RuntimeError("renderer broke")

    context = RunContext(org.settings(), datetime.now(UTC), on_scanned=broken)
    report = run_account(
        org.session,
        Account(account.account_id, account.name, account.email),
        context,
        lambda notification: sent.append(notification) or "sent",
    )

    assert not report.failed and report.notification == "sent"
    assert [o.user for o in report.outcomes] == ["expired"] and len(sent) == 1
    assert report.errors == [
        "compliance report not written: internal error RuntimeError: renderer broke"
    ]
