"""Both stacks deployed into moto's CloudFormation, then the three handlers run in-process.

Each handler gets the environment its function has in the deployed stack, read back from
moto's Lambda, and talks to the same server: the scheduled inventory, a rotation job with and
without ForceRotate, and the notifier with the email read back from SES. moto's Lambda would
run the code in Docker, so the asynchronous invokes are captured on the handlers' session.
"""

from __future__ import annotations

import ast
import json
import shutil
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.awslambda.models import lambda_backends
from moto.cloudformation import parsing
from moto.core.common_models import CloudFormationModel
from moto.iam.models import iam_backends
from moto.scheduler.models import scheduler_backends
from moto.ses.models import ses_backends
from moto.utilities.utils import get_partition

from keyrotation import packaging
from keyrotation.emulator.sample import SampleAccount
from keyrotation.handlers import entrypoints, lambda_handlers
from keyrotation.settings import NAMES, Settings, load_settings, validate_settings
from tests.orgs import ADMIN, KeySpec, OrgBuilder, UserSpec, keys_of, secret_of
from tests.test_deploy_templates import DEPLOY
from tests.test_handlers import LambdaInvokes, job
from tests.test_permissions import ROLES


# moto 5.2's CloudFormation skips these three types; these models create them through moto's
# own backends, so the stack is complete and the resolved properties can be read back.
class _EventInvokeConfigModel(CloudFormationModel):
    def __init__(self, function: str):
        self.physical_resource_id = function

    @staticmethod
    def cloudformation_name_type() -> str:
        return ""

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::Lambda::EventInvokeConfig"

    @classmethod
    def create_from_cloudformation_json(
        cls, resource_name, cloudformation_json, account_id, region_name, **kwargs
    ):
        properties = dict(cloudformation_json["Properties"])
        function = properties.pop("FunctionName")
        properties.pop("Qualifier", None)
        lambda_backends[account_id][region_name].put_function_event_invoke_config(
            function, properties
        )
        return cls(function)


class _ScheduleModel(CloudFormationModel):
    def __init__(self, name: str):
        self.physical_resource_id = name

    @staticmethod
    def cloudformation_name_type() -> str:
        return "Name"

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::Scheduler::Schedule"

    @classmethod
    def create_from_cloudformation_json(
        cls, resource_name, cloudformation_json, account_id, region_name, **kwargs
    ):
        properties = cloudformation_json["Properties"]
        scheduler_backends[account_id][region_name].create_schedule(
            description=properties.get("Description"),
            end_date=None,
            flexible_time_window=properties["FlexibleTimeWindow"],
            group_name=None,
            kms_key_arn=None,
            name=resource_name,
            schedule_expression=properties["ScheduleExpression"],
            schedule_expression_timezone=properties.get("ScheduleExpressionTimezone"),
            start_date=None,
            state=properties.get("State"),
            target=properties["Target"],
            action_after_completion=None,
        )
        return cls(resource_name)


class _GroupModel(CloudFormationModel):
    def __init__(self, name: str):
        self.physical_resource_id = name

    @staticmethod
    def cloudformation_name_type() -> str:
        return "GroupName"

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::IAM::Group"

    @classmethod
    def create_from_cloudformation_json(
        cls, resource_name, cloudformation_json, account_id, region_name, **kwargs
    ):
        iam_backends[account_id][get_partition(region_name)].create_group(resource_name)
        return cls(resource_name)


for _cache in (parsing.get_model_list, parsing.get_model_map, parsing.get_name_type_map):
    _cache.cache_clear()

READ_BY_HANDLERS = (
    *entrypoints.INVENTORY_ENVIRONMENT,
    *entrypoints.ROTATION_ENVIRONMENT,
    *entrypoints.NOTIFIER_ENVIRONMENT,
)
PREFIX = "security/keyrotation"
MEMBER_ROLE = "kr-member"
EXECUTION_ROLE = "kr-exec"
EXEMPTION_GROUP = "kr-exempt"
# Every setting differs from its default, so a setting that does not arrive shows.
SETTINGS = {
    "RotationPeriod": "91",
    "InactiveBuffer": "11",
    "InactivePeriod": "101",
    "RecoveryGracePeriod": "12",
    "PendingActionWarnPeriod": "6",
    "DryRunFlag": "False",
    "IAMExemptionGroup": EXEMPTION_GROUP,
    "IAMRoleName": MEMBER_ROLE,
    "AdminEmailAddress": ADMIN,
    "EmailTemplateAudit": "custom-audit.html",
    "EmailTemplateEnforce": "custom-enforce.html",
    "ListPageSize": "50",
    "ScanMethod": "per-user",
    "MaxConcurrentAccounts": "3",
    "HoldWhileInUse": "False",
    "MaxHoldDays": "29",
}


