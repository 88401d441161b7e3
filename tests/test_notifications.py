"""Emails: one per account with something to tell, rendered escaped, sent or kept."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime

import pytest

from keyrotation.errors import TemplateError
from keyrotation.notify.deliver import deliver
from keyrotation.notify.message import Notification
from keyrotation.notify.render import load_local, render, template_s3_key, text_version
from keyrotation.notify.senders import SesSender
from keyrotation.pipeline import RunContext, run_organization
from tests.orgs import ADMIN, KeySpec, UserSpec, keys_of

VALUES = {
    "partition_name": "aws",
    "account_id": "111122223333",
    "account_name": "Payments <script>alert(1)</script>",
    "timestamp": "2026-12-04 09:00 UTC",
    "actions": ["Rotated key AKIA1 of user a<b>: text", "Deleted key AKIA2 of user c: text"],
    "rotation_period": 90,
    "installation_grace_period": 10,
    "recovery_grace_period": 10,
    "sender_email": "admin@example.com",
}


def test_placeholders_of_customised_templates_still_work_and_values_are_escaped():
    template = (
        "{{partition_name}}|{{account_id}}|{{account_name}}|{{timestamp}}|{{rotation_period}}|"
        "{{installation_grace_period}}|{{recovery_grace_period}}|{{sender_email}}\n{{actions}}"
    )
    html = render(template, VALUES)
    head, body = html.split("\n", 1)
    assert head == (
        "aws|111122223333|Payments &lt;script&gt;alert(1)&lt;/script&gt;|2026-12-04 09:00 UTC|"
        "90|10|10|admin@example.com"
    )
    assert body == (
        "Rotated key AKIA1 of user a&lt;b&gt;: text<br>\nDeleted key AKIA2 of user c: text"
    )


def test_actions_can_be_looped_over_too():
    html = render("{% for line in actions %}<li>{{ line }}</li>{% endfor %}", VALUES)
    assert html.count("<li>") == 2 and "a&lt;b&gt;" in html


@pytest.mark.parametrize("name", ["audit.html", "enforce.html"])
def test_default_templates_render_every_placeholder(name):
    html = render(load_local(name), VALUES)
    for value in ("111122223333", "Payments &lt;script&gt;", "admin@example.com", "AKIA1"):
        assert value in html
    assert "<script>" not in html


@pytest.mark.parametrize("name", ["audit.html", "enforce.html"])
def test_default_templates_link_the_report_page_escaped_or_leave_the_link_out(name):
    link = 'http://127.0.0.1:5000/b/p.html?X-Amz-Expires=3600&X-Amz-Signature=ab"><script>'
    linked = render(load_local(name), {**VALUES, "report_link": link})
    plain = render(load_local(name), VALUES)

    (href,) = re.findall(r'href="([^"]*)"', linked)
    assert html.unescape(href) == link and "<script>" not in linked
    assert "compliance report" in linked and link in text_version({**VALUES, "report_link": link})
    assert "href=" not in plain and "compliance report" not in plain
    assert "compliance report" not in text_version(VALUES)


@pytest.mark.parametrize("name", ["../enforce.html", "x/enforce.html", "", ".hidden"])
def test_template_names_with_path_parts_are_refused(name):
    with pytest.raises(TemplateError):
        load_local(name)
    with pytest.raises(TemplateError):
        template_s3_key("prefix", name)


def test_a_missing_template_is_named():
    with pytest.raises(TemplateError, match=r"nope\.html"):
        load_local("nope.html")


def test_the_s3_key_of_a_template():
    assert template_s3_key("asa/asa-iam-rotation/", "audit.html") == (
        "asa/asa-iam-rotation/Template/audit.html"
    )


def test_enforce_email_tells_what_happened_and_what_comes_next(org):
    account = org.account([UserSpec("alice", (KeySpec(95),)), UserSpec("bob", (KeySpec(85),))])

    org.run([account], DryRunFlag=False)

    (email,) = org.emails()
    assert account.account_id in email
    assert "Rotated key" in email and "EXPIRED_ACTIVE_KEY" in email
    assert "to be deactivated on" in email
    assert "of user bob will be rotated on" in email and "KEY_PENDING_ROTATION" in email
    assert ADMIN in email
    assert "Secrets Manager of the user&#39;s own account" in email
    assert "<code>keyrotation install-key --profile NAME</code>" in email


def test_ses_sends_from_the_admin_address(org):
    ses = org.session.client("ses")
    sent_before = ses.get_send_quota()["SentLast24Hours"]
    notification = Notification("owner@example.com", "subject", "enforce.html", VALUES)

    status = deliver(notification, load_local("enforce.html"), SesSender(org.session, ADMIN))

    assert status == "sent"
    assert ses.get_send_quota()["SentLast24Hours"] == sent_before + 1


def test_a_rejected_email_is_reported_and_the_changes_stand(org):
    account = org.account([UserSpec("alice", (KeySpec(95),))])
    sender = SesSender(org.session, "unverified@example.com")

    def notifier(notification):
        return deliver(notification, load_local(notification.template), sender)

    context = RunContext(org.settings(DryRunFlag=False), datetime.now(UTC))
    report = run_organization(org.session, context, notifier, [account.account_id])

    (result,) = report.accounts
    assert not report.clean
    assert result.notification.startswith("failed")
    assert any("not verified" in e.lower() or "MessageRejected" in e for e in result.errors)
    assert len(keys_of(account, "alice")) == 2
