"""The CloudFormation templates as written: settings reach the code both ways, keys agree, lint.

A known deployment of this design passed InactiveBuffer under one name while the code read
another, so the grace period silently fell back to a default. These tests read the template
and the code's own names, so a parameter or an environment variable cannot drift alone.
"""

from __future__ import annotations

import importlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import pytest
from cfnlint.decode.cfn_yaml import load

from keyrotation import packaging
from keyrotation.compliance.s3 import ReportStore
from keyrotation.handlers import entrypoints
from keyrotation.handlers.lambda_handlers import VPC_ACTIONS
from keyrotation.notify.render import template_s3_key
from keyrotation.settings import NAMES, Settings

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
TEMPLATES = ("main.yaml", "member-role.yaml", "management-role.yaml", "vpc-endpoints.yaml")

# Each function of the main stack, and what it reads from its environment besides the settings.
FUNCTIONS = {
    "InventoryFunction": entrypoints.INVENTORY_ENVIRONMENT,
    "RotationFunction": entrypoints.ROTATION_ENVIRONMENT,
    "NotifierFunction": entrypoints.NOTIFIER_ENVIRONMENT,
}
# Environment variables whose value is a resource of the stack rather than a parameter.
FROM_RESOURCES = {
    entrypoints.ROTATION_FUNCTION: {"Ref": "RotationFunction"},
    entrypoints.NOTIFIER_FUNCTION: {"Ref": "NotifierFunction"},
}
# Parameters of the main stack that configure the deployment, not the code, and where they go.
DEPLOYMENT_PARAMETERS = {
    "LambdaPackageName": "the functions' Code.S3Key",
    "ExecutionRoleName": "the rotation and inventory role names",
    "AWSOrgID": "the rotation role's condition on the member roles",
    "DailySchedule": "the schedule's expression",
    "LogRetentionInDays": "the log groups' retention",
    "RunLambdaInVPC": "the functions' VpcConfig",
    "SubnetIds": "the functions' VpcConfig",
    "SecurityGroupIds": "the functions' VpcConfig",
}


def template(name: str) -> dict[str, Any]:
    return load(str(DEPLOY / name))


def resources(name: str, kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template(name)["Resources"].items() if v["Type"] == kind}


def environment(function: str) -> dict[str, Any]:
    return template("main.yaml")["Resources"][function]["Properties"]["Environment"]["Variables"]


@pytest.mark.parametrize("function", FUNCTIONS)
def test_every_setting_and_handler_variable_the_code_reads_is_set_by_the_stack(function):
    expected = set(NAMES) | set(FUNCTIONS[function])

    assert set(environment(function)) == expected


@pytest.mark.parametrize("function", FUNCTIONS)
def test_each_variable_carries_the_parameter_of_the_same_name(function):
    parameters = template("main.yaml")["Parameters"]

    for name, value in environment(function).items():
        if name in FROM_RESOURCES:
            assert value == FROM_RESOURCES[name]
        else:
            assert value == {"Ref": name}, f"{function} sets {name} from {value}"
            assert name in parameters


def test_every_parameter_reaches_the_code_or_configures_a_named_resource():
    parameters = set(template("main.yaml")["Parameters"])
    reaching_code = {
        value["Ref"]
        for function in FUNCTIONS
        for value in environment(function).values()
        if value["Ref"] in parameters
    }

    assert reaching_code | set(DEPLOYMENT_PARAMETERS) == parameters
    assert not reaching_code & set(DEPLOYMENT_PARAMETERS)
    assert set(NAMES) <= reaching_code


def test_parameter_defaults_are_the_code_defaults():
    parameters = template("main.yaml")["Parameters"]
    defaults = Settings()

    for name in NAMES:
        if "Default" not in parameters[name]:
            continue  # required at deploy time, such as AdminEmailAddress
        default = parameters[name]["Default"]
        expected = getattr(defaults, name)
        if expected is None:
            assert default == "", name
        elif isinstance(expected, bool):
            assert default == str(expected), name
        else:
            assert type(expected)(default) == expected, name
    assert parameters["S3BucketPrefix"]["Default"] == entrypoints.DEFAULT_PREFIX


def test_the_readme_tables_name_every_setting_and_every_stack_parameter():
    settings = _first_column(_readme_section("## Settings"))
    parameters = _first_column(_readme_section("### Settings and stack parameters"))

    assert set(NAMES) - settings == set()
    assert set(template("main.yaml")["Parameters"]) - parameters == set()


def _readme_section(heading: str) -> str:
    readme = (DEPLOY.parent / "README.md").read_text(encoding="utf-8")
    return readme.split(f"\n{heading}\n", 1)[1].split("\n#", 1)[0]


def _first_column(section: str) -> set[str]:
    """The names in the first cell of each table row, such as `SMTPHost`, `SMTPPort`."""
    cells = [line.split("|")[1] for line in section.splitlines() if line.startswith("| ")]
    return {name.strip(" `") for cell in cells for name in re.split(r"[,/]", cell)}