@dataclass
class Deployment:
    org: OrgBuilder
    security: SampleAccount
    workload: SampleAccount
    parameters: dict[str, str]
    outputs: dict[str, str]
    functions: dict[str, dict[str, Any]]
    roles: dict[str, str]
    invokes: LambdaInvokes

    def environment(self, function: str) -> dict[str, str]:
        variables = self.functions[function]["Environment"]["Variables"]
        return {name: str(value) for name, value in variables.items()}

    def run_as(self, function: str, monkeypatch) -> None:
        """Set this process up as the function: its environment, its account's session."""
        for name in (*NAMES, *READ_BY_HANDLERS):
            monkeypatch.delenv(name, raising=False)
        for name, value in self.environment(function).items():
            monkeypatch.setenv(name, value)


def create_stack(session: boto3.Session, name: str, template: str, **parameters: str) -> dict:
    cloudformation = session.client("cloudformation")
    cloudformation.create_stack(
        StackName=name,
        TemplateBody=(DEPLOY / template).read_text(),
        Capabilities=["CAPABILITY_NAMED_IAM"],
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
    )
    (stack,) = cloudformation.describe_stacks(StackName=name)["Stacks"]
    assert stack["StackStatus"] == "CREATE_COMPLETE", stack.get("StackStatusReason")
    return stack


def physical_ids(session: boto3.Session, stack: str) -> dict[str, str]:
    listed = session.client("cloudformation").describe_stack_resources(StackName=stack)
    return {
        r["LogicalResourceId"]: r["PhysicalResourceId"]
        for r in listed["StackResources"]
        if "LogicalResourceId" in r
    }


def sync(folder: Path, session: boto3.Session, bucket: str) -> None:
    """What `aws s3 sync dist/ s3://bucket/` does with the package."""
    s3 = session.client("s3")
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            s3.upload_file(str(path), bucket, path.relative_to(folder).as_posix())


@pytest.fixture
def deployment(org: OrgBuilder, tmp_path, monkeypatch) -> Deployment:
    security = org.account(name="security")
    workload = org.account(
        [
            UserSpec("alice", (KeySpec(95),)),
            UserSpec("bob", (KeySpec(5),)),
            UserSpec("carol", (KeySpec(200),)),
        ],
        name="workload",
    )
    organizations = org.session.client("organizations")
    organization = organizations.describe_organization()["Organization"]
    root = organizations.list_roots()["Roots"][0]["Id"]

    # The package, synced to a bucket of the security account, with customised templates.
    dist = tmp_path / "dist"
    package = packaging.build(dist, PREFIX, with_dependencies=False)
    folder = package.root / "Template"
    shutil.copyfile(folder / "audit.html", folder / SETTINGS["EmailTemplateAudit"])
    shutil.copyfile(folder / "enforce.html", folder / SETTINGS["EmailTemplateEnforce"])
    bucket = f"keyrotation-{security.account_id}"
    security.session.client("s3").create_bucket(Bucket=bucket)
    sync(dist, security.session, bucket)
    security.session.client("ses").verify_email_identity(EmailAddress=ADMIN)

    # The order of the README's deployment section: main stack, management role, member roles.
    management_role = (
        f"arn:aws:iam::{org.management_id}:role/asa-iam-key-rotation-organization-reader"
    )
    parameters = {
        **SETTINGS,
        "OrganizationalUnitId": root,
        "S3BucketName": bucket,
        "S3BucketPrefix": PREFIX,
        "LambdaPackageName": package.lambda_zip.name,
        "ExecutionRoleName": EXECUTION_ROLE,
        "AWSOrgID": organization["Id"],
        "OrgManagementRoleArn": management_role,
        "DailySchedule": "cron(30 5 * * ? *)",
        "LogRetentionInDays": "400",
    }
    main = create_stack(security.session, "keyrotation", "main.yaml", **parameters)
    reader = create_stack(
        org.session,
        "keyrotation-organization-reader",
        "management-role.yaml",
        PrimaryAccountID=security.account_id,
        ExecutionRoleName=EXECUTION_ROLE,
    )
    assert reader["Outputs"][0]["OutputValue"] == management_role
    org.session.client("iam").create_group(GroupName=EXEMPTION_GROUP)
    for account, create_group in ((workload, "true"), (security, "true"), (org, "false")):
        create_stack(
            account.session,
            "keyrotation-member-role",
            "member-role.yaml",
            IAMRoleName=MEMBER_ROLE,
            ExecutionRoleName=EXECUTION_ROLE,
            PrimaryAccountID=security.account_id,
            IAMExemptionGroup=EXEMPTION_GROUP,
            CreateExemptionGroup=create_group,
            AWSOrgID=organization["Id"],
        )
    workload.session.client("iam").add_user_to_group(GroupName=EXEMPTION_GROUP, UserName="carol")

    ids = physical_ids(security.session, "keyrotation")
    functions = {
        logical: security.session.client("lambda").get_function_configuration(
            FunctionName=ids[logical]
        )
        for logical in ("InventoryFunction", "RotationFunction", "NotifierFunction")
    }
    invokes = LambdaInvokes()
    invokes.attach(security.session)
    monkeypatch.setattr(entrypoints, "base_session", lambda: security.session)
    return Deployment(
        org,
        security,
        workload,
        parameters,
        {o["OutputKey"]: o["OutputValue"] for o in main["Outputs"]},
        functions,
        ids,
        invokes,
    )


