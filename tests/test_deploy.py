"""Both stacks deployed into moto's CloudFormation, then the three handlers run in-process.

Each handler gets the environment its function has in the deployed stack, read back from
moto's Lambda, and talks to the same server: the scheduled inventory, a rotation job with and
without ForceRotate, and the notifier with the email read back from SES. moto's Lambda would
run the code in Docker, so the asynchronous invokes are captured on the handlers' session.
"""

from __future__ import annotations

import ast
import html
import json
import re
import shutil
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

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
from keyrotation.aws.secrets import CENTRAL_KEY_ALIAS, central_prefix, secret_name
from keyrotation.emulator.sample import SampleAccount
from keyrotation.handlers import entrypoints, lambda_handlers
from keyrotation.settings import NAMES, Settings, load_settings, validate_settings
from tests.mailserver import HOST, PASSWORD, USER, Mailbox, smtp_server
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
    # The notifier sends through the test's SMTP server; its port is added by the fixture.
    "SMTPHost": HOST,
    "SMTPSecurity": "tls",
    "SMTPUserParamName": "/keyrotation/smtp/user",
    "SMTPPasswordParamName": "/keyrotation/smtp/password",
    "ResourceOwnerTag": "team-email",
    # The deployment fixture makes the topic in the security account and puts its ARN here.
    "SummaryTopicArn": "arn:aws:sns:us-east-1:000000000000:kr-summaries",
    "StoreSecretsInCentralAccount": "True",
    "CredentialReplicationRegions": "eu-west-1,us-west-2",
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
    mailbox: Mailbox

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
def mailbox(certificates) -> Iterator[Mailbox]:
    with smtp_server(certificates, "tls") as received:
        yield received


