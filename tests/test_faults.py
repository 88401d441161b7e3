"""Every change of a rotation, deactivation and deletion fails, or the run stops right after it;
then the next run goes through and nothing is lost or locked out."""

from __future__ import annotations

from datetime import timedelta

import pytest

from keyrotation.emulator.sample import use_key
from keyrotation.model import KeyRecord
from tests.faults import Crash
from tests.orgs import KeySpec, UserSpec, keys_of, secret_of

ROTATION_CALLS = [
    ("iam", "TagUser", 1),  # the mark: a rotation started
    ("iam", "CreateAccessKey", 1),
    ("iam", "TagUser", 2),  # the mark names the new key
    ("secrets-manager", "CreateSecret", 1),
    ("secrets-manager", "PutResourcePolicy", 1),
    ("iam", "PutUserPolicy", 1),
    ("secrets-manager", "PutSecretValue", 1),
    ("secrets-manager", "UpdateSecretVersionStage", 1),  # promote
    ("iam", "TagUser", 3),  # the record: the old key was replaced
    ("iam", "TagUser", 4),  # the record: the new key's day
    ("iam", "UntagUser", 1),  # the mark cleared
]
DEACTIVATION_CALLS = [("iam", "UpdateAccessKey", 1), ("iam", "TagUser", 1)]
DELETION_CALLS = [("iam", "DeleteAccessKey", 1), ("iam", "UntagUser", 1)]


def run_with_fault(org, faults, account, mode, call, match, **settings):
    service, operation, occurrence = call
    if mode == "error":
        faults.fail(service, operation, occurrence, match=match)
    else:
        faults.crash_after(service, operation, occurrence, match=match)
    try:
        first = org.run([account], DryRunFlag=False, **settings)
    except Crash:
        first = None
    assert faults.fired, f"the fault on {service}.{operation} #{occurrence} never fired"
    faults.rules.clear()  # the next run goes through
    return first, org.run([account], DryRunFlag=False, **settings)


def assert_nothing_lost(account, user, original, central=None):
    """Every key is the user's old key or readable from the secret; an active key remains."""
    keys = keys_of(account, user)
    try:
        readable = secret_of(account, user, central)["AccessKeyId"]
    except account.session.client("secretsmanager").exceptions.ResourceNotFoundException:
        readable = None
    orphans = set(keys) - set(original) - {readable}
    assert not orphans, f"keys nobody can read: {orphans}"
    usable = [k for k, s in keys.items() if s == "Active" and (k in original or k == readable)]
    assert usable, "the user lost every working key"


@pytest.mark.parametrize("mode", ["error", "crash"])
@pytest.mark.parametrize("call", ROTATION_CALLS, ids=lambda c: f"{c[1]}#{c[2]}")
def test_rotation_survives_a_fault_on_every_change(org, faults, mode, call):
    account = org.account([UserSpec("alice", (KeySpec(95),))])
    original = dict(keys_of(account, "alice"))

    first, second = run_with_fault(org, faults, account, mode, call, "alice")

    assert_nothing_lost(account, "alice", original)
    assert second.clean, second.to_dict()
    keys = keys_of(account, "alice")
    secret = secret_of(account, "alice")
    assert len(keys) == 2 and secret["AccessKeyId"] in keys
    assert use_key(secret["AccessKeyId"], secret["SecretAccessKey"]).endswith(":user/alice")
    told = [o.detail for r in (first, second) if r for a in r.accounts for o in a.outcomes]
    told += [n for a in second.accounts for n in (*a.recoveries, *a.earlier)]
    if first is not None:
        told += [e for a in first.accounts for e in a.errors]
    words = ("new key", "interrupted rotation", "started to rotate")
    assert any(word in text for text in told for word in words)
    emails = "".join(org.emails())
    assert "of user alice" in emails, "an email tells what happened to alice's key"
    if mode == "crash":
        assert "stopped before it confirmed" in emails or "Repaired" in emails


@pytest.mark.parametrize("mode", ["error", "crash"])
@pytest.mark.parametrize("call", DEACTIVATION_CALLS, ids=lambda c: f"{c[1]}#{c[2]}")
def test_deactivation_survives_a_fault(org, faults, mode, call):
    account = org.account([UserSpec("bob", (KeySpec(105), KeySpec(12)))])
    old, new = account.key_ids["bob"]

    first, second = run_with_fault(org, faults, account, mode, call, "bob")

    assert second.clean
    assert keys_of(account, "bob") == {old: "Inactive", new: "Active"}
    if mode == "error":
        assert any("injected fault" in e for a in first.accounts for e in a.errors)


@pytest.mark.parametrize("mode", ["error", "crash"])
@pytest.mark.parametrize("call", DELETION_CALLS, ids=lambda c: f"{c[1]}#{c[2]}")
def test_deletion_survives_a_fault(org, faults, mode, call):
    deactivated = KeyRecord(deactivated=org.now.date() - timedelta(days=11))
    account = org.account(
        [UserSpec("carol", (KeySpec(110, active=False, record=deactivated), KeySpec(20)))]
    )
    old, new = account.key_ids["carol"]

    # Per user: the credential report path cleans a stale record only when it next reads
    # the user live, which this one-key user does not need.
    _, second = run_with_fault(org, faults, account, mode, call, "carol", ScanMethod="per-user")

    assert second.clean
    assert keys_of(account, "carol") == {new: "Active"}
    tags = account.session.client("iam").list_user_tags(UserName="carol")["Tags"]
    assert not [t for t in tags if old in t["Key"]], "the deleted key's record is forgotten"


@pytest.mark.parametrize("mode", ["error", "crash"])
@pytest.mark.parametrize("call", ROTATION_CALLS, ids=lambda c: f"{c[1]}#{c[2]}")
def test_rotation_into_the_central_store_survives_a_fault_on_every_change(org, faults, mode, call):
    account = org.account([UserSpec("alice", (KeySpec(95),))])
    original = dict(keys_of(account, "alice"))

    _, second = run_with_fault(
        org, faults, account, mode, call, "alice", StoreSecretsInCentralAccount=True
    )

    assert_nothing_lost(account, "alice", original, org.session)
    assert second.clean, second.to_dict()
    secret = secret_of(account, "alice", org.session)
    assert len(keys_of(account, "alice")) == 2
    assert use_key(secret["AccessKeyId"], secret["SecretAccessKey"]).endswith(":user/alice")
    names = [
        s["Name"] for s in account.session.client("secretsmanager").list_secrets()["SecretList"]
    ]
    assert names == [], "with the central store the member account keeps no secret"
