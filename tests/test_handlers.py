"""The Lambda handlers in-process against moto's server: bad events, missing roles, JSON logs.

moto's Lambda would try to run the code in Docker, so asynchronous invokes are captured with a
botocore hook on the handlers' session and never reach the server.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest

from keyrotation.errors import AccountError, EventError
from keyrotation.handlers import entrypoints, lambda_handlers
from keyrotation.settings import NAMES
from tests.orgs import ADMIN, KeySpec, OrgBuilder, UserSpec, keys_of

ROTATION_FUNCTION = "keyrotation-rotation"
NOTIFIER_FUNCTION = "keyrotation-notifier"


@dataclass
class _Response:
    status_code: int
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class LambdaInvokes:
    """Every Lambda invoke made through a session: function name, invocation type, payload."""

    calls: list[dict[str, Any]] = field(default_factory=list)

    def attach(self, session: boto3.Session) -> boto3.Session:
        session.events.register("provide-client-params.lambda.Invoke", self._record)
        session.events.register("before-call.lambda.Invoke", self._accept)
        return session

    def to(self, function: str) -> list[dict[str, Any]]:
        return [c["payload"] for c in self.calls if c["function"] == function]

    def _record(self, params: dict[str, Any], **_: Any) -> None:
        self.calls.append(
            {
                "function": params["FunctionName"],
                "type": params.get("InvocationType"),
                "payload": json.loads(params["Payload"]),
            }
        )

    def _accept(self, **_: Any) -> tuple[_Response, dict[str, Any]]:
        # What Lambda answers an asynchronous invoke: accepted, nothing run yet.
        return _Response(202), {"StatusCode": 202, "ResponseMetadata": {"HTTPStatusCode": 202}}


def deny_assume_role(session: boto3.Session, role_arn: str) -> None:
    """Make STS refuse `role_arn` as AWS does when the role is missing or does not trust us."""

    def refuse(params: dict[str, Any], **_: Any) -> tuple[_Response, dict[str, Any]] | None:
        if role_arn not in params["body"].get("RoleArn", ""):
            return None
        message = f"User is not authorized to perform: sts:AssumeRole on resource: {role_arn}"
        return _Response(403), {
            "Error": {"Code": "AccessDenied", "Message": message},
            "ResponseMetadata": {"HTTPStatusCode": 403},
        }

    session.events.register("before-call.sts.AssumeRole", refuse)


# What the rotation function hands the notifier for an account, as far as a template needs.
TEMPLATE_VALUES = {
    "account_id": "111122223333",
    "account_name": "Payments",
    "timestamp": "2026-12-04 09:00 UTC",
    "actions": ["a line"],
    "rotation_period": 90,
    "installation_grace_period": 10,
    "recovery_grace_period": 10,
    "partition_name": "aws",
}


def stack_environment(**values: str) -> dict[str, str]:
    """The environment the main stack gives a function, with this test's settings."""
    settings = {
        "RotationPeriod": "90",
        "InactiveBuffer": "10",
        "InactivePeriod": "100",
        "RecoveryGracePeriod": "10",
        "PendingActionWarnPeriod": "7",
        "DryRunFlag": "False",
        "IAMExemptionGroup": "IAMKeyRotationExemptionGroup",
        "IAMRoleName": "asa-iam-key-rotation-lambda-assumed-role",
        "AdminEmailAddress": ADMIN,
        "EmailTemplateAudit": "audit.html",
        "EmailTemplateEnforce": "enforce.html",
        "OrganizationalUnitId": "",
        "ListPageSize": "",
        "ScanMethod": "report",
        "MaxConcurrentAccounts": "4",
        "SMTPHost": "",
        "SMTPPort": "587",
        "SMTPSecurity": "starttls",
        "SMTPUserParamName": "",
        "SMTPPasswordParamName": "",
        "ResourceOwnerTag": "",
        "SummaryTopicArn": "",
        "StoreSecretsInCentralAccount": "False",
        "CredentialReplicationRegions": "",
        "HoldWhileInUse": "True",
        "MaxHoldDays": "30",
    }
    assert set(settings) == set(NAMES)
    return {
        **settings,
        entrypoints.ROTATION_FUNCTION: ROTATION_FUNCTION,
        entrypoints.NOTIFIER_FUNCTION: NOTIFIER_FUNCTION,
        entrypoints.ORG_MANAGEMENT_ROLE: "",
        **values,
    }