def test_each_function_reads_every_parameter_as_deployed(deployment):
    expected = validate_settings({name: deployment.parameters[name] for name in NAMES})
    defaults = Settings()
    assert all(
        getattr(expected, n) != getattr(defaults, n) for n in NAMES if n != "AdminEmailAddress"
    )
    outputs = deployment.outputs

    for function in deployment.functions:
        environment = deployment.environment(function)
        assert load_settings(environ=environment) == expected, function
    inventory = deployment.environment("InventoryFunction")
    assert inventory[entrypoints.ROTATION_FUNCTION] == outputs["RotationFunctionName"]
    assert (
        inventory[entrypoints.ORG_MANAGEMENT_ROLE] == deployment.parameters["OrgManagementRoleArn"]
    )
    rotation = deployment.environment("RotationFunction")
    assert rotation[entrypoints.NOTIFIER_FUNCTION] == outputs["NotifierFunctionName"]
    notifier = deployment.environment("NotifierFunction")
    assert notifier[entrypoints.BUCKET] == deployment.parameters["S3BucketName"]
    assert notifier[entrypoints.PREFIX] == PREFIX


def test_deployed_roles_grant_exactly_the_declared_actions(deployment):
    iam = deployment.security.session.client("iam")
    deployed = {
        "InventoryRole": f"{EXECUTION_ROLE}-inventory",
        "RotationRole": EXECUTION_ROLE,
        "NotifierRole": deployment.roles["NotifierRole"],
        "SchedulerRole": deployment.roles["SchedulerRole"],
    }

    for logical, name in deployed.items():
        assert granted_by(iam, name) == ROLES["main.yaml", logical], logical
    member_iam = deployment.workload.session.client("iam")
    assert granted_by(member_iam, MEMBER_ROLE) == ROLES["member-role.yaml", "MemberRole"]
    reader = deployment.org.session.client("iam")
    assert (
        granted_by(reader, "asa-iam-key-rotation-organization-reader")
        == (ROLES["management-role.yaml", "OrganizationReaderRole"])
    )


def test_failed_jobs_land_in_the_queue_and_the_schedule_starts_the_inventory(deployment):
    """These resources are made by the models above, from the template's resolved properties."""
    client = deployment.security.session.client("lambda")
    queue = deployment.security.session.client("sqs").get_queue_attributes(
        QueueUrl=deployment.outputs["FailedJobsQueueUrl"], AttributeNames=["QueueArn"]
    )["Attributes"]["QueueArn"]

    for function in deployment.functions.values():
        config = client.get_function_event_invoke_config(FunctionName=function["FunctionName"])
        assert config["DestinationConfig"]["OnFailure"]["Destination"] == queue
    scheduler = deployment.security.session.client("scheduler")
    schedule = scheduler.get_schedule(Name=deployment.roles["DailyInventorySchedule"])
    assert schedule["ScheduleExpression"] == deployment.parameters["DailySchedule"]
    assert schedule["Target"]["Arn"] == deployment.functions["InventoryFunction"]["FunctionArn"]
    assert schedule["Target"]["DeadLetterConfig"]["Arn"] == queue


