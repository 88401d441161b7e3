"""The daily pipeline against moto's server over HTTP: what it changes and what it leaves."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import time_machine
from moto.iam.models import iam_backends

from keyrotation.aws.iam import SECRET_POLICY_NAME
from keyrotation.aws.secrets import secret_name
from keyrotation.emulator.sample import use_key
from keyrotation.errors import InputError
from keyrotation.model import ActionKind
from keyrotation.reasons import Reason
from tests.orgs import KeySpec, UserSpec, keys_of, secret_of


def outcomes(report, user):
    return [
        (o.action.kind, o.action.reason, o.status)
        for account in report.accounts
        for o in account.outcomes
        if o.user == user
    ]


def test_expired_key_is_rotated_into_a_secret_only_its_user_can_read(org):
    account = org.account([UserSpec("alice", (KeySpec(95),), path="/team/")])
    old = account.key_ids["alice"][0]

    report = org.run([account], DryRunFlag=False)

    assert report.clean
    assert outcomes(report, "alice") == [(ActionKind.ROTATE, Reason.EXPIRED_ACTIVE_KEY, "done")]
    keys = keys_of(account, "alice")
    assert keys[old] == "Active", "the old key is untouched until its grace period ends"
    secret = secret_of(account, "alice")
    assert set(secret) == {"UserName", "AccessKeyId", "SecretAccessKey", "Status", "CreateDate"}
    assert secret["UserName"] == "alice" and secret["AccessKeyId"] in keys
    assert secret["AccessKeyId"] != old
    assert use_key(secret["AccessKeyId"], secret["SecretAccessKey"]).endswith(":user/team/alice")

    secrets = account.session.client("secretsmanager")
    policy = json.loads(
        secrets.get_resource_policy(SecretId=secret_name("alice"))["ResourcePolicy"]
    )
    user = account.session.client("iam").get_user(UserName="alice")["User"]
    allow, deny = policy["Statement"]
    assert allow["Effect"] == "Allow" and allow["Principal"] == {"AWS": user["Arn"]}
    assert deny["Effect"] == "Deny" and deny["Principal"] == "*"
    # The user's unique id, not its ARN: a change of path must not lock the user out.
    assert deny["Condition"] == {"StringNotEquals": {"aws:userid": user["UserId"]}}

    inline = account.session.client("iam").get_user_policy(
        UserName="alice", PolicyName=SECRET_POLICY_NAME
    )["PolicyDocument"]
    secret_arn = secrets.describe_secret(SecretId=secret_name("alice"))["ARN"]
    assert [s["Resource"] for s in inline["Statement"]] == [secret_arn]


def test_audit_mode_reports_and_mails_but_changes_nothing(org):
    account = org.account([UserSpec("bob", (KeySpec(120), KeySpec(95)))])
    before = keys_of(account, "bob")

    report = org.run([account])

    assert report.mode.value == "audit"
    assert [o.status for o in report.accounts[0].outcomes] == ["planned"]
    assert keys_of(account, "bob") == before
    iam = account.session.client("iam")
    assert iam.list_user_tags(UserName="bob")["Tags"] == []
    assert account.session.client("secretsmanager").list_secrets()["SecretList"] == []
    (email,) = org.emails()
    assert "nothing was changed" in email and "Would deactivate key" in email


def test_users_past_the_first_page_are_all_scanned(org):
    users = [UserSpec(f"user-{n:03d}", (KeySpec(10),)) for n in range(129)]
    users.append(UserSpec("user-last", (KeySpec(95),)))
    account = org.account(users)

    # moto returns every user in one page unless asked for smaller ones.
    report = org.run([account], DryRunFlag=False, ListPageSize=20, ScanMethod="per-user")

    assert report.accounts[0].users_scanned == 130
    assert outcomes(report, "user-last") == [(ActionKind.ROTATE, Reason.EXPIRED_ACTIVE_KEY, "done")]


def test_exempt_users_are_skipped_and_a_missing_group_exempts_nobody(org):
    exempt = org.account(
        [UserSpec("break-glass", (KeySpec(300),), exempt=True), UserSpec("app", (KeySpec(95),))]
    )
    no_group = org.account([UserSpec("app", (KeySpec(95),))])
    before = keys_of(exempt, "break-glass")

    report = org.run([exempt, no_group], DryRunFlag=False)

    by_id = {a.account.account_id: a for a in report.accounts}
    assert by_id[exempt.account_id].users_exempt == 1
    assert by_id[exempt.account_id].users_scanned == 1
    assert keys_of(exempt, "break-glass") == before
    assert by_id[no_group.account_id].users_exempt == 0
    assert by_id[no_group.account_id].clean
    assert len(keys_of(no_group, "app")) == 2


def test_forced_rotation_replaces_a_young_key_and_only_for_the_named_user(org):
    account = org.account(
        [
            UserSpec("carol", (KeySpec(20), KeySpec(5, used_days_ago=None))),
            UserSpec("dave", (KeySpec(20),)),
        ]
    )
    used, unused = account.key_ids["carol"]

    report = org.run([account], forced=("carol",), DryRunFlag=False)

    assert outcomes(report, "carol") == [
        (ActionKind.DELETE, Reason.FORCED_ROTATION_CONFLICT_LRU, "done"),
        (ActionKind.ROTATE, Reason.FORCED_ROTATION, "done"),
    ]
    keys = keys_of(account, "carol")
    assert unused not in keys and keys[used] == "Active"
    assert secret_of(account, "carol")["AccessKeyId"] in keys
    assert outcomes(report, "dave") == []


def test_a_forced_rotation_of_a_key_made_today_is_not_done_and_says_why(org):
    account = org.account([UserSpec("frank", (KeySpec(0),))])
    before = keys_of(account, "frank")

    report = org.run([account], forced=("frank",), DryRunFlag=False)

    assert outcomes(report, "frank") == [] and keys_of(account, "frank") == before
    assert [n for n in report.accounts[0].skipped if n.startswith("user frank: forced rotation")]


def test_forced_rotation_of_an_unknown_user_changes_nothing(org):
    account = org.account([UserSpec("erin", (KeySpec(95),))])

    with pytest.raises(InputError, match="nobody"):
        org.run([account], forced=("nobody",), DryRunFlag=False)
    assert len(keys_of(account, "erin")) == 1

    audit = org.run([account], forced=("nobody",))
    assert any("nobody" in error for error in audit.errors)


def test_a_second_run_on_the_same_day_changes_nothing_and_mails_nothing(org):
    account = org.account(
        [
            UserSpec("frank", (KeySpec(95),)),
            UserSpec("gina", (KeySpec(86),)),
            UserSpec("hank", (KeySpec(104), KeySpec(14))),
        ]
    )
    org.run([account], DryRunFlag=False, InactiveBuffer=5)
    state = {user: keys_of(account, user) for user in ("frank", "gina", "hank")}
    mails = len(org.emails())

    again = org.run([account], DryRunFlag=False, InactiveBuffer=5)

    assert again.accounts[0].outcomes == []
    assert {user: keys_of(account, user) for user in state} == state
    assert len(org.emails()) == mails == 1


def test_a_key_walks_through_rotation_deactivation_and_deletion(org):
    account = org.account([UserSpec("ivan", (KeySpec(90),))])
    old = account.key_ids["ivan"][0]
    steps = {}

    for day in range(0, 21):
        report = org.run([account], days=day, DryRunFlag=False)
        for o in report.accounts[0].outcomes:
            steps.setdefault(day, []).append(
                (o.action.kind, o.action.key_id == old, o.action.reason)
            )

    assert steps == {
        0: [(ActionKind.ROTATE, True, Reason.EXPIRED_ACTIVE_KEY)],
        3: [(ActionKind.WARN, True, Reason.KEY_PENDING_DEACTIVATION)],
        10: [(ActionKind.DEACTIVATE, True, Reason.INSTALL_GRACE_PERIOD_END)],
        13: [(ActionKind.WARN, True, Reason.KEY_PENDING_DELETION)],
        20: [(ActionKind.DELETE, True, Reason.RECOVER_GRACE_PERIOD_END)],
    }
    assert list(keys_of(account, "ivan")) == [secret_of(account, "ivan")["AccessKeyId"]]


def test_a_key_its_application_still_uses_is_held_warned_daily_and_let_go_after_the_switch(org):
    account = org.account([UserSpec("jill", (KeySpec(90),))])
    backend = iam_backends[account.account_id]["global"]
    old = account.key_ids["jill"][0]
    iam = account.session.client("iam")

    def application_signs(day, key_id, secret):
        with time_machine.travel(org.now + timedelta(days=day), tick=False):
            use_key(key_id, secret)

    # Given a key rotated on day 0 whose application keeps using it, not the new key.
    org.run([account], DryRunFlag=False)
    new = secret_of(account, "jill")
    steps = {}
    for day in range(1, 13):
        application_signs(day, old, backend.access_keys[old].secret_access_key)
        report = org.run([account], days=day, DryRunFlag=False)
        steps[day] = [
            (o.action.kind, o.action.reason, o.action.on) for o in report.accounts[0].outcomes
        ]
        again = org.run([account], days=day, DryRunFlag=False)
        assert again.accounts[0].outcomes == [], f"day {day}: a second run is quiet"

    # Then from its deactivation date on it is held, with a warning each day, not deactivated.
    limit = (org.now + timedelta(days=10 + 30)).date()
    held = [(ActionKind.WARN, Reason.KEY_HELD_IN_USE, limit)]
    assert [steps[day] for day in (10, 11, 12)] == [held, held, held]
    assert keys_of(account, "jill")[old] == "Active"
    tags = {t["Key"]: t["Value"] for t in iam.list_user_tags(UserName="jill")["Tags"]}
    assert f"held={(org.now + timedelta(days=12)).date()}" in tags[f"keyrotation:{old}"]
    emails = org.emails()
    assert sum("KEY_HELD_IN_USE" in email for email in emails) == 3
    assert f"will be deactivated on {limit}" in emails[-1]
    assert "Switch every application to the new key" in emails[-1], "the advice is mailed"

    # When the application switches to the new key, the next run deactivates the old one.
    application_signs(13, new["AccessKeyId"], new["SecretAccessKey"])
    report = org.run([account], days=13, DryRunFlag=False)

    assert outcomes(report, "jill") == [(ActionKind.DEACTIVATE, Reason.REPLACEMENT_IN_USE, "done")]
    assert keys_of(account, "jill")[old] == "Inactive"


def test_with_hold_off_a_key_still_in_use_is_deactivated_on_schedule(org):
    account = org.account([UserSpec("kate", (KeySpec(90),))])
    backend = iam_backends[account.account_id]["global"]
    old = account.key_ids["kate"][0]
    org.run([account], DryRunFlag=False, HoldWhileInUse=False)

    with time_machine.travel(org.now + timedelta(days=10), tick=False):
        use_key(old, backend.access_keys[old].secret_access_key)
    report = org.run([account], days=10, DryRunFlag=False, HoldWhileInUse=False)

    assert outcomes(report, "kate") == [
        (ActionKind.DEACTIVATE, Reason.INSTALL_GRACE_PERIOD_END, "done")
    ]


def test_an_inactive_key_found_by_hand_starts_its_recovery_on_first_sight(org):
    account = org.account([UserSpec("judy", (KeySpec(40, active=False), KeySpec(30)))])
    old = account.key_ids["judy"][0]

    first = org.run([account], DryRunFlag=False)
    later = org.run([account], days=10, DryRunFlag=False)

    assert first.accounts[0].outcomes == []
    assert [(o.action.kind, o.action.key_id) for o in later.accounts[0].outcomes] == [
        (ActionKind.DELETE, old)
    ]


def test_users_without_keys_and_accounts_without_users_are_ordinary(org):
    empty = org.account([])
    keyless = org.account([UserSpec("nokeys")])

    report = org.run([empty, keyless], DryRunFlag=False)

    assert report.clean
    assert sorted(a.users_scanned for a in report.accounts) == [0, 1]
    assert org.emails() == []


@pytest.mark.parametrize(
    ("method", "listing"), [("per-user", "ListUsers"), ("report", "GetCredentialReport")]
)
def test_a_user_deleted_between_listing_and_action_is_skipped(org, iam_hooks, method, listing):
    account = org.account([UserSpec("kate", (KeySpec(95),)), UserSpec("leo", (KeySpec(95),))])

    def delete_kate(**kwargs):
        iam = account.session.client("iam")
        for key_id in account.key_ids.pop("kate", []):
            iam.delete_access_key(UserName="kate", AccessKeyId=key_id)
        if account.key_ids.get("kate-deleted") is None:
            account.key_ids["kate-deleted"] = []
            iam.delete_user(UserName="kate")

    iam_hooks.append((f"after-call.iam.{listing}", delete_kate))
    report = org.run([account], DryRunFlag=False, ScanMethod=method)

    (result,) = report.accounts
    assert any("kate" in note for note in result.skipped)
    assert outcomes(report, "leo") == [(ActionKind.ROTATE, Reason.EXPIRED_ACTIVE_KEY, "done")]


def test_management_account_is_scanned_and_closed_accounts_are_not(org):
    member = org.account([UserSpec("mia", (KeySpec(10),))])
    closed = org.account([UserSpec("ned", (KeySpec(95),))])
    org.session.client("organizations").close_account(AccountId=closed.account_id)

    report = org.run()

    scanned = {a.account.account_id for a in report.accounts}
    assert member.account_id in scanned and org.management_id in scanned
    assert closed.account_id not in scanned
