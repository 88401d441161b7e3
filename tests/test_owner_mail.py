"""Owner mails: a user tag names the team that owns the user; each owner gets one mail about
its own users, the account email still gets everything, and a bad tag falls back to it."""

from __future__ import annotations

from collections import Counter

import pytest

from keyrotation.aws import records
from keyrotation.notify.owners import journal_key, owner_of
from keyrotation.notify.unsent import FolderStore
from keyrotation.reasons import Reason
from tests.faults import Crash
from tests.orgs import KeySpec, OrgBuilder, UserSpec

TAG = "owner"
TEAM_A = "team-a@example.com"
TEAM_B = "team-b@example.com"
GONE = "gone-team@example.com"


def owned_account(org: OrgBuilder, tags: dict[str, str], users: list[UserSpec]):
    account = org.account(users)
    iam = account.session.client("iam")
    for user, value in tags.items():
        iam.tag_user(UserName=user, Tags=[{"Key": TAG, "Value": value}])
    return account


def mails_to(org: OrgBuilder, address: str) -> list[str]:
    return [html for to, html in org.sent if to == address]


@pytest.mark.parametrize("scan", ["report", "per-user"])
def test_each_owner_gets_one_mail_about_its_own_users_and_bad_tags_fall_back(org, scan):
    account = owned_account(
        org,
        {"ann": TEAM_A, "ben": "Team-A@Example.com", "dan": "not an address", "eve": TEAM_B},
        [
            UserSpec("ann", (KeySpec(95),)),
            UserSpec("ben", (KeySpec(85),)),
            UserSpec("cat", (KeySpec(95),)),
            UserSpec("dan", (KeySpec(95),)),
            UserSpec("eve", (KeySpec(5),)),
        ],
    )

    report = org.run([account], DryRunFlag=False, ResourceOwnerTag=TAG, ScanMethod=scan)

    (result,) = report.accounts
    assert report.clean, result.errors
    (team_a,) = mails_to(org, TEAM_A)
    assert "of user ann" in team_a and "of user ben" in team_a
    for other in ("cat", "dan", "eve"):
        assert f"of user {other}" not in team_a and f">{other}<" not in team_a
        assert account.key_ids[other][0] not in team_a
    assert mails_to(org, TEAM_B) == [], "eve has nothing due, so team B gets no mail"
    (whole,) = mails_to(org, account.email)
    for user in ("ann", "ben", "cat", "dan"):
        assert f"of user {user}" in whole
    assert len(org.sent) == 2
    assert result.owner_mails == {TEAM_A: "written"}
    assert result.owner_fallbacks == [
        "user cat: no owner tag 'owner'; told the account email only",
        "user dan: owner tag 'owner' holds 'not an address', not an email address; "
        "told the account email only",
    ]
    assert "user dan: owner tag" in whole and "user cat: no owner tag" in whole
    assert result.to_dict()["owner_fallbacks"] == result.owner_fallbacks


def test_a_tag_value_with_markup_is_escaped_in_the_mail(org):
    # IAM refuses < and > in tag values; moto stores them, which lets this test try markup.
    value = '<img src=x onerror="alert(1)">@example.com'
    account = owned_account(org, {"ann": value}, [UserSpec("ann", (KeySpec(95),))])

    report = org.run([account], DryRunFlag=True, ResourceOwnerTag=TAG)

    (result,) = report.accounts
    assert result.owner_mails == {} and len(result.owner_fallbacks) == 1
    (whole,) = mails_to(org, account.email)
    assert "&lt;img src=x onerror=" in whole
    assert "<img" not in whole


def test_an_owner_whose_address_is_the_accounts_gets_one_mail(org):
    account = org.account([UserSpec("ann", (KeySpec(95),))])
    account.session.client("iam").tag_user(
        UserName="ann", Tags=[{"Key": TAG, "Value": account.email.upper()}]
    )

    report = org.run([account], DryRunFlag=False, ResourceOwnerTag=TAG)

    (result,) = report.accounts
    assert [to for to, _ in org.sent] == [account.email]
    assert (result.owner_mails, result.owner_fallbacks) == ({}, [])


def test_without_the_setting_nobody_but_the_account_is_mailed(org):
    account = owned_account(org, {"ann": TEAM_A}, [UserSpec("ann", (KeySpec(95),))])

    report = org.run([account], DryRunFlag=False)

    assert [to for to, _ in org.sent] == [account.email]
    assert report.accounts[0].owner_fallbacks == []


def test_owner_tags_cost_no_iam_call_of_their_own(org, faults):
    users = [UserSpec(f"user-{n}", (KeySpec(95 if n % 2 else 20),)) for n in range(6)]
    account = owned_account(org, {f"user-{n}": TEAM_A for n in range(6)}, users)

    def iam_calls(**settings) -> Counter:
        faults.calls.clear()
        org.run([account], DryRunFlag=True, **settings)
        # The credential report's calls depend on whether IAM still has a fresh report.
        return Counter(
            {
                k: v
                for k, v in faults.calls.items()
                if k.startswith("iam.") and "CredentialReport" not in k
            }
        )

    without = iam_calls()
    with_owners = iam_calls(ResourceOwnerTag=TAG)

    assert with_owners == without
    assert mails_to(org, TEAM_A), "the owner was mailed"


