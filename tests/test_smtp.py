"""Email over SMTP: a local aiosmtpd server receives it over STARTTLS or TLS, with the login
read from SSM SecureString parameters on moto's server, and the password in no log or error."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from keyrotation.errors import NotificationError
from keyrotation.handlers import entrypoints
from keyrotation.notify.deliver import deliver
from keyrotation.notify.render import load_local
from keyrotation.notify.senders import SesSender, mail_sender
from keyrotation.notify.smtp import SmtpSender
from keyrotation.notify.unsent import FolderStore
from keyrotation.pipeline import RunContext, run_organization
from tests.mailserver import HOST, PASSWORD, USER, make_certificates, smtp_server
from tests.orgs import ADMIN, KeySpec, UserSpec, keys_of
from tests.test_cli import cli
from tests.test_handlers import stack_environment

USER_PARAMETER = "/keyrotation/smtp/user"
PASSWORD_PARAMETER = "/keyrotation/smtp/password"


@pytest.fixture
def login(org):
    ssm = org.session.client("ssm")
    ssm.put_parameter(Name=USER_PARAMETER, Value=USER, Type="String")
    ssm.put_parameter(Name=PASSWORD_PARAMETER, Value=PASSWORD, Type="SecureString")


def smtp_settings(org, port: int, security: str, **values: str):
    return org.settings(
        SMTPHost=HOST,
        SMTPPort=port,
        SMTPSecurity=security,
        SMTPUserParamName=USER_PARAMETER,
        SMTPPasswordParamName=PASSWORD_PARAMETER,
        **values,
    )


def notifier_with(sender, sent: list[str] | None = None):
    def send(notification):
        result = deliver(notification, load_local(notification.template), sender)
        if sent is not None:
            sent.append("\n".join(notification.values["actions"]))
        return result

    return send


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_an_account_email_arrives_over_smtp_with_the_login_from_ssm(
    org, certificates, login, caplog, capsys, security
):
    account = org.account([UserSpec("alice", (KeySpec(95),))])
    old_key = account.key_ids["alice"][0]

    with smtp_server(certificates, security) as mailbox:
        settings = smtp_settings(org, mailbox.port, security, DryRunFlag=False)
        sender = mail_sender(org.session, settings)
        context = RunContext(settings, datetime.now(UTC))
        report = run_organization(org.session, context, notifier_with(sender), [account.account_id])

    assert isinstance(sender, SmtpSender)
    assert report.clean and report.accounts[0].notification == "sent"
    assert mailbox.logins == [(USER, True)]
    (message,) = mailbox.messages
    assert mailbox.recipients == [[account.email]]
    assert message["From"] == ADMIN and message["To"] == account.email
    assert account.account_id in message["Subject"]
    html = message.get_body(("html",)).get_content()
    text = message.get_body(("plain",)).get_content()
    assert old_key in html and old_key in text
    assert PASSWORD not in caplog.text + "".join(capsys.readouterr())


def test_the_password_is_read_at_send_time(org, certificates, login):
    with smtp_server(certificates, "starttls") as mailbox:
        sender = mail_sender(org.session, smtp_settings(org, mailbox.port, "starttls"))
        org.session.client("ssm").put_parameter(
            Name=PASSWORD_PARAMETER, Value="changed", Type="SecureString", Overwrite=True
        )

        with pytest.raises(NotificationError) as raised:
            sender.send("owner@example.com", "subject", "<p>html</p>", "text")

    # smtplib tries each mechanism the server offers; each is refused.
    assert mailbox.logins and not any(accepted for _, accepted in mailbox.logins)
    assert not mailbox.messages
    assert "535" in str(raised.value) and "changed" not in str(raised.value)


def test_a_password_stored_as_plain_string_is_refused(org, certificates):
    ssm = org.session.client("ssm")
    ssm.put_parameter(Name=USER_PARAMETER, Value=USER, Type="String")
    ssm.put_parameter(Name=PASSWORD_PARAMETER, Value=PASSWORD, Type="String")

    with smtp_server(certificates, "starttls") as mailbox:
        sender = mail_sender(org.session, smtp_settings(org, mailbox.port, "starttls"))
        with pytest.raises(NotificationError, match="SecureString") as raised:
            sender.send("owner@example.com", "subject", "<p>html</p>", "text")

    assert not mailbox.logins and PASSWORD not in str(raised.value)


def test_a_missing_login_parameter_names_it(org, certificates):
    with smtp_server(certificates, "starttls") as mailbox:
        sender = mail_sender(org.session, smtp_settings(org, mailbox.port, "starttls"))
        with pytest.raises(NotificationError, match=USER_PARAMETER):
            sender.send("owner@example.com", "subject", "<p>html</p>", "text")

    assert not mailbox.logins and not mailbox.messages


def test_a_server_without_starttls_gets_neither_login_nor_mail(org, certificates, login):
    with smtp_server(certificates, "plain") as mailbox:
        sender = mail_sender(org.session, smtp_settings(org, mailbox.port, "starttls"))
        with pytest.raises(NotificationError, match="STARTTLS"):
            sender.send("owner@example.com", "subject", "<p>html</p>", "text")

    assert not mailbox.logins and not mailbox.messages


def test_a_refusal_without_a_login_names_only_the_settings_in_use(org, certificates):
    with smtp_server(certificates, "plain") as mailbox:
        settings = org.settings(SMTPHost=HOST, SMTPPort=mailbox.port, SMTPSecurity="starttls")
        sender = mail_sender(org.session, settings)
        with pytest.raises(NotificationError) as raised:
            sender.send("owner@example.com", "subject", "<p>html</p>", "text")

    text = str(raised.value)
    assert "not supported by server. Check SMTPHost, SMTPPort and SMTPSecurity." in text
    assert ".." not in text and "SSM" not in text


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_a_certificate_the_client_does_not_trust_gets_neither_login_nor_mail(
    org, certificates, login, monkeypatch, tmp_path, security
):
    other_ca = make_certificates(tmp_path / "other")
    monkeypatch.setenv("SSL_CERT_FILE", str(other_ca.ca_file))

    with smtp_server(certificates, security) as mailbox:
        sender = mail_sender(org.session, smtp_settings(org, mailbox.port, security))
        with pytest.raises(NotificationError, match="CERTIFICATE_VERIFY_FAILED"):
            sender.send("owner@example.com", "subject", "<p>html</p>", "text")

    assert not mailbox.logins and not mailbox.messages


def test_a_failed_smtp_send_keeps_the_lines_for_the_next_email(org, certificates, tmp_path):
    """As for an SES rejection: the change stands, the lines lead the next email."""
    account = org.account([UserSpec("alice", (KeySpec(95),))])
    state = FolderStore(tmp_path / "state")
    ssm = org.session.client("ssm")
    ssm.put_parameter(Name=USER_PARAMETER, Value=USER, Type="String")
    ssm.put_parameter(Name=PASSWORD_PARAMETER, Value="wrong", Type="SecureString")
    sent: list[str] = []

    with smtp_server(certificates, "starttls") as mailbox:
        settings = smtp_settings(org, mailbox.port, "starttls", DryRunFlag=False)
        sender = mail_sender(org.session, settings)
        context = RunContext(settings, datetime.now(UTC), unsent=state)
        first = run_organization(org.session, context, notifier_with(sender), [account.account_id])

        assert not first.clean and first.accounts[0].notification.startswith("failed")
        assert "535" in first.accounts[0].errors[0] and "wrong" not in first.accounts[0].errors[0]
        assert len(keys_of(account, "alice")) == 2, "the change stands"
        assert state.load(account.account_id), "the lines are kept"

        ssm.put_parameter(
            Name=PASSWORD_PARAMETER, Value=PASSWORD, Type="SecureString", Overwrite=True
        )
        second = run_organization(
            org.session, context, notifier_with(sender, sent), [account.account_id]
        )

    assert second.clean and len(mailbox.messages) == 1
    assert len(sent) == 1 and "Not sent before" in sent[0] and "Rotated key" in sent[0]
    assert state.load(account.account_id) == []


def test_a_login_that_is_not_ascii_fails_the_mail_only_and_is_never_shown(
    org, certificates, caplog, capsys
):
    """smtplib sends AUTH as ASCII; its own error would carry the whole login."""
    password = "Z\u00fcrich-s3cret-\u00c4\u00d6\u00dc"
    ssm = org.session.client("ssm")
    ssm.put_parameter(Name=USER_PARAMETER, Value=USER, Type="String")
    ssm.put_parameter(Name=PASSWORD_PARAMETER, Value=password, Type="SecureString")
    account = org.account([UserSpec("alice", (KeySpec(95),))])

    with smtp_server(certificates, "starttls") as mailbox:
        settings = smtp_settings(org, mailbox.port, "starttls", DryRunFlag=False)
        context = RunContext(settings, datetime.now(UTC))
        sender = mail_sender(org.session, settings)
        report = run_organization(org.session, context, notifier_with(sender), [account.account_id])

    (result,) = report.accounts
    assert not result.failed and [o.action.kind.value for o in result.outcomes] == ["ROTATE"]
    assert result.notification.startswith("failed") and "not ASCII" not in result.notification
    assert PASSWORD_PARAMETER in result.errors[0] and "ASCII" in result.errors[0]
    shown = caplog.text + "".join(capsys.readouterr()) + str(result.to_dict())
    assert "s3cret" not in shown and not mailbox.logins


def test_the_notifier_function_sends_over_smtp_when_smtp_host_is_set(
    org, certificates, login, caplog
):
    account = org.account([UserSpec("alice", (KeySpec(95),))])
    values = {
        "account_id": account.account_id,
        "account_name": account.name,
        "timestamp": "2026-12-04 09:00 UTC",
        "actions": ["Rotated key AKIAEXAMPLE of user alice"],
        "rotation_period": 90,
        "installation_grace_period": 10,
        "recovery_grace_period": 10,
        "partition_name": "aws",
    }
    event = {
        "email": account.email,
        "invokedby": "rotation",
        "subject": f"Key rotation for {account.account_id}",
        "email_template": "enforce.html",
        "template_values": values,
    }

    with smtp_server(certificates, "tls") as mailbox:
        environ = stack_environment(
            SMTPHost=HOST,
            SMTPPort=str(mailbox.port),
            SMTPSecurity="tls",
            SMTPUserParamName=USER_PARAMETER,
            SMTPPasswordParamName=PASSWORD_PARAMETER,
        )
        result = entrypoints.notify(event, org.session, environ)

    assert result == {"status": "sent"}
    (message,) = mailbox.messages
    assert "AKIAEXAMPLE" in message.get_body(("html",)).get_content()
    assert PASSWORD not in caplog.text


def test_without_smtp_host_mail_goes_through_ses(org):
    assert isinstance(mail_sender(org.session, org.settings()), SesSender)


def test_the_command_line_sends_over_smtp_without_outbox(org, certificates, login):
    account = org.account([UserSpec("alice", (KeySpec(95),))])
    credentials = org.session.get_credentials().get_frozen_credentials()

    with smtp_server(certificates, "starttls") as mailbox:
        result = cli(
            "run",
            "--enforce",
            "--account",
            account.account_id,
            "--set",
            f"AdminEmailAddress={ADMIN}",
            "--set",
            f"SMTPHost={HOST}",
            "--set",
            f"SMTPPort={mailbox.port}",
            "--set",
            f"SMTPUserParamName={USER_PARAMETER}",
            "--set",
            f"SMTPPasswordParamName={PASSWORD_PARAMETER}",
            credentials=credentials,
        )

    assert result.returncode == 0, result.stdout + result.stderr
    (message,) = mailbox.messages
    assert message["To"] == account.email
    assert PASSWORD not in result.stdout + result.stderr
