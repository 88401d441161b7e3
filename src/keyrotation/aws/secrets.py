"""Each user's access key secret in Secrets Manager, readable by that user alone."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC

import boto3
from botocore.exceptions import ClientError

from keyrotation.aws.iam import NewKey
from keyrotation.aws.session import client
from keyrotation.model import User
from keyrotation.permissions import MEMBER, requires


def secret_name(user_name: str) -> str:
    """`User_<user>_AccessKey`, kept as-is for every name Secrets Manager accepts.

    IAM allows a comma in user names and Secrets Manager does not. Such a name gets the comma
    replaced and a hash of the real name appended; the result ends in the hash, never in
    `_AccessKey`, so it cannot collide with the name of any comma-free user.
    """
    if "," not in user_name:
        return f"User_{user_name}_AccessKey"
    digest = hashlib.sha256(user_name.encode()).hexdigest()[:16]
    return f"User_{user_name.replace(',', '.')}_AccessKey_{digest}"


@dataclass(frozen=True)
class StoredSecret:
    name: str
    arn: str


class SecretStore:
    def __init__(self, session: boto3.Session):
        self._secrets = client(session, "secretsmanager")

    @requires(
        MEMBER,
        "secretsmanager:CreateSecret",
        "secretsmanager:PutSecretValue",
        "secretsmanager:PutResourcePolicy",
    )
    def store(self, user: User, key: NewKey) -> StoredSecret:
        """Write the key as the secret's current value, creating the secret the first time."""
        name = secret_name(user.name)
        value = json.dumps(
            {
                "UserName": user.name,
                "AccessKeyId": key.key_id,
                "SecretAccessKey": key.secret,
                "Status": "Active",
                "CreateDate": key.created.astimezone(UTC).isoformat(),
            }
        )
        try:
            arn = self._secrets.put_secret_value(SecretId=name, SecretString=value)["ARN"]
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ResourceNotFoundException":
                raise
            arn = self._secrets.create_secret(
                Name=name,
                Description=f"Access key of IAM user {user.arn}, kept by keyrotation.",
                SecretString=value,
            )["ARN"]
        self._secrets.put_resource_policy(
            SecretId=arn, ResourcePolicy=json.dumps(owner_only_policy(user.arn))
        )
        return StoredSecret(name, arn)


def owner_only_policy(user_arn: str) -> dict:
    """Allow the user to read the secret, and deny the read to every other principal."""
    read = ["secretsmanager:GetSecretValue"]
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "OwnerReads",
                "Effect": "Allow",
                "Principal": {"AWS": user_arn},
                "Action": read,
                "Resource": "*",
            },
            {
                "Sid": "NobodyElseReads",
                "Effect": "Deny",
                "Principal": "*",
                "Action": read,
                "Resource": "*",
                "Condition": {"StringNotEquals": {"aws:PrincipalArn": user_arn}},
            },
        ],
    }