@pytest.fixture
def lambda_env(org: OrgBuilder, monkeypatch) -> Iterator[LambdaInvokes]:
    """Run the handlers as the management account, with the stack's environment."""
    invokes = LambdaInvokes()
    invokes.attach(org.session)
    monkeypatch.setattr(entrypoints, "base_session", lambda: org.session)
    for name, value in stack_environment().items():
        monkeypatch.setenv(name, value)
    yield invokes


def log_lines(capsys) -> list[dict[str, Any]]:
    """The handlers' log: every line must be one JSON object."""
    return [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.strip()]


def job(account) -> dict[str, str]:
    return {"account": account.account_id, "name": account.name, "email": account.email}


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ({"name": "a", "email": "a@example.com"}, "field 'account' is missing"),
        ({"account": "12345", "name": "a", "email": "a@example.com"}, "not a 12-digit account"),
        ({"account": "123456789012", "name": "a", "email": "nobody"}, "field 'email'"),
        (
            {"account": "123456789012", "name": "a", "email": "a@example.com", "dryrun": "maybe"},
            "field 'dryrun'",
        ),
        (
            {"account": "123456789012", "name": "a", "email": "a@example.com", "force": "x"},
            "unknown field 'force'",
        ),
        ("not an object", "expected a JSON object"),
    ],
)
def test_malformed_rotation_event_names_the_field_and_changes_nothing(
    org, lambda_env, capsys, event, message
):
    account = org.account([UserSpec("alice", (KeySpec(120),))])
    before = keys_of(account, "alice")

    with pytest.raises(EventError, match=message):
        lambda_handlers.rotation(event, None)

    assert keys_of(account, "alice") == before
    assert lambda_env.calls == []
    (line,) = log_lines(capsys)
    assert line["level"] == "ERROR" and line["event"] == "invalid event"
    assert message.strip("'") in line["error"] or message in line["error"]


def test_malformed_notifier_event_names_the_nested_field(lambda_env, capsys):
    event = {
        "email": "owner@example.com",
        "subject": "s",
        "email_template": "audit.html",
        "template_values": {"account_name": "x"},
    }

    with pytest.raises(EventError, match=r"'template_values\.account_id' is missing"):
        lambda_handlers.notifier(event, None)

    assert [line["event"] for line in log_lines(capsys)] == ["invalid event"]


def test_notifier_links_only_its_accounts_page_under_its_own_prefix(lambda_env, monkeypatch):
    monkeypatch.setenv(entrypoints.BUCKET, "keyrotation-bucket")
    monkeypatch.setenv(entrypoints.PREFIX, "asa/asa-iam-rotation")
    event = {
        "email": "owner@example.com",
        "subject": "s",
        "email_template": "audit.html",
        "template_values": TEMPLATE_VALUES,
        "report_page": "other/Reports/dt=2026-12-04/111122223333.html",
    }

    with pytest.raises(EventError, match=r"'report_page'.*not account 111122223333's report"):
        lambda_handlers.notifier(event, None)

    # Nor another account's page: each email links to its own account only.
    other = {**event, "report_page": "asa/asa-iam-rotation/Reports/dt=2026-12-04/444455556666.html"}
    with pytest.raises(EventError, match=r"'report_page'.*not account 111122223333's report"):
        lambda_handlers.notifier(other, None)


