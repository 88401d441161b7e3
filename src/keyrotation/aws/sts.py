"""Check that a new access key works, as Secrets Manager's rotation functions test theirs."""

from __future__ import annotations

import time

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from keyrotation.aws.iam import NewKey
from keyrotation.aws.session import client
from keyrotation.errors import RotationError
from keyrotation.model import User

# New IAM keys take a few seconds to work everywhere; keep asking for about half a minute.
NOT_YET_VALID = {"InvalidClientTokenId", "SignatureDoesNotMatch", "AuthFailure"}


class KeyChecker:
    def __init__(self, region: str, attempts: int = 10, delay: float = 3.0):
        self.region = region
        self.attempts = attempts
        self.delay = delay

    def check(self, user: User, key: NewKey) -> None:
        """Raise RotationError unless STS answers for the key with the user's identity.

        The call is signed with the new key itself, so it needs no permission of ours.
        """
        session = boto3.Session(
            aws_access_key_id=key.key_id, aws_secret_access_key=key.secret, region_name=self.region
        )
        sts = client(session, "sts")
        for attempt in range(1, self.attempts + 1):
            try:
                arn = sts.get_caller_identity()["Arn"]
            except ClientError as exc:
                if exc.response["Error"]["Code"] not in NOT_YET_VALID or attempt == self.attempts:
                    raise RotationError(f"new key {key.key_id} does not work: {exc}") from exc
                time.sleep(self.delay)
                continue
            except BotoCoreError as exc:
                raise RotationError(f"new key {key.key_id} could not be checked: {exc}") from exc
            if arn != user.arn:
                raise RotationError(f"new key {key.key_id} answers as {arn}, not {user.arn}")
            return