def test_the_handlers_named_by_the_stack_exist_and_run_on_the_packaged_runtime():
    for function in FUNCTIONS:
        properties = template("main.yaml")["Resources"][function]["Properties"]
        module, _, name = properties["Handler"].rpartition(".")

        assert callable(getattr(importlib.import_module(module), name))
        assert properties["Runtime"] == packaging.LAMBDA_RUNTIME
        assert properties["Architectures"] == ["x86_64"]
        assert "x86_64" in packaging.LAMBDA_PLATFORM


def test_the_code_key_is_the_key_the_package_writes():
    for function in FUNCTIONS:
        code = template("main.yaml")["Resources"][function]["Properties"]["Code"]

        assert code["S3Bucket"] == {"Ref": "S3BucketName"}
        assert code["S3Key"] == {
            "Fn::Sub": packaging.lambda_s3_key("${S3BucketPrefix}", "${LambdaPackageName}")
        }


def test_the_notifier_may_read_exactly_the_template_keys_and_report_pages_it_reads():
    role = template("main.yaml")["Resources"]["NotifierRole"]["Properties"]
    reads = [
        s["Resource"]
        for p in role["Policies"]
        for s in p["PolicyDocument"]["Statement"]
        if s.get("Action") == "s3:GetObject"  # a conditional statement is an Fn::If
    ]
    templates = template_s3_key("${S3BucketPrefix}", "name.html").removesuffix("name.html")
    reports = ReportStore(boto3.Session(region_name="us-east-1"), "b", "${S3BucketPrefix}").root

    assert sorted(r["Fn::Sub"] for r in reads) == sorted(
        f"arn:${{AWS::Partition}}:s3:::${{S3BucketName}}/{folder}*"
        for folder in (templates, reports)
    )


def test_report_grants_are_scoped_to_the_report_folder():
    reports = ReportStore(boto3.Session(region_name="us-east-1"), "b", "${S3BucketPrefix}").root
    bucket = "arn:${AWS::Partition}:s3:::${S3BucketName}"

    for role in ("InventoryRole", "RotationRole", "NotifierRole"):
        properties = template("main.yaml")["Resources"][role]["Properties"]
        statements = [s for p in properties["Policies"] for s in p["PolicyDocument"]["Statement"]]
        found = [s for s in statements if "Report" in s.get("Sid", "")]
        assert found, role
        for statement in found:
            if statement["Action"] == "s3:ListBucket":
                assert statement["Resource"] == {"Fn::Sub": bucket}
                prefix = statement["Condition"]["StringLike"]["s3:prefix"]
                assert prefix == {"Fn::Sub": f"{reports}*"}
            else:
                assert statement["Resource"] == {"Fn::Sub": f"{bucket}/{reports}*"}


def test_the_notifier_may_read_the_two_smtp_parameters_only_when_they_are_set():
    main = template("main.yaml")
    role = main["Resources"]["NotifierRole"]["Properties"]
    conditional = [
        s["Fn::If"]
        for p in role["Policies"]
        for s in p["PolicyDocument"]["Statement"]
        if "Fn::If" in s and s["Fn::If"][0] == "LogInToSMTP"
    ]
    ssm = "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter"
    arns = [{"Fn::Sub": f"{ssm}${{{n}}}"} for n in ("SMTPUserParamName", "SMTPPasswordParamName")]

    assert [(c, s["Action"], o) for c, s, o in conditional] == [
        ("LogInToSMTP", "ssm:GetParameter", {"Ref": "AWS::NoValue"}),
        ("LogInToSMTP", "kms:Decrypt", {"Ref": "AWS::NoValue"}),
    ]
    (read, decrypt) = (statement for _, statement, _ in conditional)
    assert read["Resource"] == arns
    assert decrypt["Condition"]["StringEquals"]["kms:EncryptionContext:PARAMETER_ARN"] == arns
    assert main["Conditions"]["LogInToSMTP"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "SMTPPasswordParamName"}, ""]}]
    }


def test_in_a_vpc_every_function_gets_the_subnets_and_its_role_may_manage_their_interfaces():
    main = template("main.yaml")
    eni_statements = {
        role: [
            s["Fn::If"]
            for p in main["Resources"][role]["Properties"]["Policies"]
            for s in p["PolicyDocument"]["Statement"]
            if "Fn::If" in s and s["Fn::If"][0] == "InVPC"
        ]
        for role in ("InventoryRole", "RotationRole", "NotifierRole")
    }

    for function in FUNCTIONS:
        properties = main["Resources"][function]["Properties"]
        assert properties["VpcConfig"] == {
            "Fn::If": [
                "InVPC",
                {
                    "SubnetIds": {"Ref": "SubnetIds"},
                    "SecurityGroupIds": {"Ref": "SecurityGroupIds"},
                },
                {"Ref": "AWS::NoValue"},
            ]
        }
        statements = eni_statements[properties["Role"]["Fn::GetAtt"][0]]
        assert all(otherwise == {"Ref": "AWS::NoValue"} for _, _, otherwise in statements)
        assert {a for _, statement, _ in statements for a in statement["Action"]} == VPC_ACTIONS
    assert main["Parameters"]["RunLambdaInVPC"]["Default"] == "false"
    assert {"Fn::Equals": [{"Ref": "RunLambdaInVPC"}, "true"]} in main["Conditions"]["InVPC"][
        "Fn::And"
    ]