def test_a_failed_owner_mail_is_told_next_time_and_its_warnings_again(org, tmp_path):
    account = owned_account(
        org,
        {"ann": TEAM_A, "ben": TEAM_A},
        [
            UserSpec("ann", (KeySpec(95),)),
            UserSpec("ben", (KeySpec(85),)),
            UserSpec("cat", (KeySpec(85),)),
        ],
    )
    state = FolderStore(org.outbox.parent / "state")
    org.refused = {TEAM_A}

    first = org.run([account], DryRunFlag=False, ResourceOwnerTag=TAG)

    (result,) = first.accounts
    assert result.notification == "written" and result.owner_mails[TEAM_A].startswith("failed")
    assert any(f"owner mail to {TEAM_A} failed" in e for e in result.errors)
    assert state.load(account.account_id) == [], "the account email went out"
    assert state.load(journal_key(account.account_id)), "team A's lines are kept"
    assert warned(account, "cat") and not warned(account, "ben")

    org.refused = set()
    second = org.run([account], DryRunFlag=False, ResourceOwnerTag=TAG)

    assert second.clean, second.accounts[0].errors
    (team_a,) = mails_to(org, TEAM_A)
    assert "Not sent before" in team_a and "Rotated key" in team_a and "of user ann" in team_a
    assert "of user ben will be rotated on" in team_a, "the untold warning is told again"
    assert "of user cat" not in team_a and account.key_ids["cat"][0] not in team_a
    assert state.load(journal_key(account.account_id)) == []
    assert warned(account, "ben")


def test_an_owner_is_told_what_a_stopped_run_started(org, faults):
    account = owned_account(org, {"ann": TEAM_A}, [UserSpec("ann", (KeySpec(95),))])
    faults.crash_after("iam", "CreateAccessKey")

    with pytest.raises(Crash):
        org.run([account], DryRunFlag=False, ResourceOwnerTag=TAG)
    faults.rules.clear()
    org.run([account], DryRunFlag=False, ResourceOwnerTag=TAG)

    (team_a,) = mails_to(org, TEAM_A)
    assert "Not sent before" in team_a and "started to rotate key" in team_a


@pytest.mark.parametrize(
    "value",
    [
        ".x@example.com",
        "x.@example.com",
        "a..b@example.com",
        "a@-b.com",
        "a@b-.com",
        "a@b..com",
        "a@.b.com",
        "a@b.com.",
        "a@b.c0m",
        "a@b",
    ],
)
def test_an_address_mail_servers_refuse_is_not_taken_as_an_owner(value):
    ownership = owner_of("ann", {TAG: value}, TAG)

    assert ownership.owner is None and "not an email address" in ownership.fallback


@pytest.mark.parametrize(
    "value", ["first.last+keys@mail.example.co.uk", "a_b%c-d@x-y.example.com", "Team-A@Example.COM"]
)
def test_a_plain_dot_atom_address_is_taken_as_an_owner(value):
    assert owner_of("ann", {TAG: value}, TAG).owner == value.lower()


def test_an_owner_refused_three_days_running_falls_back_to_the_account_email(org):
    # given an owner address that looks right but that the mail service refuses every day
    account = owned_account(org, {"ann": GONE}, [UserSpec("ann", (KeySpec(84),))])
    state = FolderStore(org.outbox.parent / "state")
    org.refused.add(GONE)

    # when six daily runs warn about ann's key
    reports, kept = [], []
    for day in range(6):
        reports.append(org.run([account], days=day, DryRunFlag=False, ResourceOwnerTag=TAG))
        kept.append(len(state.load(journal_key(account.account_id))))

    # then the owner's lines stop growing after three refused days and none is lost
    assert kept == [1, 2, 3, 0, 0, 0]
    for report in reports[:3]:
        assert report.accounts[0].owner_mails[GONE].startswith("failed")
    fallen = reports[3].accounts[0]
    reason = f"user ann: owner mail to {GONE} refused 3 days running; told the account email only"
    assert fallen.owner_mails == {} and fallen.owner_fallbacks == [reason]
    mails = mails_to(org, account.email)
    assert len(mails) == 4, "the warning is told again only while the owner is still tried"
    assert reason in mails[3]
    assert mails[3].count(f"Not sent before: owner mail to {GONE} refused") == 3
    assert warned(account, "ann"), "the account email told the warning, so it is recorded"
    assert state.load(account.account_id) == []


def test_lines_kept_for_an_address_no_longer_taken_go_to_the_account_email(org):
    # given lines kept for an owner address an earlier version took, and no longer takes
    account = org.account([UserSpec("ann", (KeySpec(20),))])
    state = FolderStore(org.outbox.parent / "state")
    line = f"{org.now.date()}: Rotated key AKIAEXAMPLE of user ann: rotated [EXPIRED_ACTIVE_KEY]"
    state.save(journal_key(account.account_id), [f"a..b@example.com {line}"])

    # when the next run has nothing new to tell
    report = org.run([account], DryRunFlag=False, ResourceOwnerTag=TAG)

    # then the account email carries the line, and it is no longer kept
    assert report.clean, report.accounts[0].errors
    (whole,) = mails_to(org, account.email)
    assert (
        f"owner address &#39;a..b@example.com&#39; is not taken any more; its line: {line}" in whole
    )
    assert state.load(journal_key(account.account_id)) == []


def warned(account, user: str) -> bool:
    tags = account.session.client("iam").list_user_tags(UserName=user)["Tags"]
    lifecycle = records.lifecycle_from_tags({t["Key"]: t["Value"] for t in tags})
    return any(Reason.KEY_PENDING_ROTATION in r.warned for r in lifecycle.records.values())
