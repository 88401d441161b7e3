"""Least privilege from code: each role's policies grant exactly the actions its code declares.

Every AWS call declares its IAM actions with `permissions.requires` beside the call. The test
imports every module so the registry is complete, then compares it with the templates.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from typing import Any

import boto3
import pytest

import keyrotation
from keyrotation import permissions
from keyrotation.aws import records
from keyrotation.aws.iam import secret_read_policy
from keyrotation.aws.lock import LOCK_NAME, AccountLock
from keyrotation.aws.secrets import CENTRAL_KEY_ALIAS, CENTRAL_PREFIX, secret_name
from keyrotation.handlers.lambda_handlers import RUNTIME_ACTIONS, VPC_ACTIONS
from keyrotation.notify.unsent import BucketStore
from keyrotation.permissions import INVENTORY, KEY_HOLDER, MEMBER, NOTIFIER, ROTATION, actions_for
from tests.test_deploy_templates import template

for _module in pkgutil.walk_packages(keyrotation.__path__, "keyrotation."):
    if _module.name != "keyrotation.__main__":  # importing it runs the command line
        importlib.import_module(_module.name)

LOCK_ACTIONS = AccountLock.acquire.iam_actions
ORGANIZATION_ACTIONS = frozenset(
    a for a in actions_for(INVENTORY) if a.startswith("organizations:")
)
# Which role of which template runs the code of which permissions role, and what it must grant.
ROLES = {
    ("member-role.yaml", "MemberRole"): actions_for(MEMBER),
    ("main.yaml", "InventoryRole"): actions_for(INVENTORY) | RUNTIME_ACTIONS | VPC_ACTIONS,
    ("main.yaml", "RotationRole"): actions_for(ROTATION) | RUNTIME_ACTIONS | VPC_ACTIONS,
    ("main.yaml", "NotifierRole"): actions_for(NOTIFIER) | RUNTIME_ACTIONS | VPC_ACTIONS,
    # Not our code: EventBridge Scheduler starts the inventory and reports undelivered runs.
    ("main.yaml", "SchedulerRole"): frozenset({"lambda:InvokeFunction", "sqs:SendMessage"}),
    # The part of the inventory's code that runs in the management account.
    ("management-role.yaml", "OrganizationReaderRole"): ORGANIZATION_ACTIONS,
}


def statements(template_name: str, role: str) -> list[dict[str, Any]]:
    """The role's policy statements; both branches of a condition count, as either may deploy."""
    found = []
    for policy in template(template_name)["Resources"][role]["Properties"].get("Policies", []):
        for statement in policy["PolicyDocument"]["Statement"]:
            if "Fn::If" in statement:
                _, *branches = statement["Fn::If"]
                found += [b for b in branches if b != {"Ref": "AWS::NoValue"}]
            else:
                found.append(statement)
    return found


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def granted(template_name: str, role: str) -> set[str]:
    return {a for s in statements(template_name, role) for a in as_list(s["Action"])}


def test_every_permissions_role_declares_actions():
    for role in (MEMBER, INVENTORY, ROTATION, NOTIFIER):
        assert actions_for(role), role
    for declared in permissions.REGISTRY.values():
        for actions in declared.values():
            assert all(re.fullmatch(r"[a-z0-9-]+:[A-Za-z0-9]+", a) for a in actions), actions


@pytest.mark.parametrize(("template_name", "role"), list(ROLES))
def test_role_grants_exactly_what_its_code_calls(template_name, role):
    assert granted(template_name, role) == ROLES[template_name, role]


@pytest.mark.parametrize(("template_name", "role"), list(ROLES))
def test_no_statement_denies_nothing_or_uses_wildcard_actions(template_name, role):
    for statement in statements(template_name, role):
        assert statement["Effect"] == "Allow"
        assert "NotAction" not in statement and "NotResource" not in statement
        assert not any("*" in action for action in as_list(statement["Action"]))


def test_member_role_is_scoped_to_users_and_this_tools_secrets():
    resources_by_action = {}
    for statement in statements("member-role.yaml", "MemberRole"):
        for action in as_list(statement["Action"]):
            resources_by_action[action] = [
                r["Fn::Sub"] if isinstance(r, dict) else r for r in as_list(statement["Resource"])
            ]
    account = "arn:${AWS::Partition}:iam::${AWS::AccountId}:"

    for action, resources in resources_by_action.items():
        service = action.split(":")[0]
        if action in {"iam:GenerateCredentialReport", "iam:GetCredentialReport"}:
            assert resources == ["*"], "IAM offers no resource for the credential report"
        elif action == "secretsmanager:ListSecrets":
            assert resources == ["*"], "ListSecrets takes no resource"
        elif service == "iam" and action != "iam:GetGroup":
            assert resources == [f"{account}user/*"], action
        elif action == "iam:GetGroup":
            assert all(r.startswith(f"{account}group/") for r in resources)
            assert all(r.endswith("/${IAMExemptionGroup}") for r in resources)
        else:
            assert service == "secretsmanager", action
            assert all(
                r.startswith("arn:${AWS::Partition}:secretsmanager:*:${AWS::AccountId}:secret:")
                for r in resources
            )
            for pattern in (r.rsplit(":secret:", 1)[1] for r in resources):
                # A secret's ARN ends in "-" and six random characters after its name.
                assert _matches(f"{secret_name('alice')}-AbCdEf", pattern) or (
                    pattern == f"{LOCK_NAME}-*" and action in LOCK_ACTIONS
                ), (action, pattern)