def test_failed_jobs_go_to_the_queue_after_retries():
    configs = resources("main.yaml", "AWS::Lambda::EventInvokeConfig")
    queue = {"Fn::GetAtt": ["FailedJobsQueue", "Arn"]}

    assert {c["Properties"]["FunctionName"]["Ref"] for c in configs.values()} == set(FUNCTIONS)
    for config in configs.values():
        properties = config["Properties"]
        assert properties["DestinationConfig"]["OnFailure"]["Destination"] == queue
        assert 0 <= properties["MaximumRetryAttempts"] <= 2
    (schedule,) = resources("main.yaml", "AWS::Scheduler::Schedule").values()
    assert schedule["Properties"]["Target"]["DeadLetterConfig"]["Arn"] == queue
    assert schedule["Properties"]["Target"]["Arn"] == {"Fn::GetAtt": ["InventoryFunction", "Arn"]}


def test_the_member_template_names_nothing_that_must_be_unique_across_aws():
    for kind in ("AWS::S3::Bucket", "AWS::SNS::Topic", "AWS::SQS::Queue", "AWS::Logs::LogGroup"):
        assert not resources("member-role.yaml", kind), kind
    (role,) = resources("member-role.yaml", "AWS::IAM::Role").values()
    assert role["Properties"]["RoleName"] == {"Ref": "IAMRoleName"}


def test_the_exemption_group_can_be_left_to_an_existing_one():
    (group,) = resources("member-role.yaml", "AWS::IAM::Group").values()
    conditions = template("member-role.yaml")["Conditions"]

    assert conditions[group["Condition"]] == {
        "Fn::Equals": [{"Ref": "CreateExemptionGroup"}, "true"]
    }


def test_the_member_role_trusts_only_the_rotation_role_of_the_primary_account():
    (role,) = resources("member-role.yaml", "AWS::IAM::Role").values()
    (trust,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    rotation_role = template("main.yaml")["Resources"]["RotationRole"]["Properties"]

    assert trust["Principal"] == {
        "AWS": {
            "Fn::Sub": "arn:${AWS::Partition}:iam::${PrimaryAccountID}:role/${ExecutionRoleName}"
        }
    }
    assert rotation_role["RoleName"] == {"Ref": "ExecutionRoleName"}
    assert (
        template("main.yaml")["Parameters"]["IAMRoleName"]["Default"]
        == (template("member-role.yaml")["Parameters"]["IAMRoleName"]["Default"])
    )


def test_the_management_role_trusts_only_the_inventory_role():
    (role,) = resources("management-role.yaml", "AWS::IAM::Role").values()
    (trust,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    inventory_role = template("main.yaml")["Resources"]["InventoryRole"]["Properties"]
    suffix = inventory_role["RoleName"]["Fn::Sub"].removeprefix("${ExecutionRoleName}")

    assert trust["Principal"]["AWS"]["Fn::Sub"].endswith(f":role/${{ExecutionRoleName}}{suffix}")


@pytest.mark.parametrize("name", TEMPLATES)
def test_cfn_lint_reports_nothing(name):
    cfn_lint = Path(sys.executable).with_name("cfn-lint")

    result = subprocess.run(
        [str(cfn_lint), "--include-checks", "I", "--", str(DEPLOY / name)],
        capture_output=True,
        text=True,
        check=False,
    )

    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_checkov_passes_with_each_suppression_explained():
    """checkov pins older boto3 and botocore, so it lives outside the project's venv."""
    checkov = os.environ.get("KEYROTATION_CHECKOV") or shutil.which("checkov")
    if not checkov:
        pytest.skip("checkov is not installed; set KEYROTATION_CHECKOV to its path")
    for name in TEMPLATES:
        for resource in template(name)["Resources"].values():
            for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", []):
                assert len(skip.get("comment", "")) > 40, f"{skip['id']} has no reason"
    offline = {"CKV_SKIP_PACKAGE_UPDATE_CHECK": "true", "BC_SKIP_MAPPING": "TRUE"}

    command = [checkov, "--quiet", "--compact", "--skip-download", "-d", str(DEPLOY)]

    result = subprocess.run(
        [*command, "--framework", "cloudformation"],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **offline},
    )

    assert result.returncode == 0, result.stdout + result.stderr