def test_force_rotate_accepts_one_name_or_a_list(org, lambda_env):
    account = org.account([UserSpec("bob", (KeySpec(5),)), UserSpec("carol", (KeySpec(5),))])
    old_bob, old_carol = account.key_ids["bob"][0], account.key_ids["carol"][0]

    lambda_handlers.rotation({**job(account), "ForceRotate": "bob"}, None)
    lambda_handlers.rotation({**job(account), "ForceRotate": ["carol"]}, None)

    assert len(keys_of(account, "bob")) == 2 and old_bob in keys_of(account, "bob")
    assert len(keys_of(account, "carol")) == 2 and old_carol in keys_of(account, "carol")


def test_dryrun_in_the_event_overrides_the_stack_and_changes_nothing(org, lambda_env):
    account = org.account([UserSpec("alice", (KeySpec(120),))])
    before = keys_of(account, "alice")

    report = lambda_handlers.rotation({**job(account), "dryrun": "true"}, None)

    assert report["mode"] == "audit" and report["outcomes"]
    assert keys_of(account, "alice") == before


def test_missing_member_role_fails_the_job_naming_role_account_and_fix(org, lambda_env, capsys):
    account = org.account([UserSpec("alice", (KeySpec(120),))])
    role = f"arn:aws:iam::{account.account_id}:role/asa-iam-key-rotation-lambda-assumed-role"
    deny_assume_role(org.session, role)

    with pytest.raises(AccountError) as failure:
        lambda_handlers.rotation(job(account), None)

    assert role in str(failure.value)
    assert "Deploy the member role stack" in str(failure.value)
    assert lambda_env.calls == [], "no notification for an account that was not run"
    failed = [line for line in log_lines(capsys) if line["level"] == "ERROR"]
    assert failed and all(line.get("account") or line.get("function") for line in failed)
    assert any(role in line.get("error", "") for line in failed)


def test_inventory_names_the_management_role_it_cannot_assume(org, lambda_env, monkeypatch):
    org.account()
    role = "arn:aws:iam::210987654321:role/asa-iam-key-rotation-organization-reader"
    monkeypatch.setenv(entrypoints.ORG_MANAGEMENT_ROLE, role)
    deny_assume_role(org.session, role)

    with pytest.raises(AccountError) as failure:
        lambda_handlers.inventory({}, None)

    message = str(failure.value)
    assert role in message and "management account 210987654321" in message
    assert "deploy/management-role.yaml" in message
    assert lambda_env.calls == []


def test_inventory_never_reports_an_empty_scope_as_success(org, lambda_env, monkeypatch):
    organizations = org.session.client("organizations")
    root = organizations.list_roots()["Roots"][0]["Id"]
    empty = organizations.create_organizational_unit(ParentId=root, Name="empty")
    monkeypatch.setenv("OrganizationalUnitId", empty["OrganizationalUnit"]["Id"])

    with pytest.raises(AccountError, match="no ACTIVE accounts"):
        lambda_handlers.inventory({}, None)

    assert lambda_env.calls == []


def test_inventory_starts_one_asynchronous_job_per_active_account(org, lambda_env, capsys):
    accounts = [org.account(), org.account()]

    result = lambda_handlers.inventory({"detail-type": "Scheduled Event"}, None)

    ids = {a.account_id for a in accounts} | {org.management_id}
    # Without a bucket in the environment (a CLI-like run) no report page is written.
    assert result == {"accounts": len(ids), "function": ROTATION_FUNCTION, "report": ""}
    assert {c["type"] for c in lambda_env.calls} == {"Event"}
    assert {p["account"] for p in lambda_env.to(ROTATION_FUNCTION)} == ids
    assert job(accounts[0]) in lambda_env.to(ROTATION_FUNCTION)
    started = [line for line in log_lines(capsys) if line["event"] == "rotation job started"]
    assert sorted(line["account"] for line in started) == sorted(ids)
