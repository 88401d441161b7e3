"""IAM in one member account: users, exemptions, access keys and their lifecycle records."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

import boto3
from botocore.exceptions import ClientError

from keyrotation.aws import records
from keyrotation.aws.credential_report import CredentialReport, read_credential_report
from keyrotation.aws.session import client
from keyrotation.errors import UserGoneError
from keyrotation.model import AccessKey, KeyRecord, KeyStatus, User
from keyrotation.permissions import MEMBER, requires

log = logging.getLogger(__name__)

SECRET_POLICY_NAME = "SecretsAccessPolicy"


@dataclass(frozen=True)
class NewKey:
    """A key just created. The secret is kept out of repr so it never reaches a log."""

    key_id: str
    created: datetime
    secret: str = field(repr=False)


class IamAccount:
    def __init__(self, session: boto3.Session, page_size: int | None = None):
        self._iam = client(session, "iam")
        self._page = {"PageSize": page_size} if page_size else {}

    @requires(MEMBER, "iam:ListUsers")
    def users(self) -> Iterator[User]:
        paginator = self._iam.get_paginator("list_users")
        for page in paginator.paginate(PaginationConfig=self._page):
            for user in page["Users"]:
                yield User(user["UserName"], user["Arn"], user.get("Path", "/"), user["UserId"])

    @requires(MEMBER, "iam:GetGroup")
    def group_members(self, group: str) -> frozenset[str]:
        """Names of the group's users; a group that does not exist has none."""
        paginator = self._iam.get_paginator("get_group")
        try:
            return frozenset(
                user["UserName"]
                for page in paginator.paginate(GroupName=group, PaginationConfig=self._page)
                for user in page["Users"]
            )
        except ClientError as exc:
            if _code(exc) == "NoSuchEntity":
                return frozenset()
            raise

    def credential_report(self) -> CredentialReport:
        """The account's credential report, fresh or at most as old as IAM keeps it."""
        return read_credential_report(self._iam)

    @requires(MEMBER, "iam:ListAccessKeys", "iam:GetAccessKeyLastUsed")
    def access_keys(
        self, user: str, reported_last_use: Mapping[datetime, datetime | None] | None = None
    ) -> list[AccessKey]:
        """The user's keys with their last use. Where the credential report already told a
        key's last use (matched by creation time), an audit run takes it from there."""
        with _user_gone(user):
            listed = self._iam.list_access_keys(UserName=user)["AccessKeyMetadata"]
            return [self._with_last_use(key, reported_last_use or {}) for key in listed]

    @requires(MEMBER, "iam:ListAccessKeys")
    def key_ids(self, user: str) -> set[str]:
        """The ids of the user's keys, without their last use: one call."""
        with _user_gone(user):
            listed = self._iam.list_access_keys(UserName=user)["AccessKeyMetadata"]
        return {key["AccessKeyId"] for key in listed}

    def _with_last_use(self, key: dict, reported: Mapping[datetime, datetime | None]) -> AccessKey:
        created = key["CreateDate"].astimezone(UTC).replace(microsecond=0)
        if created in reported:
            last_used = reported[created]
        else:
            used = self._iam.get_access_key_last_used(AccessKeyId=key["AccessKeyId"])
            last_used = used.get("AccessKeyLastUsed", {}).get("LastUsedDate")
        return AccessKey(
            key_id=key["AccessKeyId"],
            status=KeyStatus(key["Status"]),
            created=key["CreateDate"],
            last_used=last_used,
        )

    @requires(MEMBER, "iam:ListUserTags")
    def lifecycle(self, user: str) -> records.Lifecycle:
        with _user_gone(user):
            paginator = self._iam.get_paginator("list_user_tags")
            tags = {
                tag["Key"]: tag["Value"]
                for page in paginator.paginate(UserName=user)
                for tag in page["Tags"]
            }
        return records.lifecycle_from_tags(tags)

    def records(self, user: str) -> dict[str, KeyRecord]:
        return self.lifecycle(user).records

    @requires(MEMBER, "iam:TagUser")
    def mark_rotation(self, user: str, rotation: records.PendingRotation) -> None:
        with _user_gone(user):
            self._iam.tag_user(
                UserName=user,
                Tags=[{"Key": records.ROTATION_TAG, "Value": records.encode_rotation(rotation)}],
            )

    @requires(MEMBER, "iam:UntagUser")
    def clear_rotation(self, user: str) -> None:
        with _user_gone(user):
            self._iam.untag_user(UserName=user, TagKeys=[records.ROTATION_TAG])

    @requires(MEMBER, "iam:GetUser")
    def user(self, name: str) -> User:
        with _user_gone(name):
            found = self._iam.get_user(UserName=name)["User"]
        return User(found["UserName"], found["Arn"], found.get("Path", "/"), found["UserId"])

    @requires(MEMBER, "iam:GetUser")
    def exists(self, user: str) -> bool:
        try:
            self._iam.get_user(UserName=user)
        except ClientError as exc:
            if _code(exc) == "NoSuchEntity":
                return False
            raise
        return True

    @requires(MEMBER, "iam:TagUser")
    def write_record(self, user: str, key_id: str, record: KeyRecord) -> None:
        with _user_gone(user):
            self._iam.tag_user(
                UserName=user,
                Tags=[{"Key": records.tag_key(key_id), "Value": records.encode(record)}],
            )

    @requires(MEMBER, "iam:UntagUser")
    def forget_records(self, user: str, key_ids: list[str]) -> None:
        if key_ids:
            with _user_gone(user):
                self._iam.untag_user(
                    UserName=user, TagKeys=[records.tag_key(key_id) for key_id in key_ids]
                )

    @requires(MEMBER, "iam:CreateAccessKey")
    def create_key(self, user: str) -> NewKey:
        with _user_gone(user):
            key = self._iam.create_access_key(UserName=user)["AccessKey"]
        return NewKey(key["AccessKeyId"], key["CreateDate"], key["SecretAccessKey"])

    @requires(MEMBER, "iam:UpdateAccessKey")
    def deactivate_key(self, user: str, key_id: str) -> None:
        with _user_gone(user):
            self._iam.update_access_key(UserName=user, AccessKeyId=key_id, Status="Inactive")

    @requires(MEMBER, "iam:DeleteAccessKey")
    def delete_key(self, user: str, key_id: str) -> None:
        """Delete the key; a key that is already gone (a concurrent run) is not an error."""
        try:
            self._iam.delete_access_key(UserName=user, AccessKeyId=key_id)
        except ClientError as exc:
            if _code(exc) != "NoSuchEntity":
                raise
            if not self.exists(user):
                raise UserGoneError(f"user {user} no longer exists") from exc

    @requires(MEMBER, "iam:PutUserPolicy")
    def allow_secret_read(
        self, user: str, secret_arn: str, regions: tuple[str, ...] = (), encrypted: bool = False
    ) -> None:
        """The user's inline policy that lets it read its own secret, and nothing else."""
        with _user_gone(user):
            self._iam.put_user_policy(
                UserName=user,
                PolicyName=SECRET_POLICY_NAME,
                PolicyDocument=json.dumps(secret_read_policy(secret_arn, regions, encrypted)),
            )


