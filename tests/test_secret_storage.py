"""Where new keys are kept: the central store in the main account, and replica regions."""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.stub import Stubber

from keyrotation.aws.iam import SECRET_POLICY_NAME
from keyrotation.aws.secrets import (
    CENTRAL_KEY_ALIAS,
    Replica,
    SecretStore,
    central_prefix,
    secret_name,
)
from keyrotation.emulator.sample import use_key
from tests.orgs import KeySpec, UserSpec, keys_of, secret_of

# moto accepts a KmsKeyId it does not know; on AWS the main stack makes the key and alias.
CENTRAL = {"StoreSecretsInCentralAccount": True, "DryRunFlag": False}


def central_names(org) -> list[str]:
    listed = org.session.client("secretsmanager").list_secrets()["SecretList"]
    return sorted(s["Name"] for s in listed)


def test_same_user_name_in_two_accounts_gets_two_central_secrets(org):
    first = org.account([UserSpec("alice", (KeySpec(95),))])
    second = org.account([UserSpec("alice", (KeySpec(95),))])

    report = org.run([first, second], **CENTRAL)

    assert report.clean, report.to_dict()
    assert central_names(org) == sorted(
        f"{central_prefix(a.account_id)}{secret_name('alice')}" for a in (first, second)
    )
    for account in (first, second):
        secret = secret_of(account, "alice", org.session)
        assert secret["AccessKeyId"] in keys_of(account, "alice")
        identity = use_key(secret["AccessKeyId"], secret["SecretAccessKey"])
        assert identity == f"arn:aws:iam::{account.account_id}:user/alice"
        assert account.session.client("secretsmanager").list_secrets()["SecretList"] == []


def test_central_secret_admits_only_its_user_and_the_user_may_read_only_it(org):
    account = org.account([UserSpec("alice", (KeySpec(95),), path="/team/")])

    org.run([account], **CENTRAL)

    secrets = org.session.client("secretsmanager")
    name = f"{central_prefix(account.account_id)}{secret_name('alice')}"
    described = secrets.describe_secret(SecretId=name)
    assert described["KmsKeyId"] == CENTRAL_KEY_ALIAS
    user = account.session.client("iam").get_user(UserName="alice")["User"]
    policy = json.loads(secrets.get_resource_policy(SecretId=name)["ResourcePolicy"])
    read = ["secretsmanager:GetSecretValue"]
    assert policy["Statement"] == [
        {
            "Sid": "OwnerReads",
            "Effect": "Allow",
            "Principal": {"AWS": user["Arn"]},
            "Action": read,
            "Resource": "*",
        },
        {
            "Sid": "NobodyElseReads",
            "Effect": "Deny",
            "Principal": "*",
            "Action": read,
            "Resource": "*",
            "Condition": {"StringNotEquals": {"aws:userid": user["UserId"]}},
        },
    ]
    inline = account.session.client("iam").get_user_policy(
        UserName="alice", PolicyName=SECRET_POLICY_NAME
    )["PolicyDocument"]
    assert inline["Statement"] == [
        {
            "Sid": "ReadOwnAccessKeySecret",
            "Effect": "Allow",
            "Action": ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"],
            "Resource": described["ARN"],
        },
        {
            "Sid": "DecryptOwnSecretThroughSecretsManager",
            "Effect": "Allow",
            "Action": "kms:Decrypt",
            "Resource": f"arn:aws:kms:*:{org.management_id}:key/*",
            "Condition": {"StringLike": {"kms:ViaService": "secretsmanager.*.amazonaws.com"}},
        },
    ]
    # moto cannot refuse or allow a cross-account read (it finds secrets in the caller's
    # account only, ignores resource and key policies, and authorizes Secrets Manager calls
    # against resource "*"), so the documents above and main.yaml's key policy are tested.


def test_secret_is_replicated_to_each_region(org):
    account = org.account([UserSpec("alice", (KeySpec(95),))])

    report = org.run([account], DryRunFlag=False, CredentialReplicationRegions="eu-west-1")

    assert report.clean, report.to_dict()
    replica = replica_of(account, "alice", "eu-west-1")
    assert replica == secret_of(account, "alice")
    assert report.accounts[0].recoveries == [], "a first replica is no repair"
    inline = account.session.client("iam").get_user_policy(
        UserName="alice", PolicyName=SECRET_POLICY_NAME
    )["PolicyDocument"]
    arn = account.session.client("secretsmanager").describe_secret(SecretId=secret_name("alice"))[
        "ARN"
    ]
    assert inline["Statement"][0]["Resource"] == [arn, arn.replace("us-east-1", "eu-west-1")]


def test_failed_replica_is_reported_then_made_on_the_next_run(org, faults):
    account = org.account([UserSpec("alice", (KeySpec(95),))])
    faults.fail("secrets-manager", "ReplicateSecretToRegions")

    first = org.run([account], DryRunFlag=False, CredentialReplicationRegions="eu-west-1")

    assert faults.fired
    (error,) = first.accounts[0].errors
    assert "replica in eu-west-1 failed, the next run tries again" in error
    assert len(keys_of(account, "alice")) == 2, "the rotation itself went through"
    assert not replicas_in(account, "eu-west-1")

    second = org.run([account], DryRunFlag=False, CredentialReplicationRegions="eu-west-1")

    assert second.clean, second.to_dict()
    assert replica_of(account, "alice", "eu-west-1") == secret_of(account, "alice")