def test_daily_run_from_schedule_to_email(deployment, monkeypatch, capsys):
    org, workload, invokes = deployment.org, deployment.workload, deployment.invokes
    rotation_function = deployment.outputs["RotationFunctionName"]
    notifier_function = deployment.outputs["NotifierFunctionName"]
    old_alice = workload.key_ids["alice"][0]

    # Given the schedule fires: one asynchronous rotation job per ACTIVE account.
    deployment.run_as("InventoryFunction", monkeypatch)
    scheduled = {"version": "0", "detail-type": "Scheduled Event", "source": "aws.scheduler"}
    result = lambda_handlers.inventory(scheduled, None)

    accounts = {org.management_id, deployment.security.account_id, workload.account_id}
    assert result["accounts"] == len(accounts)
    assert {job["account"] for job in invokes.to(rotation_function)} == accounts
    (workload_job,) = [j for j in invokes.to(rotation_function) if j == job(workload)]

    # When the workload account's job runs: alice's 95-day key is rotated, bob's is young,
    # carol is exempt.
    deployment.run_as("RotationFunction", monkeypatch)
    report = lambda_handlers.rotation(workload_job, None)

    assert report["mode"] == "enforce" and not report["failed"], report["errors"]
    assert [(o["user"], o["action"]) for o in report["outcomes"]] == [("alice", "ROTATE")]
    keys = keys_of(workload, "alice")
    assert len(keys) == 2 and keys[old_alice] == "Active"
    deactivation = (org.now + timedelta(days=int(SETTINGS["InactiveBuffer"]))).date()
    assert f"to be deactivated on {deactivation}" in report["outcomes"][0]["detail"]
    assert len(keys_of(workload, "bob")) == 1 and len(keys_of(workload, "carol")) == 1

    # Then the notifier sends the account's email through SES, from the admin address.
    (payload,) = invokes.to(notifier_function)
    assert payload["email_template"] == SETTINGS["EmailTemplateEnforce"]
    deployment.run_as("NotifierFunction", monkeypatch)
    assert lambda_handlers.notifier(payload, None) == {"status": "sent"}

    (email,) = ses_backends[deployment.security.account_id]["us-east-1"].sent_messages
    assert email.source == ADMIN
    assert email.destinations["ToAddresses"] == [workload.email]
    assert workload.account_id in email.subject
    assert old_alice in email.body

    # And ForceRotate rotates bob's young key on demand.
    deployment.run_as("RotationFunction", monkeypatch)
    forced = lambda_handlers.rotation({**workload_job, "ForceRotate": "bob"}, None)

    assert [(o["user"], o["action"]) for o in forced["outcomes"]] == [("bob", "ROTATE")]
    assert len(keys_of(workload, "bob")) == 2

    # Every log line is one JSON object, and no secret access key is in any of them.
    log = capsys.readouterr().err
    lines = log_lines_of(log)
    assert lines and all(isinstance(line, dict) for line in lines)
    assert any(
        (line.get("account"), line.get("user"), line.get("key_id"), line.get("action"))
        == (workload.account_id, "alice", old_alice, "ROTATE")
        for line in lines
    )
    for user in ("alice", "bob"):
        assert secret_of(workload, user)["SecretAccessKey"] not in log


def granted_by(iam, role: str) -> set[str]:
    actions: set[str] = set()
    for name in iam.list_role_policies(RoleName=role)["PolicyNames"]:
        document = iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]
        if isinstance(document, str):
            # moto keeps a policy made by CloudFormation as the text of a Python dict.
            document = ast.literal_eval(document)
        for statement in document["Statement"]:
            action = statement["Action"]
            actions.update(action if isinstance(action, list) else [action])
    return actions


def log_lines_of(text: str) -> list[Any]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]
