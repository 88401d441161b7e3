"""History: every event kind through both stores, and what the pipeline writes to them."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime

import pytest

from keyrotation.history.event import HistoryEvent, HistoryFilter
from keyrotation.history.local import HistoryFile
from keyrotation.history.s3 import S3History
from keyrotation.model import Action, ActionKind
from keyrotation.reasons import Reason
from keyrotation.report import Outcome, Status
from tests.faults import Crash
from tests.orgs import KeySpec, UserSpec
from tests.test_cli import cli

TIME = datetime(2026, 6, 15, 9, 30, tzinfo=UTC)
DAY = TIME.date()
ROTATE, DEACTIVATE, DELETE, WARN = ActionKind

# Every kind of event a run records: each action kind, each outcome, a notice with its step.
OUTCOMES = [
    Outcome("alice", Action(ROTATE, "AKIAOLD", Reason.EXPIRED_ACTIVE_KEY, DAY), Status.DONE,
            "new key AKIANEW stored in secret User_alice_AccessKey"),
    Outcome("alice", Action(DEACTIVATE, "AKIAOLD", Reason.INSTALL_GRACE_PERIOD_END, DAY),
            Status.DONE, "to be deleted on 2026-06-25"),
    Outcome("alice", Action(DELETE, "AKIAOLD", Reason.RECOVER_GRACE_PERIOD_END, DAY), Status.DONE),
    Outcome("bob", Action(WARN, "AKIABOB", Reason.KEY_PENDING_ROTATION, date(2026, 6, 20),
                          ROTATE), Status.DONE),
    Outcome("bob", Action(ROTATE, "AKIABOB", Reason.FORCED_ROTATION, DAY), Status.FAILED,
            "the user already has two keys; no key was created"),
    Outcome("carol", Action(DELETE, "AKIACAR", Reason.UNUSED_EXPIRED_KEY, DAY), Status.PLANNED),
    Outcome("dave", Action(DEACTIVATE, "AKIADAV", Reason.EXPIRED_ACTIVE_KEY_CONFLICT_LRU, DAY),
            Status.SKIPPED),
]  # fmt: skip


def events(account: str = "111111111111") -> list[HistoryEvent]:
    return [HistoryEvent.from_outcome("run1", "enforce", account, o, TIME) for o in OUTCOMES]


@pytest.fixture(params=["file", "s3"])
def store(request, tmp_path):
    if request.param == "file":
        return HistoryFile(tmp_path / "nested" / "history.jsonl")
    request.getfixturevalue("emulator")
    import boto3

    bucket = f"history-{uuid.uuid4().hex[:10]}"
    session = boto3.Session(region_name="us-east-1")
    session.client("s3").create_bucket(Bucket=bucket)
    return S3History(session, bucket, "asa/asa-iam-rotation")


def test_every_event_kind_is_written_and_read_back(store):
    written = events()
    for event in written:
        store.append(event)

    assert list(store.read()) == written
    failed = next(e for e in store.read() if e.outcome == Status.FAILED)
    assert failed.error == "the user already has two keys; no key was created"
    assert failed.detail == ""
    notice = next(e for e in store.read() if e.action == "WARN")
    assert (notice.step, notice.on) == ("ROTATE", date(2026, 6, 20))


def test_history_filters_by_account_user_key_and_date(store):
    for event in [*events("111111111111"), *events("222222222222")]:
        store.append(event)

    assert len(list(store.read(HistoryFilter(account="222222222222")))) == len(OUTCOMES)
    assert {e.key_id for e in store.read(HistoryFilter(user="bob"))} == {"AKIABOB"}
    assert len(list(store.read(HistoryFilter(key_id="AKIAOLD")))) == 6
    assert list(store.read(HistoryFilter(since=date(2026, 6, 16)))) == []
    assert len(list(store.read(HistoryFilter(since=DAY)))) == 2 * len(OUTCOMES)


def test_s3_history_is_one_object_per_run_and_account_under_a_date_partition(emulator):
    import boto3

    bucket = f"history-{uuid.uuid4().hex[:10]}"
    s3 = boto3.Session(region_name="us-east-1").client("s3")
    s3.create_bucket(Bucket=bucket)
    store = S3History(boto3.Session(region_name="us-east-1"), bucket, "/asa/rotation/")

    for event in [*events("111111111111"), *events("222222222222")]:
        store.append(event)

    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"])
    assert keys == [
        "asa/rotation/History/dt=2026-06-15/run1-111111111111.jsonl",
        "asa/rotation/History/dt=2026-06-15/run1-222222222222.jsonl",
    ]
    body = s3.get_object(Bucket=bucket, Key=keys[0])["Body"].read().decode()
    assert [json.loads(line)["user"] for line in body.splitlines()] == [o.user for o in OUTCOMES]


def test_a_run_records_each_change_and_notice_with_its_run_id(org, tmp_path):
    account = org.account([UserSpec("erin", (KeySpec(95),)), UserSpec("finn", (KeySpec(86),))])
    history = HistoryFile(tmp_path / "history.jsonl")

    report = org.run([account], history=history, DryRunFlag=False)

    recorded = list(history.read())
    assert [(e.user, e.action, e.reason, e.outcome) for e in recorded] == [
        ("erin", "ROTATE", "EXPIRED_ACTIVE_KEY", "done"),
        ("finn", "WARN", "KEY_PENDING_ROTATION", "done"),
    ]
    assert {(e.run_id, e.mode, e.account) for e in recorded} == {
        (report.run_id, "enforce", account.account_id)
    }
    assert recorded[0].key_id == account.key_ids["erin"][0]


def test_a_run_that_stops_half_way_keeps_what_it_did(org, tmp_path, iam_hooks):
    account = org.account([UserSpec("gail", (KeySpec(95),)), UserSpec("hugo", (KeySpec(95),))])
    history = HistoryFile(tmp_path / "history.jsonl")

    def crash(params, **kwargs):
        if params.get("UserName") == "hugo":
            # A timeout kills the process: nothing in the product may catch it.
            raise Crash("the Lambda function timed out")

    iam_hooks.append(("before-parameter-build.iam.ListAccessKeys", crash))
    with pytest.raises(Crash):
        org.run([account], history=history, DryRunFlag=False)

    assert [(e.user, e.action, e.outcome) for e in history.read()] == [("gail", "ROTATE", "done")]


def test_history_command_answers_what_happened_to_a_key(org, tmp_path):
    account = org.account([UserSpec("ivy", (KeySpec(95),)), UserSpec("jon", (KeySpec(95),))])
    credentials = org.session.get_credentials().get_frozen_credentials()
    path = tmp_path / "history.jsonl"
    run = cli(
        "run", "--enforce", "--account", account.account_id, "--outbox", str(tmp_path),
        "--history", str(path), "--set", "AdminEmailAddress=admin@example.com",
        credentials=credentials,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr

    result = cli("history", "--history", str(path), "--user", "ivy", "--json")
    table = cli("history", "--history", str(path), "--account", account.account_id)

    (event,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert (event["user"], event["action"]) == ("ivy", "ROTATE")
    assert event["key_id"] == account.key_ids["ivy"][0]
    assert "2 events" in table.stdout and "jon" in table.stdout
