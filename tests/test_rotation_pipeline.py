"""The daily pipeline against moto's server over HTTP: what it changes and what it leaves."""

from __future__ import annotations

import json

from keyrotation.aws.iam import SECRET_POLICY_NAME
from keyrotation.aws.secrets import secret_name
from keyrotation.emulator.sample import use_key
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
    policy = json.loads(secrets.get_resource_policy(SecretId=secret_name("alice"))["ResourcePolicy"])
    user_arn = account.session.client("iam").get_user(UserName="alice")["User"]["Arn"]
    allow, deny = policy["Statement"]
    assert allow["Effect"] == "Allow" and allow["Principal"] == {"AWS": user_arn}
    assert deny["Effect"] == "Deny"
    assert deny["Condition"] == {"StringNotEquals": {"aws:PrincipalArn": user_arn}}

    inline = account.session.client("iam").get_user_policy(
        UserName="alice", PolicyName=SECRET_POLICY_NAME
    )["PolicyDocument"]
    secret_arn = secrets.describe_secret(SecretId=secret_name("alice"))["ARN"]
    assert [s["Resource"] for s in inline["Statement"]] == [secret_arn]