def test_member_role_writes_only_this_tools_tags():
    tagging = [
        s
        for s in statements("member-role.yaml", "MemberRole")
        if {"iam:TagUser", "iam:UntagUser"} & set(as_list(s["Action"]))
    ]

    assert tagging
    for statement in tagging:
        assert statement["Condition"] == {
            "ForAllValues:StringLike": {"aws:TagKeys": f"{records.TAG_PREFIX}*"}
        }
        assert records.tag_key("AKIAEXAMPLE").startswith(records.TAG_PREFIX)


def test_notifier_sends_only_from_the_admin_address():
    (send,) = [s for s in statements("main.yaml", "NotifierRole") if s["Action"] == "ses:SendEmail"]

    assert send["Condition"] == {"StringEquals": {"ses:FromAddress": {"Ref": "AdminEmailAddress"}}}


def test_inventory_may_assume_only_the_management_role_it_is_given():
    (assume,) = [
        s for s in statements("main.yaml", "InventoryRole") if s["Action"] == "sts:AssumeRole"
    ]

    assert assume["Resource"] == {"Ref": "OrgManagementRoleArn"}


def test_rotation_may_assume_only_the_member_role():
    (assume,) = [
        s for s in statements("main.yaml", "RotationRole") if s["Action"] == "sts:AssumeRole"
    ]

    assert assume["Resource"] == {"Fn::Sub": "arn:${AWS::Partition}:iam::*:role/${IAMRoleName}"}


def _matches(name: str, pattern: str) -> bool:
    return re.fullmatch(re.escape(pattern).replace(r"\*", ".*"), name) is not None


def test_rotation_keeps_unsent_email_lines_only_at_their_keys():
    store = BucketStore(boto3.Session(region_name="us-east-1"), "bucket", "${S3BucketPrefix}")
    folder = store._key("111122223333").removesuffix("111122223333.json")
    journal = [
        s for s in statements("main.yaml", "RotationRole") if str(s["Action"]).startswith("['s3")
    ]

    assert [s["Resource"] for s in journal] == [
        {"Fn::Sub": f"arn:${{AWS::Partition}}:s3:::${{S3BucketName}}/{folder}*"}
    ]


def test_central_key_lets_users_decrypt_only_their_accounts_secrets_through_secrets_manager():
    resources = template("main.yaml")["Resources"]
    key = resources["SecretsKey"]
    statements_by_sid = {s["Sid"]: s for s in key["Properties"]["KeyPolicy"]["Statement"]}
    users = statements_by_sid["UsersDecryptTheirAccountsSecretsThroughSecretsManager"]
    service = "secretsmanager.*.amazonaws.com"
    prefix = "arn:${AWS::Partition}:secretsmanager:*:${AWS::AccountId}:secret:"

    assert key["Condition"] == "CentralSecrets"
    assert resources["SecretsKeyAlias"]["Properties"]["AliasName"] == CENTRAL_KEY_ALIAS
    assert users["Action"] == "kms:Decrypt" and users["Principal"] == {"AWS": "*"}
    assert users["Condition"] == {
        "StringEquals": {"aws:PrincipalOrgID": {"Ref": "AWSOrgID"}},
        "StringLike": {
            "kms:ViaService": service,
            "kms:EncryptionContext:SecretARN": {
                "Fn::Sub": f"{prefix}{CENTRAL_PREFIX}${{!aws:PrincipalAccount}}/*"
            },
        },
    }
    rotation = statements_by_sid["RotationStoresSecrets"]
    assert rotation["Principal"] == {"AWS": {"Fn::GetAtt": ["RotationRole", "Arn"]}}
    assert rotation["Condition"] == {"StringLike": {"kms:ViaService": service}}


def test_rotation_role_writes_central_secrets_only_under_the_prefix():
    central = [
        s
        for s in statements("main.yaml", "RotationRole")
        if s["Sid"] == "KeepUsersSecretsInThisAccount"
    ]

    (statement,) = central
    assert statement["Resource"] == {
        "Fn::Sub": f"arn:${{AWS::Partition}}:secretsmanager:*:${{AWS::AccountId}}:secret:"
        f"{CENTRAL_PREFIX}*"
    }


def test_users_own_policy_grants_what_install_key_calls():
    arn = "arn:aws:secretsmanager:us-east-1:111122223333:secret:User_alice_AccessKey-AbCdEf"
    for encrypted in (False, True):
        (read, *_) = secret_read_policy(arn, (), encrypted)["Statement"]

        assert actions_for(KEY_HOLDER) <= set(read["Action"])
