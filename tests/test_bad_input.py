"""Every kind of bad input in one table: one clear line, no traceback, nothing changed.

Add a row to BAD_INPUT for a new case. Each row names where the input goes (a rotation event,
a notifier event, settings, a template name, or the command line), the input, and a piece of
the one-line message. After each row the test checks that the account's keys are unchanged.
"""

from __future__ import annotations

import pytest

from keyrotation.errors import InputError, TemplateError
from keyrotation.handlers import entrypoints
from keyrotation.notify.render import load_local, template_s3_key
from keyrotation.settings import load_settings
from tests.orgs import KeySpec, UserSpec, keys_of
from tests.test_cli import cli
from tests.test_handlers import TEMPLATE_VALUES as GOOD_VALUES
from tests.test_handlers import stack_environment

# (case, where, input, message)
BAD_INPUT = [
    ("no account", "rotation", {"name": "n", "email": "o@example.com"}, "'account' is missing"),
    (
        "short account",
        "rotation",
        {"account": "1234", "name": "n", "email": "o@example.com"},
        "12-digit",
    ),
    (
        "account as number",
        "rotation",
        {"account": 123456789012, "name": "n", "email": "o@example.com"},
        "'account'",
    ),
    ("bad email", "rotation", {"account": "@", "name": "n", "email": "nobody"}, "'email'"),
    (
        "email with a newline",
        "rotation",
        {"account": "@", "name": "n", "email": "o@example.com\n"},
        "'email'",
    ),
    (
        "typo in a field",
        "rotation",
        {"account": "@", "name": "n", "email": "o@example.com", "ForceRotat": "alice"},
        "unknown field 'ForceRotat'",
    ),
    (
        "ForceRotate not a name",
        "rotation",
        {"account": "@", "name": "n", "email": "o@example.com", "ForceRotate": 7},
        "'ForceRotate'",
    ),
    (
        "ForceRotate of nobody",
        "rotation",
        {"account": "@", "name": "n", "email": "o@example.com", "ForceRotate": "nobody"},
        "nobody",
    ),
    (
        "dryrun as a number",
        "rotation",
        {"account": "@", "name": "n", "email": "o@example.com", "dryrun": 1},
        "'dryrun'",
    ),
    ("event not an object", "rotation", ["account"], "expected a JSON object"),
    (
        "notifier without values",
        "notify",
        {"email": "o@example.com", "subject": "s", "email_template": "audit.html"},
        "'template_values' is missing",
    ),
    (
        "notifier template with a folder",
        "notify",
        {
            "email": "o@example.com",
            "subject": "s",
            "email_template": "../audit.html",
            "template_values": GOOD_VALUES,
        },
        "without folders",
    ),
    (
        "notifier link to something not a report page",
        "notify",
        {
            "email": "o@example.com",
            "subject": "s",
            "email_template": "audit.html",
            "template_values": GOOD_VALUES,
            "report_page": "asa/asa-iam-rotation/Template/audit.html",
        },
        "'report_page'",
    ),
    ("setting out of cycle", "settings", {"RotationPeriod": "15"}, "RotationPeriod"),
    ("setting of the wrong type", "settings", {"InactiveBuffer": "ten"}, "InactiveBuffer"),
    ("unknown setting", "settings", {"RotationPeriodDays": "30"}, "did you mean"),
    ("SMTP host with a scheme", "settings", {"SMTPHost": "smtp://mail.example.com"}, "SMTPHost"),
    ("SMTP port out of range", "settings", {"SMTPPort": "70000"}, "SMTPPort"),
    ("SMTP without TLS", "settings", {"SMTPSecurity": "none"}, "SMTPSecurity"),
    (
        "SMTP user without password",
        "settings",
        {"SMTPHost": "mail.example.com", "SMTPUserParamName": "/kr/user"},
        "SMTPPasswordParamName: must be set too",
    ),
    (
        "SMTP login without host",
        "settings",
        {"SMTPUserParamName": "/kr/user", "SMTPPasswordParamName": "/kr/password"},
        "SMTPHost: must be set",
    ),
    (
        "SMTP parameter name not a path",
        "settings",
        {
            "SMTPHost": "mail.example.com",
            "SMTPUserParamName": "kr-user",
            "SMTPPasswordParamName": "/kr/password",
        },
        "SMTPUserParamName: must be an SSM parameter name starting with /",
    ),
    (
        "owner tag with markup",
        "settings",
        {"ResourceOwnerTag": "<owner>"},
        "ResourceOwnerTag: must be a tag key",
    ),
    ("owner tag of this tool", "settings", {"ResourceOwnerTag": "keyrotation:x"}, "reserved"),
    (
        "topic not an ARN",
        "settings",
        {"SummaryTopicArn": "my-topic"},
        "SummaryTopicArn: must be an SNS topic ARN",
    ),
    (
        "FIFO topic",
        "settings",
        {"SummaryTopicArn": "arn:aws:sns:us-east-1:111122223333:kr.fifo"},
        "not a FIFO one",
    ),
    (
        "central storage not a flag",
        "settings",
        {"StoreSecretsInCentralAccount": "perhaps"},
        "StoreSecretsInCentralAccount",
    ),
    (
        "replica region misspelt",
        "settings",
        {"CredentialReplicationRegions": "eu-west-1,Europe"},
        "'Europe' is not a region name",
    ),
    (
        "replica region twice",
        "settings",
        {"CredentialReplicationRegions": "eu-west-1, eu-west-1"},
        "names a region twice",
    ),
    ("hold flag not a boolean", "settings", {"HoldWhileInUse": "sometimes"}, "HoldWhileInUse"),
    ("hold longer than the cycle", "settings", {"MaxHoldDays": "75"}, "MaxHoldDays"),
    ("hold of no days", "settings", {"MaxHoldDays": "0"}, "MaxHoldDays"),
    ("template path", "template", "../../etc/passwd", "without folders"),
    ("template missing", "template", "absent.html", "not found"),
    ("CLI date", "cli", ["run", "--as-of", "tomorrow"], "--as-of expects a date"),
    ("CLI setting", "cli", ["run", "--set", "DryRunFlag=perhaps"], "DryRunFlag"),
    ("CLI unknown account", "cli", ["run", "--account", "000000000000"], "not in the organization"),
    (
        "report to a missing folder",
        "cli",
        ["report", "--format", "csv", "--output", "/nonexistent/x.csv"],
        "folder /nonexistent does not exist",
    ),
    (
        "report into a file, not a folder",
        "cli",
        ["report", "--format", "csv", "--output", "/dev/null/x.csv"],
        "/dev/null is not a folder",
    ),
    (
        "report to a folder",
        "cli",
        ["report", "--format", "csv", "--output", "/tmp"],
        "it is a folder",
    ),
    (
        "report to a full device",
        "cli",
        ["report", "--format", "csv", "--output", "/dev/full"],
        "--output /dev/full cannot be written: No space left on device",
    ),
]


