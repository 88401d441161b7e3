"""One enforce run per account at a time: a lock that AWS itself makes atomic.

Creating a secret fails when one of that name exists, so whoever creates `keyrotation/run-lock`
in the account holds the lock. A lock older than its time to live belongs to a run that died
and is taken over.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta

import boto3
from botocore.exceptions import ClientError

from keyrotation import logs
from keyrotation.aws.session import client
from keyrotation.permissions import MEMBER, requires

log = logging.getLogger(__name__)

LOCK_NAME = "keyrotation/run-lock"
# A Lambda run ends after 15 minutes; a lock twice that old belongs to a dead run.
TIME_TO_LIVE = timedelta(minutes=30)


class AccountBusy(Exception):
    """Another run holds the account's lock."""


class AccountLock:
    def __init__(self, session: boto3.Session, run_id: str, now: datetime):
        self._secrets = client(session, "secretsmanager")
        self.run_id = run_id
        self.now = now

    @requires(
        MEMBER,
        "secretsmanager:CreateSecret",
        "secretsmanager:DescribeSecret",
        "secretsmanager:DeleteSecret",
    )
    def acquire(self) -> None:
        try:
            self._create()
            return
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ResourceExistsException":
                raise
        held = self._secrets.describe_secret(SecretId=LOCK_NAME)
        since = held.get("CreatedDate")
        if since is not None and since + TIME_TO_LIVE > self.now:
            raise AccountBusy(
                f"another run holds the account's lock since {since:%Y-%m-%d %H:%M} UTC "
                f"({held.get('Description', '')}); this run skipped the account"
            )
        logs.event(log, "stale lock taken over", since=str(since))
        self._delete()
        self._create()

    def release(self) -> None:
        self._delete()

    def _create(self) -> None:
        self._secrets.create_secret(
            Name=LOCK_NAME,
            Description=f"keyrotation run {self.run_id}",
            SecretString=json.dumps({"run_id": self.run_id}),
        )

    def _delete(self) -> None:
        try:
            self._secrets.delete_secret(SecretId=LOCK_NAME, ForceDeleteWithoutRecovery=True)
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ResourceNotFoundException":
                raise