@pytest.fixture
def deployment(org: OrgBuilder, tmp_path, monkeypatch, mailbox) -> Deployment:
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
    network = private_network(security.session)
    ssm = security.session.client("ssm")
    ssm.put_parameter(Name=SETTINGS["SMTPUserParamName"], Value=USER, Type="String")
    ssm.put_parameter(Name=SETTINGS["SMTPPasswordParamName"], Value=PASSWORD, Type="SecureString")
    topic = security.session.client("sns").create_topic(Name="kr-summaries")["TopicArn"]

    # The order of the README's deployment section: main stack, management role, member roles.
    management_role = (
        f"arn:aws:iam::{org.management_id}:role/asa-iam-key-rotation-organization-reader"
    )
    parameters = {
        **SETTINGS,
        "SMTPPort": str(mailbox.port),
        "OrganizationalUnitId": root,
        "S3BucketName": bucket,
        "S3BucketPrefix": PREFIX,
        "LambdaPackageName": package.lambda_zip.name,
        "ExecutionRoleName": EXECUTION_ROLE,
        "AWSOrgID": organization["Id"],
        "OrgManagementRoleArn": management_role,
        "DailySchedule": "cron(30 5 * * ? *)",
        "LogRetentionInDays": "400",
        "RunLambdaInVPC": "true",
        "SubnetIds": ",".join(network.subnets),
        "SecurityGroupIds": network.security_group,
        "SummaryTopicArn": topic,
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
        mailbox,
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


def test_with_run_lambda_in_vpc_every_function_runs_in_the_subnets(deployment):
    subnets = deployment.parameters["SubnetIds"].split(",")
    security_groups = [deployment.parameters["SecurityGroupIds"]]

    for name, function in deployment.functions.items():
        assert function["VpcConfig"]["SubnetIds"] == subnets, name
        assert function["VpcConfig"]["SecurityGroupIds"] == security_groups, name


@pytest.mark.parametrize(
    ("region", "optional", "expected"),
    [
        (
            "us-east-1",
            "true",
            {
                "com.amazonaws.us-east-1.sts",
                "com.amazonaws.us-east-1.secretsmanager",
                "com.amazonaws.us-east-1.lambda",
                "com.amazonaws.us-east-1.organizations",
                "com.amazonaws.iam",
                "com.amazonaws.us-east-1.email-smtp",
                "com.amazonaws.us-east-1.ssm",
                "com.amazonaws.us-east-1.sns",
                "com.amazonaws.us-east-1.s3",
            },
        ),
        (
            "eu-west-1",
            "false",
            {
                "com.amazonaws.eu-west-1.sts",
                "com.amazonaws.eu-west-1.secretsmanager",
                "com.amazonaws.eu-west-1.lambda",
                "com.amazonaws.eu-west-1.s3",
            },
        ),
    ],
)
def test_the_endpoints_stack_makes_each_endpoint_the_region_offers(org, region, optional, expected):
    security = org.account(name="security")
    credentials = security.session.get_credentials().get_frozen_credentials()
    session = boto3.Session(
        aws_access_key_id=credentials.access_key,
        aws_secret_access_key=credentials.secret_key,
        aws_session_token=credentials.token,
        region_name=region,
    )
    network = private_network(session)

    stack = create_stack(
        session,
        "keyrotation-endpoints",
        "vpc-endpoints.yaml",
        VpcId=network.vpc,
        SubnetIds=",".join(network.subnets),
        RouteTableIds=network.route_table,
        FunctionSecurityGroupId=network.security_group,
        CreateSMTPEndpoints=optional,
        CreateSNSEndpoint=optional,
    )

    ec2 = session.client("ec2")
    endpoints = ec2.describe_vpc_endpoints()["VpcEndpoints"]
    assert {e["ServiceName"] for e in endpoints} == expected
    for endpoint in endpoints:
        assert endpoint["VpcId"] == network.vpc
        if endpoint["VpcEndpointType"] == "Gateway":
            assert endpoint["RouteTableIds"] == [network.route_table]
        else:
            assert sorted(endpoint["SubnetIds"]) == sorted(network.subnets)
            assert endpoint["PrivateDnsEnabled"] is True
    (group,) = [o["OutputValue"] for o in stack["Outputs"]]
    (described,) = ec2.describe_security_groups(GroupIds=[group])["SecurityGroups"]
    sources = {
        (rule["FromPort"], pair["GroupId"])
        for rule in described["IpPermissions"]
        for pair in rule["UserIdGroupPairs"]
    }
    ports = {443, 587, 465} if optional == "true" else {443}
    assert sources == {(port, network.security_group) for port in ports}


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
    central = deployment.security.session
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
    # carol is exempt; its summary goes to the stack's topic.
    sqs = deployment.security.session.client("sqs")
    queue = sqs.create_queue(QueueName="kr-summaries")["QueueUrl"]
    deployment.security.session.client("sns").subscribe(
        TopicArn=deployment.parameters["SummaryTopicArn"],
        Protocol="sqs",
        Endpoint=sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"],
    )
    owner = "payments-team@example.com"
    workload.session.client("iam").tag_user(
        UserName="alice", Tags=[{"Key": SETTINGS["ResourceOwnerTag"], "Value": owner}]
    )
    deployment.run_as("RotationFunction", monkeypatch)
    report = lambda_handlers.rotation(workload_job, None)
    (published,) = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
    summary = json.loads(json.loads(published["Body"])["Message"])
    assert (summary["account_id"], summary["mode"]) == (workload.account_id, "enforce")

    assert report["mode"] == "enforce" and not report["failed"], report["errors"]
    assert [(o["user"], o["action"]) for o in report["outcomes"]] == [("alice", "ROTATE")]
    keys = keys_of(workload, "alice")
    assert len(keys) == 2 and keys[old_alice] == "Active"
    deactivation = (org.now + timedelta(days=int(SETTINGS["InactiveBuffer"]))).date()
    assert f"to be deactivated on {deactivation}" in report["outcomes"][0]["detail"]
    assert len(keys_of(workload, "bob")) == 1 and len(keys_of(workload, "carol")) == 1

    # Then the notifier sends the account's email through the SMTP server, from the admin
    # address, logging in with the SSM parameters; alice's owner gets a mail of its own about
    # alice only.
    payload, owner_payload = sorted(
        invokes.to(notifier_function), key=lambda p: p["email"] != workload.email
    )
    assert owner_payload["email"] == owner and report["owner_mails"] == {
        owner: f"handed to {notifier_function}"
    }
    assert [e["user"] for e in owner_payload["template_values"]["entries"]] == ["alice"]
    # The account's page lists every user, so only the account email links to it.
    assert "report_page" in payload and "report_page" not in owner_payload
    assert payload["email_template"] == SETTINGS["EmailTemplateEnforce"]
    deployment.run_as("NotifierFunction", monkeypatch)
    assert lambda_handlers.notifier(payload, None) == {"status": "sent"}

    (email,) = deployment.mailbox.messages
    assert deployment.mailbox.logins == [(USER, True)]
    assert email["From"] == ADMIN
    assert deployment.mailbox.recipients == [[workload.email]]
    assert workload.account_id in email["Subject"]
    body = email.get_body(("html",)).get_content()
    assert old_alice in body
    assert not ses_backends[deployment.security.account_id]["us-east-1"].sent_messages

    # And the email links to the account's page, written beside its rows in the bucket.
    day = datetime.now(UTC).date()
    page_key = f"{PREFIX}/Reports/dt={day}/{workload.account_id}.html"
    assert report["report_page"] == payload["report_page"] == page_key
    assert report_objects(deployment) == {page_key, page_key.replace(".html", ".json")}
    link = link_in(body)
    assert int(parse_qs(urlsplit(link).query)["X-Amz-Expires"][0]) == 3600
    page = fetch(link)
    assert f"Access key compliance report, {day}" in page
    workload_keys = {k for u in ("alice", "bob", "carol") for k in keys_of(workload, u)}
    assert len(workload_keys) == 4 and all(key_id in page for key_id in workload_keys)
    rows = read_object(deployment, page_key.replace(".html", ".json"))
    assert secret_of(workload, "alice", central)["SecretAccessKey"] not in page + rows + body

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
        assert secret_of(workload, user, central)["SecretAccessKey"] not in log
    assert PASSWORD not in log


@dataclass
class Network:
    vpc: str
    subnets: list[str]
    route_table: str
    security_group: str


def private_network(session: boto3.Session) -> Network:
    """A VPC with two subnets, their route table, and the functions' security group."""
    ec2 = session.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
    zones = [z["ZoneName"] for z in ec2.describe_availability_zones()["AvailabilityZones"]]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.20.{n}.0/24", AvailabilityZone=zone)["Subnet"][
            "SubnetId"
        ]
        for n, zone in enumerate(zones[:2])
    ]
    route_table = ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
    for subnet in subnets:
        ec2.associate_route_table(RouteTableId=route_table, SubnetId=subnet)
    group = ec2.create_security_group(
        GroupName="keyrotation-functions", Description="keyrotation functions", VpcId=vpc
    )["GroupId"]
    return Network(vpc, subnets, route_table, group)


