"""Failures that must never cost a key or lock an app out: failed reads, throttling, other
accounts' failures, rejected emails, two runs at once, and secrets set up by someone else."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest

from keyrotation.emulator.sample import use_key
from keyrotation.model import ActionKind
from keyrotation.notify.deliver import deliver
from keyrotation.notify.render import load_local
from keyrotation.notify.senders import SesSender
from keyrotation.notify.unsent import FolderStore
from keyrotation.pipeline import RunContext, run_account, run_organization
from tests.orgs import ADMIN, KeySpec, UserSpec, keys_of


def changes(report) -> list[tuple[str, str, str]]:
    return sorted(
        (o.user, o.action.kind.value, o.action.reason.value)
        for account in report.accounts
        for o in account.outcomes
        if o.action.kind is not ActionKind.WARN
    )


READS = [
    ("iam", "ListAccessKeys", "user"),
    ("iam", "GetAccessKeyLastUsed", "user"),
    ("iam", "ListUserTags", "user"),
    ("iam", "GetGroup", "account"),
    ("iam", "ListUsers", "account"),
]


@pytest.mark.parametrize(("service", "operation", "scope"), READS, ids=[r[1] for r in READS])
def test_a_failed_read_is_never_taken_for_an_empty_answer(org, faults, service, operation, scope):
    account = org.account(
        [UserSpec("alice", (KeySpec(95),)), UserSpec("guard", (KeySpec(300),), exempt=True)]
    )
    before = {u: keys_of(account, u) for u in ("alice", "guard")}
    # Refused for good today (a throttle past every retry ends the same way, only slower).
    faults.fail(service, operation, code="AccessDenied", times=1000)

    report = org.run([account], DryRunFlag=False, ScanMethod="per-user")

    (result,) = report.accounts
    assert not report.clean
    assert {u: keys_of(account, u) for u in before} == before, "nothing changed"
    if scope == "user":
        assert any("alice" in line and "not" in line for line in result.not_scanned)
    else:
        assert result.failed and "not scanned" in result.errors[0]


def test_a_third_of_all_calls_throttled_gives_the_same_result(org, faults):
    def build():
        return [
            org.account([UserSpec("old", (KeySpec(95),)), UserSpec("young", (KeySpec(20),))]),
            org.account([UserSpec("gone", (KeySpec(110), KeySpec(15)))]),
        ]

    calm = org.run(build(), DryRunFlag=False)
    faults.throttle_every = 3
    stormy = org.run(build(), DryRunFlag=False)

    assert faults.throttled > 10
    assert stormy.clean and calm.clean
    assert changes(stormy) == changes(calm)


def test_one_accounts_failure_never_stops_the_others(org, faults):
    denied = org.account([UserSpec("alice", (KeySpec(95),))])
    fine = org.account([UserSpec("bob", (KeySpec(95),))])
    faults.fail("sts", "AssumeRole", match=denied.account_id, code="AccessDenied")

    report = org.run([denied, fine], DryRunFlag=False)

    by_id = {a.account.account_id: a for a in report.accounts}
    assert by_id[denied.account_id].failed
    assert "Deploy" in by_id[denied.account_id].errors[0], "the report says what to do"
    assert len(keys_of(fine, "bob")) == 2
    assert not report.clean


def test_a_rejected_email_goes_out_with_the_next_one(org, tmp_path):
    account = org.account([UserSpec("alice", (KeySpec(95),))])
    state = FolderStore(tmp_path / "state")
    unverified = SesSender(org.session, "unverified@example.com")
    verified = SesSender(org.session, ADMIN)
    sent: list[str] = []

    def notifier_with(sender):
        def send(notification):
            result = deliver(notification, load_local(notification.template), sender)
            sent.append("\n".join(notification.values["actions"]))
            return result

        return send

    context = RunContext(org.settings(DryRunFlag=False), datetime.now(UTC), unsent=state)
    first = run_organization(org.session, context, notifier_with(unverified), [account.account_id])
    assert not first.clean and first.accounts[0].notification.startswith("failed")
    assert len(keys_of(account, "alice")) == 2, "the change stands"
    assert state.load(account.account_id), "the lines are kept"

    second = run_organization(org.session, context, notifier_with(verified), [account.account_id])

    assert second.clean
    assert len(sent) == 1 and "Not sent before" in sent[0] and "Rotated key" in sent[0]
    assert state.load(account.account_id) == []


def test_two_runs_at_once_rotate_once_and_mail_once(org):
    account = org.account([UserSpec(f"user-{n}", (KeySpec(95),)) for n in range(6)])
    settings = org.settings(DryRunFlag=False)
    mails: list[str] = []
    reports = []
    barrier = threading.Barrier(2)

    def one_run():
        context = RunContext(settings, datetime.now(UTC))
        barrier.wait()
        reports.append(run_account(org.session, _account(account), context, mails.append))

    threads = [threading.Thread(target=one_run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sum(len(keys_of(account, f"user-{n}")) for n in range(6)) == 12
    rotations = [o for r in reports for o in r.outcomes if o.action.kind is ActionKind.ROTATE]
    assert len(rotations) == 6
    assert len(mails) == 1
    assert sorted(bool(r.busy) for r in reports) == [False, True]


def test_a_secret_set_up_by_someone_else_gets_no_key(org):
    account = org.account([UserSpec("alice", (KeySpec(95),))])
    account.session.client("secretsmanager").create_secret(
        Name="User_alice_AccessKey",
        SecretString="{}",
        AddReplicaRegions=[{"Region": "us-west-2"}],
    )

    report = org.run([account], DryRunFlag=False)

    assert not report.clean
    assert "replicas" in report.accounts[0].errors[0]
    assert len(keys_of(account, "alice")) == 1, "the new key was taken back"


def test_a_key_reactivated_by_hand_gets_its_grace_period_again(org):
    account = org.account([UserSpec("bob", (KeySpec(105), KeySpec(12)))])
    old, _ = account.key_ids["bob"]
    org.run([account], DryRunFlag=False)
    account.session.client("iam").update_access_key(
        UserName="bob", AccessKeyId=old, Status="Active"
    )

    next_day = org.run([account], days=1, DryRunFlag=False)
    later = org.run([account], days=11, DryRunFlag=False)

    assert keys_of(account, "bob")[old] == "Inactive"
    assert any("reactivated by hand" in note for note in next_day.accounts[0].recoveries)
    assert [o.action.kind for o in next_day.accounts[0].outcomes] == []
    assert [(o.action.kind, o.action.key_id) for o in later.accounts[0].outcomes] == [
        (ActionKind.DEACTIVATE, old)
    ]


def test_forcing_an_exempt_user_is_reported_not_ignored(org):
    account = org.account([UserSpec("guard", (KeySpec(20),), exempt=True)])

    report = org.run([account], forced=("guard",), DryRunFlag=False)

    assert any("exempt" in note for note in report.accounts[0].skipped)
    assert len(keys_of(account, "guard")) == 1


def _account(sample):
    from keyrotation.model import Account

    return Account(sample.account_id, sample.name, sample.email)


def test_a_stale_rotation_mark_never_takes_back_a_key_someone_uses(org):
    account = org.account([UserSpec("ivy", (KeySpec(95),))])
    (old,) = account.key_ids["ivy"]
    iam = account.session.client("iam")
    # A run stopped right after marking the user; then someone made a key by hand and used it.
    iam.tag_user(
        UserName="ivy",
        Tags=[
            {
                "Key": "keyrotation:rotation-in-progress",
                "Value": f"old={old} started=" + org.now.date().isoformat(),
            }
        ],
    )
    made = iam.create_access_key(UserName="ivy")["AccessKey"]
    use_key(made["AccessKeyId"], made["SecretAccessKey"])

    report = org.run([account], DryRunFlag=False, ScanMethod="per-user")

    assert made["AccessKeyId"] in keys_of(account, "ivy")
    assert any("left no key of its own" in note for note in report.accounts[0].recoveries)