def test_replica_that_secrets_manager_fails_is_reported_then_started_again(org):
    account = org.account([UserSpec("alice", (KeySpec(95),))])
    west = account.session.client("secretsmanager", region_name="eu-west-1")
    west.create_secret(Name=secret_name("alice"), SecretString="someone else's")

    first = org.run([account], DryRunFlag=False, CredentialReplicationRegions="eu-west-1")

    (error,) = first.accounts[0].errors
    assert "replica in eu-west-1 failed, the next run tries again" in error
    assert "already exists in region eu-west-1" in error
    assert len(keys_of(account, "alice")) == 2, "the rotation itself went through"

    west.delete_secret(SecretId=secret_name("alice"), ForceDeleteWithoutRecovery=True)
    second = org.run([account], DryRunFlag=False, CredentialReplicationRegions="eu-west-1")

    assert second.clean, second.to_dict()
    (note,) = second.accounts[0].recoveries
    assert "was replicated after it failed" in note
    assert replica_of(account, "alice", "eu-west-1") == secret_of(account, "alice")


def test_central_secrets_are_replicated_with_the_central_key(org):
    account = org.account([UserSpec("alice", (KeySpec(95),))])

    org.run([account], CredentialReplicationRegions="us-west-2", **CENTRAL)

    name = f"{central_prefix(account.account_id)}{secret_name('alice')}"
    west = org.session.client("secretsmanager", region_name="us-west-2")
    value = west.get_secret_value(SecretId=name, VersionStage="AWSCURRENT")["SecretString"]
    assert json.loads(value) == secret_of(account, "alice", org.session)
    assert not replicas_in(account, "us-west-2"), "nothing is kept in the member account"


def test_audit_run_starts_no_replica(org):
    account = org.account([UserSpec("alice", (KeySpec(95),))])
    org.run([account], DryRunFlag=False)

    report = org.run([account], CredentialReplicationRegions="eu-west-1")

    assert report.accounts[0].recoveries == []
    assert not replicas_in(account, "eu-west-1")


def test_secret_replicated_by_someone_else_gets_no_key_until_the_region_is_configured(org):
    account = org.account([UserSpec("alice", (KeySpec(95),))])
    secrets = account.session.client("secretsmanager")
    secrets.create_secret(Name=secret_name("alice"))
    secrets.replicate_secret_to_regions(
        SecretId=secret_name("alice"), AddReplicaRegions=[{"Region": "ap-south-1"}]
    )

    refused = org.run([account], DryRunFlag=False)

    (error,) = refused.accounts[0].errors
    assert "replicas in other regions, which keyrotation did not set up" in error
    assert len(keys_of(account, "alice")) == 1

    accepted = org.run([account], DryRunFlag=False, CredentialReplicationRegions="ap-south-1")

    assert accepted.clean, accepted.to_dict()
    assert replica_of(account, "alice", "ap-south-1") == secret_of(account, "alice")


def test_central_secret_with_another_accounts_key_gets_no_key(org):
    account = org.account([UserSpec("alice", (KeySpec(95),))])
    name = f"{central_prefix(account.account_id)}{secret_name('alice')}"
    foreign = "arn:aws:kms:us-east-1:999988887777:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    org.session.client("secretsmanager").create_secret(Name=name, KmsKeyId=foreign)

    report = org.run([account], **CENTRAL)

    (error,) = report.accounts[0].errors
    assert "a KMS key keyrotation does not use" in error
    assert len(keys_of(account, "alice")) == 1


# moto replicates at once; AWS can answer Failed or InProgress, recorded here by hand.
@pytest.mark.parametrize(
    ("status", "calls", "done"),
    [
        ("Failed", ["remove", "replicate"], "was replicated after it failed (quota reached)"),
        ("InProgress", [], "is still being replicated"),
    ],
)
def test_failed_replica_is_removed_and_started_again(status, calls, done):
    session = boto3.Session("AKIAEXAMPLE", "example", region_name="us-east-1")
    store = SecretStore(
        session, "keyrotation/users/111122223333/", CENTRAL_KEY_ALIAS, ("eu-west-1",)
    )
    name = f"keyrotation/users/111122223333/{secret_name('alice')}"
    stub = Stubber(store._secrets)
    replication = [{"Region": "eu-west-1", "Status": status, "StatusMessage": "quota reached"}]
    stub.add_response("describe_secret", {"ReplicationStatus": replication}, {"SecretId": name})
    if "remove" in calls:
        stub.add_response(
            "remove_regions_from_replication",
            {},
            {"SecretId": name, "RemoveReplicaRegions": ["eu-west-1"]},
        )
        stub.add_response(
            "replicate_secret_to_regions",
            {},
            {
                "SecretId": name,
                "AddReplicaRegions": [{"Region": "eu-west-1", "KmsKeyId": CENTRAL_KEY_ALIAS}],
            },
        )

    with stub:
        result = store.replicate(Replica(name, "eu-west-1"))

    stub.assert_no_pending_responses()
    assert result.done == done


def replicas_in(account, region: str) -> list[str]:
    client = account.session.client("secretsmanager", region_name=region)
    return [s["Name"] for s in client.list_secrets()["SecretList"]]


def replica_of(account, user: str, region: str) -> dict[str, str]:
    client = account.session.client("secretsmanager", region_name=region)
    value = client.get_secret_value(SecretId=secret_name(user), VersionStage="AWSCURRENT")
    return json.loads(value["SecretString"])


def test_central_email_names_the_central_account_the_secret_and_the_install_command(org):
    account = org.account([UserSpec("alice", (KeySpec(95),))])
    central = org.session.client("sts").get_caller_identity()["Account"]

    org.run([account], **CENTRAL)

    (email,) = org.emails()
    name = f"{central_prefix(account.account_id)}User_&lt;user name&gt;_AccessKey"
    assert f"<code>{name}</code>" in email
    assert f"Secrets Manager of keyrotation&#39;s central account {central}" in email
    assert f"keyrotation install-key --profile NAME --central-account {central}" in email
    assert "the user&#39;s own account" not in email
