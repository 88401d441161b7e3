"""The account summary on SNS: one JSON message per account run, counts and no key material."""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime

from keyrotation.aws import sns
from keyrotation.model import Account, Mode
from keyrotation.report import AccountReport
from keyrotation.summary import FAILURES_KEPT, summarize
from tests.orgs import KeySpec, OrgBuilder, UserSpec, keys_of, secret_of

KEY_ID = re.compile(r"A[A-Z0-9]{3}[A-Z0-9]{12}")


def topic_with_queue(org: OrgBuilder) -> tuple[str, str]:
    """A topic in the caller's own account and an SQS queue subscribed to it."""
    name = f"kr-summary-{uuid.uuid4().hex[:8]}"
    topic = org.session.client("sns").create_topic(Name=name)["TopicArn"]
    sqs = org.session.client("sqs")
    queue = sqs.create_queue(QueueName=name)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])
    org.session.client("sns").subscribe(
        TopicArn=topic, Protocol="sqs", Endpoint=queue_arn["Attributes"]["QueueArn"]
    )
    return topic, queue


def summaries(org: OrgBuilder, queue: str) -> list[tuple[str, dict]]:
    """Each message as delivered (the raw SNS envelope text) and its summary. moto delivers
    to the queue during Publish; AWS does it moments later, so a live check would wait."""
    received = org.session.client("sqs").receive_message(QueueUrl=queue, MaxNumberOfMessages=10)
    found = []
    for message in received.get("Messages", []):
        envelope = json.loads(message["Body"])
        found.append((message["Body"], json.loads(envelope["Message"])))
    return found


def test_each_account_run_publishes_one_summary_without_key_material(org):
    topic, queue = topic_with_queue(org)
    account = org.account(
        [UserSpec("alice", (KeySpec(95),)), UserSpec("bob", (KeySpec(85),)), UserSpec("carol")]
    )
    old_key = account.key_ids["alice"][0]

    report = org.run([account], DryRunFlag=False, SummaryTopicArn=topic)

    assert report.clean, report.accounts[0].errors
    (body, summary), *others = summaries(org, queue)
    assert others == []
    assert summary == {
        "schema": "keyrotation.account-summary.v1",
        "run_id": report.run_id,
        "time": summary["time"],
        "dated": None,
        "mode": "enforce",
        "account_id": account.account_id,
        "account_name": account.name,
        "scan": "credential report",
        "users_scanned": 3,
        "users_exempt": 0,
        "counts": [
            {"action": "ROTATE", "reason": "EXPIRED_ACTIVE_KEY", "status": "done", "count": 1},
            {"action": "WARN", "reason": "KEY_PENDING_ROTATION", "status": "done", "count": 1},
        ],
        "failed": False,
        "busy": False,
        "failures": [],
        "failures_total": 0,
        "notification": "written",
    }
    assert secret_of(account, "alice")["SecretAccessKey"] not in body
    new_key = secret_of(account, "alice")["AccessKeyId"]
    assert old_key not in body and new_key not in body and not KEY_ID.search(body)


def test_audit_runs_publish_too_and_say_so(org):
    topic, queue = topic_with_queue(org)
    account = org.account([UserSpec("alice", (KeySpec(95),))])

    org.run([account], DryRunFlag=True, SummaryTopicArn=topic)

    ((_, summary),) = summaries(org, queue)
    assert summary["mode"] == "audit"
    assert summary["counts"] == [
        {"action": "ROTATE", "reason": "EXPIRED_ACTIVE_KEY", "status": "planned", "count": 1}
    ]
    assert len(keys_of(account, "alice")) == 1


def test_failures_are_summarised_with_key_ids_shortened(org, faults):
    topic, queue = topic_with_queue(org)
    account = org.account([UserSpec("alice", (KeySpec(95),))])
    old_key = account.key_ids["alice"][0]
    faults.fail("iam", "CreateAccessKey", code="ServiceFailure")

    org.run([account], DryRunFlag=False, SummaryTopicArn=topic)

    ((body, summary),) = summaries(org, queue)
    assert summary["counts"][0]["status"] == "failed"
    (failure,) = summary["failures"]
    assert "alice" in failure and f"{old_key[:4]}…{old_key[-4:]}" in failure
    assert old_key not in body


def test_a_summary_that_cannot_be_published_is_reported_and_the_changes_stand(org):
    account = org.account([UserSpec("alice", (KeySpec(95),))])
    missing = f"arn:aws:sns:us-east-1:{org.management_id}:no-such-topic"

    report = org.run([account], DryRunFlag=False, SummaryTopicArn=missing)

    (result,) = report.accounts
    assert not result.failed and not report.clean
    assert any("account summary not published" in e for e in result.errors)
    assert len(keys_of(account, "alice")) == 2


def test_thousands_of_failures_fit_one_message_with_their_total(org):
    # given an account where 3,000 users could not be scanned, each with a long reason
    topic, queue = topic_with_queue(org)
    report = AccountReport(Account("111122223333", "Payments", "p@example.com"), Mode.ENFORCE)
    reason = "Rate exceeded (Throttling) while listing keys of key AKIAIOSFODNN7EXAMPLE; " * 40
    report.not_scanned = [f"user u{number:04d}: {reason}" for number in range(3000)]

    # when its summary is published
    summary = summarize(report, "run-1", datetime(2026, 12, 4, 6, tzinfo=UTC), dated=False)
    sns.publish(org.session, topic, "keyrotation enforce summary", summary)

    # then the topic took it, with the first lines shortened and the total
    ((body, received),) = summaries(org, queue)
    assert received["failures_total"] == 3000
    assert len(received["failures"]) == FAILURES_KEPT
    assert received["failures"][0].startswith("user u0000: Rate exceeded")
    assert all(len(line) < 1000 for line in received["failures"])
    assert len(body.encode()) < 100_000, "well under SNS's 256 KB"
    assert "AKIAIOSFODNN7EXAMPLE" not in body