def test_inventory_writes_the_finished_days_organization_page(deployment, monkeypatch):
    org, security, workload = deployment.org, deployment.security, deployment.workload
    security.session.client("iam").create_user(UserName="deployer")
    security.session.client("iam").create_access_key(UserName="deployer")
    jobs = {j["account"]: j for j in start_jobs(deployment, monkeypatch)}
    today = datetime.now(UTC).date()
    page_key = f"{PREFIX}/Reports/dt={today}/report.html"

    # Given today's jobs of two accounts of three have run, and the management account's has not.
    deployment.run_as("RotationFunction", monkeypatch)
    for account in (security, workload):
        assert not lambda_handlers.rotation(jobs[account.account_id], None)["errors"]

    # When tomorrow's inventory runs: it pages the finished day, showing the gap.
    deployment.run_as("InventoryFunction", monkeypatch)
    tomorrow = datetime.now(UTC) + timedelta(days=1)
    result = entrypoints.inventory({}, now=tomorrow)

    assert result["report"] == page_key
    page = read_object(deployment, page_key)
    missing = re.findall(r'<tr class="missing">\s*<td>[^<]*</td><td>(\d{12})</td>', page)
    assert missing == [org.management_id]
    assert f"account {org.management_id} (" in page and f"no report rows for {today}" in page
    assert every_key(security) | every_key(workload) <= set(re.findall(r"AKIA[A-Z0-9]{16}", page))

    # Then, once the late job has run too, the next inventory's page has every account.
    deployment.run_as("RotationFunction", monkeypatch)
    assert not lambda_handlers.rotation(jobs[org.management_id], None)["errors"]
    deployment.run_as("InventoryFunction", monkeypatch)
    assert entrypoints.inventory({}, now=tomorrow)["report"] == page_key

    page = read_object(deployment, page_key)
    assert 'class="missing"' not in page
    shown = set(re.findall(r"AKIA[A-Z0-9]{16}", page))
    assert every_key(security) | every_key(workload) | every_key(org) == shown
    for account_id in (org.management_id, security.account_id, workload.account_id):
        assert f"<td>{account_id}</td>" in page


