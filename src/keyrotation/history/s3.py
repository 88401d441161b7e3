"""History in S3: JSON Lines objects partitioned by date, so Athena can query them.

Each run writes one object per account, `<prefix>/History/dt=YYYY-MM-DD/<run id>-<account>.jsonl`.
S3 cannot append, so every event rewrites its object with all the events so far: a run that
stops half way still leaves what it did in the bucket.
"""

from __future__ import annotations

from collections.abc import Iterator

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from keyrotation.aws.session import client
from keyrotation.errors import HistoryError
from keyrotation.history.event import EVERYTHING, HistoryEvent, HistoryFilter
from keyrotation.permissions import OPERATOR, ROTATION, requires

FOLDER = "History"


def object_key(prefix: str, event: HistoryEvent) -> str:
    day = event.time.date().isoformat()
    return f"{_folder(prefix)}dt={day}/{event.run_id}-{event.account}.jsonl"


def _folder(prefix: str) -> str:
    prefix = prefix.strip("/")
    return f"{prefix}/{FOLDER}/" if prefix else f"{FOLDER}/"


class S3History:
    def __init__(self, session: boto3.Session, bucket: str, prefix: str):
        self._s3 = client(session, "s3")
        self.bucket = bucket
        self.prefix = prefix
        self._written: dict[str, list[str]] = {}

    @requires(ROTATION, "s3:PutObject")
    def append(self, event: HistoryEvent) -> None:
        key = object_key(self.prefix, event)
        lines = self._written.setdefault(key, [])
        lines.append(event.to_json())
        try:
            self._s3.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=("\n".join(lines) + "\n").encode(),
                ContentType="application/x-ndjson",
            )
        except (ClientError, BotoCoreError) as exc:
            raise HistoryError(
                f"Cannot write history to s3://{self.bucket}/{key}: {exc}. Check that the "
                "bucket exists and the rotation role may put objects under the prefix."
            ) from exc

    @requires(OPERATOR, "s3:ListBucket", "s3:GetObject")
    def read(self, wanted: HistoryFilter = EVERYTHING) -> Iterator[HistoryEvent]:
        """Events in key order; partitions before `wanted.since` are not read at all."""
        folder = _folder(self.prefix)
        first = f"{folder}dt={wanted.since.isoformat()}" if wanted.since else ""
        try:
            paginator = self._s3.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=folder):
                for item in page.get("Contents", []):
                    if item["Key"].endswith(".jsonl") and item["Key"] >= first:
                        yield from self._events(item["Key"], wanted)
        except (ClientError, BotoCoreError) as exc:
            raise HistoryError(
                f"Cannot read history from s3://{self.bucket}/{folder}: {exc}"
            ) from exc

    def _events(self, key: str, wanted: HistoryFilter) -> Iterator[HistoryEvent]:
        body = self._s3.get_object(Bucket=self.bucket, Key=key)["Body"].read().decode()
        for line in body.splitlines():
            if line.strip():
                event = HistoryEvent.from_json(line)
                if wanted.matches(event):
                    yield event