def secret_read_policy(
    secret_arn: str, regions: tuple[str, ...] = (), encrypted: bool = False
) -> dict:
    """Read the secret and its replicas in `regions`; with the central store's customer
    managed key, also decrypt with that account's keys, through Secrets Manager only."""
    _, partition, _, _, account, rest = secret_arn.split(":", 5)
    replicas = [f"arn:{partition}:secretsmanager:{r}:{account}:{rest}" for r in regions]
    statements = [
        {
            "Sid": "ReadOwnAccessKeySecret",
            "Effect": "Allow",
            "Action": ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"],
            "Resource": [secret_arn, *replicas] if replicas else secret_arn,
        }
    ]
    if encrypted:
        statements.append(
            {
                "Sid": "DecryptOwnSecretThroughSecretsManager",
                "Effect": "Allow",
                "Action": "kms:Decrypt",
                "Resource": f"arn:{partition}:kms:*:{account}:key/*",
                "Condition": {"StringLike": {"kms:ViaService": "secretsmanager.*.amazonaws.com"}},
            }
        )
    return {"Version": "2012-10-17", "Statement": statements}


class _user_gone:
    """Turn IAM's NoSuchEntity for a user into UserGoneError, so the run can skip the user."""

    def __init__(self, user: str):
        self.user = user

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type, exc, tb) -> bool:
        if isinstance(exc, ClientError) and _code(exc) == "NoSuchEntity":
            raise UserGoneError(f"user {self.user} no longer exists") from exc
        return False


def _code(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Code", "")