def test_report_write_that_fails_leaves_the_rotation_done_and_the_email_sent(
    deployment, monkeypatch, faults, capsys
):
    workload = deployment.workload
    old_alice = workload.key_ids["alice"][0]
    jobs = {j["account"]: j for j in start_jobs(deployment, monkeypatch)}
    faults.fail("s3", "PutObject", match="/Reports/")

    deployment.run_as("RotationFunction", monkeypatch)
    report = lambda_handlers.rotation(jobs[workload.account_id], None)

    assert faults.fired
    assert [(o["user"], o["action"], o["status"]) for o in report["outcomes"]] == [
        ("alice", "ROTATE", "done")
    ]
    assert len(keys_of(workload, "alice")) == 2
    assert not report["failed"] and report["report_page"] == ""
    assert [e for e in report["errors"] if e.startswith("compliance report not written")]
    assert report_objects(deployment) == set()
    logged = [
        line for line in log_lines_of(capsys.readouterr().err) if line.get("level") == "ERROR"
    ]
    assert [line["account"] for line in logged if line["event"] == "report not written"] == [
        workload.account_id
    ]

    (payload,) = deployment.invokes.to(deployment.outputs["NotifierFunctionName"])
    assert "report_page" not in payload
    deployment.run_as("NotifierFunction", monkeypatch)
    assert lambda_handlers.notifier(payload, None) == {"status": "sent"}
    (email,) = deployment.mailbox.messages
    body = email.get_body(("html",)).get_content()
    assert old_alice in body and "href=" not in body


def start_jobs(deployment: Deployment, monkeypatch) -> list[dict[str, Any]]:
    deployment.run_as("InventoryFunction", monkeypatch)
    lambda_handlers.inventory({}, None)
    return deployment.invokes.to(deployment.outputs["RotationFunctionName"])


def every_key(account) -> set[str]:
    iam = account.session.client("iam")
    return {
        key["AccessKeyId"]
        for user in iam.list_users()["Users"]
        for key in iam.list_access_keys(UserName=user["UserName"])["AccessKeyMetadata"]
    }


def report_objects(deployment: Deployment) -> set[str]:
    listed = deployment.security.session.client("s3").list_objects_v2(
        Bucket=deployment.parameters["S3BucketName"], Prefix=f"{PREFIX}/Reports/"
    )
    return {item["Key"] for item in listed.get("Contents", [])}


def read_object(deployment: Deployment, key: str) -> str:
    s3 = deployment.security.session.client("s3")
    body = s3.get_object(Bucket=deployment.parameters["S3BucketName"], Key=key)["Body"]
    return body.read().decode()


def link_in(body: str) -> str:
    (href,) = re.findall(r'href="([^"]+)"', body)
    return html.unescape(href)


def fetch(url: str) -> str:
    """GET over HTTP, as the mail reader's browser would; the URL points at moto's server.

    moto's server does not check a presigned URL's signature or expiry; AWS does both."""
    assert urlsplit(url).hostname == "127.0.0.1", url
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode()


def test_central_secrets_are_encrypted_with_the_stacks_key_and_replicated(deployment, monkeypatch):
    workload, central = deployment.workload, deployment.security.session
    deployment.run_as("RotationFunction", monkeypatch)

    report = lambda_handlers.rotation(job(workload), None)

    assert [(o["user"], o["action"]) for o in report["outcomes"]] == [("alice", "ROTATE")]
    name = f"{central_prefix(workload.account_id)}{secret_name('alice')}"
    described = central.client("secretsmanager").describe_secret(SecretId=name)
    assert described["KmsKeyId"] == CENTRAL_KEY_ALIAS
    kms = central.client("kms")
    (alias,) = [a for a in kms.list_aliases()["Aliases"] if a["AliasName"] == CENTRAL_KEY_ALIAS]
    # moto's CloudFormation keeps the key policy as a dict, and DescribeKey then fails.
    assert deployment.outputs["SecretsKeyArn"].endswith(f":key/{alias['TargetKeyId']}")
    regions = SETTINGS["CredentialReplicationRegions"].split(",")
    assert sorted(r["Region"] for r in described["ReplicationStatus"]) == regions
    for region in regions:
        replica = central.client("secretsmanager", region_name=region).get_secret_value(
            SecretId=name, VersionStage="AWSCURRENT"
        )
        assert json.loads(replica["SecretString"]) == secret_of(workload, "alice", central)
    # The member account keeps no secret of its users, only its lock's while a run holds it.
    assert workload.session.client("secretsmanager").list_secrets()["SecretList"] == []


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
