"""Each user's access key secret in Secrets Manager, readable by that user alone.

A new key goes in as a pending version whose id is derived from the key id, so a later run can
tell from the secret's stages alone (it cannot read the value) how far a rotation got.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC

import boto3
from botocore.exceptions import ClientError

from keyrotation.aws.iam import NewKey
from keyrotation.aws.session import client
from keyrotation.errors import RotationError
from keyrotation.model import User
from keyrotation.permissions import MEMBER, requires

CURRENT = "AWSCURRENT"
PENDING = "AWSPENDING"
_VERSIONS = uuid.UUID("6f1f8a52-3c0e-4d8e-9a53-2f4b8f0f6a11")


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


def version_id(key_id: str) -> str:
    """The secret version that holds `key_id`: the same on every run."""
    return str(uuid.uuid5(_VERSIONS, key_id))


class SecretStore:
    def __init__(self, session: boto3.Session):
        self._secrets = client(session, "secretsmanager")

    @requires(
        MEMBER,
        "secretsmanager:DescribeSecret",
        "secretsmanager:CreateSecret",
        "secretsmanager:PutResourcePolicy",
    )
    def ensure(self, user: User) -> str:
        """The user's secret's ARN, creating it (empty) the first time; its policy is reset."""
        name = secret_name(user.name)
        try:
            described = self._secrets.describe_secret(SecretId=name)
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ResourceNotFoundException":
                raise
            described = self._secrets.create_secret(
                Name=name, Description=f"Access key of IAM user {user.arn}, kept by keyrotation."
            )
        _refuse_foreign(name, described)
        arn = described["ARN"]
        self._secrets.put_resource_policy(
            SecretId=arn, ResourcePolicy=json.dumps(owner_only_policy(user.arn, user.user_id))
        )
        return arn

    @requires(MEMBER, "secretsmanager:PutSecretValue")
    def put_pending(self, user: User, key: NewKey) -> str:
        value = json.dumps(
            {
                "UserName": user.name,
                "AccessKeyId": key.key_id,
                "SecretAccessKey": key.secret,
                "Status": "Active",
                "CreateDate": key.created.astimezone(UTC).isoformat(),
            }
        )
        version = version_id(key.key_id)
        self._secrets.put_secret_value(
            SecretId=secret_name(user.name),
            SecretString=value,
            ClientRequestToken=version,
            VersionStages=[PENDING],
        )
        return version

    @requires(MEMBER, "secretsmanager:DescribeSecret")
    def stages(self, user_name: str) -> dict[str, list[str]] | None:
        """Version id -> staging labels, or None when the user has no secret."""
        try:
            described = self._secrets.describe_secret(SecretId=secret_name(user_name))
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ResourceNotFoundException":
                return None
            raise
        return dict(described.get("VersionIdsToStages", {}))

    @requires(MEMBER, "secretsmanager:DescribeSecret", "secretsmanager:UpdateSecretVersionStage")
    def promote(self, user_name: str, version: str) -> None:
        """Make `version` the current one (the first version of a secret already is)."""
        name = secret_name(user_name)
        stages = self.stages(user_name) or {}
        current = next((v for v, labels in stages.items() if CURRENT in labels), None)
        if current != version:
            move = {"RemoveFromVersionId": current} if current else {}
            self._secrets.update_secret_version_stage(
                SecretId=name, VersionStage=CURRENT, MoveToVersionId=version, **move
            )
        if PENDING in stages.get(version, []):
            self._secrets.update_secret_version_stage(
                SecretId=name, VersionStage=PENDING, RemoveFromVersionId=version
            )

    @requires(MEMBER, "secretsmanager:UpdateSecretVersionStage")
    def discard_pending(self, user_name: str, version: str) -> None:
        self._secrets.update_secret_version_stage(
            SecretId=secret_name(user_name), VersionStage=PENDING, RemoveFromVersionId=version
        )


def _refuse_foreign(name: str, described: dict) -> None:
    """A secret of that name set up to copy or hand its value elsewhere gets no key from us."""
    foreign = [
        what
        for what, present in (
            ("a rotation function", described.get("RotationEnabled")),
            ("replicas in other regions", described.get("ReplicationStatus")),
            ("a customer managed KMS key", described.get("KmsKeyId")),
        )
        if present
    ]
    if foreign:
        raise RotationError(
            f"secret {name} already exists with {', '.join(foreign)}, which keyrotation did not "
            "set up; no key was stored. Inspect the secret and delete it if it is not yours."
        )


def owner_only_policy(user_arn: str, user_id: str = "") -> dict:
    """Allow the user to read the secret, and deny the read to every other principal.

    The deny names the user's unique id where known, so it survives a change of the user's
    path (which changes the ARN).
    """
    read = ["secretsmanager:GetSecretValue"]
    condition = (
        {"StringNotEquals": {"aws:userid": user_id}}
        if user_id
        else {"StringNotEquals": {"aws:PrincipalArn": user_arn}}
    )
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
                "Condition": condition,
            },
        ],
    }
