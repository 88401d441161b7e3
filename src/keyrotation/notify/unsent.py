"""Lines of an account's email that have not gone out yet, kept until an email carries them.

Before each change the run writes down what it is about to do, and an email that fails keeps
its lines here; the account's next email starts with them. So neither a run that stops half
way nor a rejected email loses what happened.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Protocol

import boto3
from botocore.exceptions import ClientError

from keyrotation.aws.session import client
from keyrotation.permissions import ROTATION, requires


class UnsentStore(Protocol):
    def load(self, account_id: str) -> list[str]: ...

    def save(self, account_id: str, lines: list[str]) -> None: ...

    def clear(self, account_id: str) -> None: ...


class FolderStore:
    """One JSON file per account in a local folder, for the CLI."""

    def __init__(self, folder: Path):
        self.folder = folder

    def _path(self, account_id: str) -> Path:
        return self.folder / f"unsent-{account_id}.json"

    def load(self, account_id: str) -> list[str]:
        path = self._path(account_id)
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else []

    def save(self, account_id: str, lines: list[str]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self._path(account_id)
        partial = path.with_suffix(".partial")
        partial.write_text(json.dumps(lines, indent=1), encoding="utf-8")
        partial.replace(path)

    def clear(self, account_id: str) -> None:
        self._path(account_id).unlink(missing_ok=True)


class BucketStore:
    """One JSON object per account in the deployment's bucket, for the Lambda functions."""

    def __init__(self, session: boto3.Session, bucket: str, prefix: str):
        self._s3 = client(session, "s3")
        self.bucket = bucket
        self.prefix = prefix.strip("/")

    def _key(self, account_id: str) -> str:
        return f"{self.prefix}/Unsent/{account_id}.json"

    @requires(ROTATION, "s3:GetObject")
    def load(self, account_id: str) -> list[str]:
        try:
            body = self._s3.get_object(Bucket=self.bucket, Key=self._key(account_id))["Body"]
        except ClientError as exc:
            if exc.response["Error"]["Code"] in {"NoSuchKey", "404"}:
                return []
            raise
        return json.loads(body.read())

    @requires(ROTATION, "s3:PutObject")
    def save(self, account_id: str, lines: list[str]) -> None:
        self._s3.put_object(
            Bucket=self.bucket, Key=self._key(account_id), Body=json.dumps(lines).encode()
        )

    @requires(ROTATION, "s3:DeleteObject")
    def clear(self, account_id: str) -> None:
        self._s3.delete_object(Bucket=self.bucket, Key=self._key(account_id))
