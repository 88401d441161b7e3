"""The report in the deployment's bucket: each account's rows, the organization's page, links.

    <prefix>/Reports/dt=YYYY-MM-DD/<account id>.json    one account's rows and calendar
    <prefix>/Reports/dt=YYYY-MM-DD/<account id>.html    that account's page
    <prefix>/Reports/dt=YYYY-MM-DD/report.html          the organization's page

The rotation function writes its account's rows and page; the inventory function reads a
finished day's rows back and writes the organization's page; the notifier links the account's
email to the account's page with a presigned URL that expires soon.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from keyrotation.aws.session import client
from keyrotation.compliance.render import to_json
from keyrotation.compliance.standing import Assessment, KeyRow, Standing
from keyrotation.errors import KeyRotationError
from keyrotation.forecast import ForecastEvent
from keyrotation.model import AccessKey, Account, Action, ActionKind, KeyStatus, Periods
from keyrotation.permissions import INVENTORY, NOTIFIER, ROTATION, requires
from keyrotation.reasons import Reason

FOLDER = "Reports"
PAGE = "report.html"
LINK_SECONDS = 3600
# botocore may presign S3 URLs with Signature Version 2, which buckets made since June 2020
# refuse; Signature Version 4 works for every bucket and every call.
SIGNING = Config(signature_version="s3v4")


class ReportStoreError(KeyRotationError):
    """A report object could not be written or read."""


class ReportStore:
    def __init__(self, session: boto3.Session, bucket: str, prefix: str):
        self._s3 = client(session, "s3", config=SIGNING)
        self.bucket = bucket
        self.prefix = prefix.strip("/")

    @property
    def root(self) -> str:
        return f"{self.prefix}/{FOLDER}/" if self.prefix else f"{FOLDER}/"

    def folder(self, day: date) -> str:
        return f"{self.root}dt={day.isoformat()}/"

    @requires(ROTATION, "s3:PutObject")
    def put_account(
        self, account: Account, assessment: Assessment, errors: list[str] | None = None
    ) -> str:
        """One account's rows and calendar; `assessment` holds that account only."""
        key = f"{self.folder(assessment.generated.date())}{account.account_id}.json"
        document = json.loads(to_json(assessment, errors or []))
        document["account"] = {"account_id": account.account_id, "name": account.name}
        document["periods"] = vars(assessment.periods)
        self._put(key, json.dumps(document).encode(), "application/json")
        return key

    @requires(ROTATION, "s3:PutObject")
    def put_account_page(self, account: Account, day: date, html: str) -> str:
        key = f"{self.folder(day)}{account.account_id}.html"
        self._put(key, html.encode(), "text/html; charset=utf-8")
        return key

    @requires(INVENTORY, "s3:ListBucket")
    def latest_day(self, before: date) -> date | None:
        """The latest day before `before` that has report rows, or None."""
        days = []
        try:
            pages = self._s3.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.root, Delimiter="/"
            )
            for common in (c for page in pages for c in page.get("CommonPrefixes", [])):
                name = common["Prefix"].removeprefix(self.root).strip("/")
                if name.startswith("dt="):
                    days.append(date.fromisoformat(name.removeprefix("dt=")))
        except (ClientError, BotoCoreError, ValueError) as exc:
            raise ReportStoreError(
                f"Cannot list the report days under s3://{self.bucket}/{self.root}: {exc}"
            ) from exc
        return max((d for d in days if d < before), default=None)

    @requires(INVENTORY, "s3:ListBucket", "s3:GetObject")
    def read_day(self, day: date) -> tuple[Assessment, list[Account], list[str]]:
        """Every account's rows written on `day`, as one assessment, and what each account
        could not read (users not scanned), named after the account."""
        folder = self.folder(day)
        assessment: Assessment | None = None
        accounts = []
        errors = []
        try:
            pages = self._s3.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=folder
            )
            for item in (i for page in pages for i in page.get("Contents", [])):
                if not item["Key"].endswith(".json"):
                    continue
                body = self._s3.get_object(Bucket=self.bucket, Key=item["Key"])["Body"].read()
                document = json.loads(body)
                part = _assessment(document)
                accounts.append(part.rows[0].account if part.rows else _account(document))
                errors += [f"account {accounts[-1].account_id}: {e}" for e in document["errors"]]
                if assessment is None:
                    assessment = part
                else:
                    assessment.rows += part.rows
                    assessment.calendar += part.calendar
        except (ClientError, BotoCoreError, ValueError, KeyError) as exc:
            raise ReportStoreError(
                f"Cannot read the report rows under s3://{self.bucket}/{folder}: {exc}"
            ) from exc
        if assessment is None:
            raise ReportStoreError(f"No report rows under s3://{self.bucket}/{folder}")
        return assessment, accounts, errors

    @requires(INVENTORY, "s3:PutObject")
    def put_page(self, day: date, html: str) -> str:
        key = f"{self.folder(day)}{PAGE}"
        self._put(key, html.encode(), "text/html; charset=utf-8")
        return key

    def is_page(self, key: str, account_id: str) -> bool:
        """Whether `key` names the page this store writes for that account, and nothing else
        in the bucket."""
        name = key.removeprefix(self.root)
        parts = name.split("/")
        return (
            key.startswith(self.root)
            and len(parts) == 2
            and parts[0].startswith("dt=")
            and parts[1] == f"{account_id}.html"
            and ".." not in key
        )

    @requires(NOTIFIER, "s3:GetObject")
    def link(self, key: str, seconds: int = LINK_SECONDS) -> str:
        """A presigned GET URL; it carries the signer's rights, so keep the expiry short.

        Signing makes no call: the GET made with the URL is checked against the notifier's
        role, which may read only the report pages and the email templates."""
        return self._s3.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=seconds
        )

    def _put(self, key: str, body: bytes, content_type: str) -> None:
        try:
            self._s3.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType=content_type)
        except (ClientError, BotoCoreError) as exc:
            raise ReportStoreError(f"Cannot write s3://{self.bucket}/{key}: {exc}") from exc


def _account(document: dict) -> Account:
    return Account(document["account"]["account_id"], document["account"]["name"], "")


def _assessment(document: dict) -> Assessment:
    account = _account(document)
    assessment = Assessment(
        datetime.fromisoformat(document["generated"]), Periods(**document["periods"])
    )
    for row in document["keys"]:
        step = None
        if row["next_action"]:
            step = Action(
                ActionKind(row["next_action"]),
                row["key_id"],
                Reason(row["next_reason"]),
                date.fromisoformat(row["next_date"]),
            )
        key = AccessKey(
            row["key_id"],
            KeyStatus(row["status"]),
            _midnight(row["created"]),
            _midnight(row["last_used"]) if row["last_used"] else None,
        )
        assessment.rows.append(
            KeyRow(account, row["user"], key, row["age_days"], Standing(row["standing"]), step)
        )
    for event in document["calendar"]:
        day = date.fromisoformat(event["date"])
        action = Action(ActionKind(event["action"]), event["key_id"], Reason(event["reason"]), day)
        assessment.calendar.append(ForecastEvent(day, account, event["user"], action))
    return assessment


def _midnight(text: str) -> datetime:
    return datetime.combine(date.fromisoformat(text), datetime.min.time(), UTC)