@pytest.mark.parametrize(
    ("where", "given", "message"),
    [pytest.param(w, g, m, id=case) for case, w, g, m in BAD_INPUT],
)
def test_bad_input_gets_one_clear_line_and_changes_nothing(org, monkeypatch, where, given, message):
    account = org.account([UserSpec("alice", (KeySpec(95),))])
    before = keys_of(account, "alice")
    if isinstance(given, dict) and given.get("account") == "@":
        given = {**given, "account": account.account_id}

    text = _feed(org, monkeypatch, where, given)

    assert message in text
    assert "\n" not in text.strip() and "Traceback" not in text
    assert keys_of(account, "alice") == before


def _feed(org, monkeypatch, where, given) -> str:
    if where == "cli":
        return _cli(org, given)
    environ = stack_environment(NotifierFunctionName="")
    errors = (InputError, TemplateError)
    with pytest.raises(errors) as raised:
        if where == "rotation":
            entrypoints.rotate_account(given, org.session, environ)
        elif where == "notify":
            entrypoints.notify(given, org.session, environ)
        elif where == "settings":
            load_settings(environ={}, overrides=given)
        else:
            load_local(given)
            template_s3_key("prefix", given)
    return str(raised.value)


def _cli(org, args) -> str:
    credentials = org.session.get_credentials().get_frozen_credentials()
    outbox = ["--outbox", str(org.outbox)] if args[0] == "run" else []
    result = cli(*args, *outbox, credentials=credentials)
    assert result.returncode == 2, result.stdout + result.stderr
    return result.stderr.strip()


def test_a_template_that_does_not_parse_stops_the_run_before_any_change(org, tmp_path):
    account = org.account([UserSpec("alice", (KeySpec(95),))])
    before = keys_of(account, "alice")
    (tmp_path / "broken.html").write_text("<p>{{ account_id </p>", encoding="utf-8")

    run = ["run", "--enforce", "--template-dir", str(tmp_path), "--account", account.account_id]
    text = _cli(org, [*run, "--set", "EmailTemplateEnforce=broken.html"])

    assert "'broken.html' does not parse: line 1" in text and "\n" not in text
    assert keys_of(account, "alice") == before
