"""Each user's access key secret in Secrets Manager, readable by that user alone.

A new key goes in as a pending version whose id is derived from the key id, so a later run can
tell from the secret's stages alone (it cannot read the value) how far a rotation got. The
secret lives in the user's own account, or with StoreSecretsInCentralAccount in the main
account under a name that holds the user's account id, encrypted with the main stack's key.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, replace
from datetime import UTC

import boto3
from botocore.exceptions import ClientError

from keyrotation.aws.iam import NewKey
from keyrotation.aws.session import client
from keyrotation.errors import ReplicaError, RotationError
from keyrotation.model import User
from keyrotation.permissions import MEMBER, ROTATION, requires

CURRENT = "AWSCURRENT"
PENDING = "AWSPENDING"
_VERSIONS = uuid.UUID("6f1f8a52-3c0e-4d8e-9a53-2f4b8f0f6a11")
# Every secret of the central store starts with this; the main stack's grants are scoped to it.
CENTRAL_PREFIX = "keyrotation/users/"
# The main stack's customer managed key: the default aws/secretsmanager key cannot be used
# by principals of other accounts.
CENTRAL_KEY_ALIAS = "alias/keyrotation/secrets"


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


def central_prefix(account_id: str) -> str:
    """Where an account's secrets live in the central store: two accounts never share it."""
    return f"{CENTRAL_PREFIX}{account_id}/"


def version_id(key_id: str) -> str:
    """The secret version that holds `key_id`: the same on every run."""
    return str(uuid.uuid5(_VERSIONS, key_id))


@dataclass(frozen=True)
class Replica:
    """A region a secret should be in and is not, or was but failed."""

    secret: str
    region: str
    done: str = ""
    # Started again after Secrets Manager failed it on an earlier run.
    retried: bool = False


class SecretStore:
    """The secrets of one account's users, kept in `session`'s account.

    With a `prefix` (the central store) the secrets are named after the users' account and
    encrypted with `kms_key`; `regions` are where each secret is replicated.
    """

    def __init__(
        self,
        session: boto3.Session,
        prefix: str = "",
        kms_key: str | None = None,
        regions: tuple[str, ...] = (),
    ):
        self._session = session
        self._secrets = client(session, "secretsmanager")
        self.prefix = prefix
        self.kms_key = kms_key
        self.region = session.region_name
        self.regions = tuple(r for r in regions if r != self.region)
        self._account_id: str | None = None

    def account_id(self) -> str:
        """The account that keeps these secrets: the session's own. GetCallerIdentity needs
        no permission, so it is declared nowhere."""
        if self._account_id is None:
            self._account_id = client(self._session, "sts").get_caller_identity()["Account"]
        return self._account_id

    def name(self, user_name: str) -> str:
        return f"{self.prefix}{secret_name(user_name)}"

    @requires(
        MEMBER,
        "secretsmanager:DescribeSecret",
        "secretsmanager:CreateSecret",
        "secretsmanager:PutResourcePolicy",
    )
    @requires(
        ROTATION,
        "secretsmanager:DescribeSecret",
        "secretsmanager:CreateSecret",
        "secretsmanager:PutResourcePolicy",
    )
    def ensure(self, user: User) -> str:
        """The user's secret's ARN, creating it (empty) the first time; its policy is reset."""
        name = self.name(user.name)
        try:
            described = self._secrets.describe_secret(SecretId=name)
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ResourceNotFoundException":
                raise
            described = self._secrets.create_secret(
                Name=name,
                Description=f"Access key of IAM user {user.arn}, kept by keyrotation.",
                **({"KmsKeyId": self.kms_key} if self.kms_key else {}),
            )
        self._refuse_foreign(name, described)
        arn = described["ARN"]
        self._secrets.put_resource_policy(
            SecretId=arn, ResourcePolicy=json.dumps(owner_only_policy(user.arn, user.user_id))
        )
        return arn

    @requires(MEMBER, "secretsmanager:PutSecretValue")
    @requires(ROTATION, "secretsmanager:PutSecretValue")
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
            SecretId=self.name(user.name),
            SecretString=value,
            ClientRequestToken=version,
            VersionStages=[PENDING],
        )
        return version

    @requires(MEMBER, "secretsmanager:DescribeSecret")
    @requires(ROTATION, "secretsmanager:DescribeSecret")
    def stages(self, user_name: str) -> dict[str, list[str]] | None:
        """Version id -> staging labels, or None when the user has no secret."""
        try:
            described = self._secrets.describe_secret(SecretId=self.name(user_name))
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ResourceNotFoundException":
                return None
            raise
        return dict(described.get("VersionIdsToStages", {}))

    @requires(MEMBER, "secretsmanager:DescribeSecret", "secretsmanager:UpdateSecretVersionStage")
    @requires(ROTATION, "secretsmanager:DescribeSecret", "secretsmanager:UpdateSecretVersionStage")
    def promote(self, user_name: str, version: str) -> None:
        """Make `version` the current one (the first version of a secret already is)."""
        name = self.name(user_name)
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
    @requires(ROTATION, "secretsmanager:UpdateSecretVersionStage")
    def discard_pending(self, user_name: str, version: str) -> None:
        self._secrets.update_secret_version_stage(
            SecretId=self.name(user_name), VersionStage=PENDING, RemoveFromVersionId=version
        )

    @requires(MEMBER, "secretsmanager:ListSecrets")
    @requires(ROTATION, "secretsmanager:ListSecrets")
    def missing_replicas(self) -> list[Replica]:
        """Each (secret, region) of `regions` without a replica: one listing per region."""
        if not self.regions:
            return []
        primaries = self._names(self.region)
        missing = []
        for region in self.regions:
            present = self._names(region)
            missing += [Replica(name, region) for name in sorted(primaries - present)]
        return missing

    @requires(
        MEMBER,
        "secretsmanager:DescribeSecret",
        "secretsmanager:ReplicateSecretToRegions",
        "secretsmanager:RemoveRegionsFromReplication",
    )
    @requires(
        ROTATION,
        "secretsmanager:DescribeSecret",
        "secretsmanager:ReplicateSecretToRegions",
        "secretsmanager:RemoveRegionsFromReplication",
    )
    def replicate(self, replica: Replica) -> Replica:
        """Start the replica; one that failed before is removed and started again. Raise
        ReplicaError when Secrets Manager answers that it failed."""
        described = self._secrets.describe_secret(SecretId=replica.secret)
        status = {r["Region"]: r for r in described.get("ReplicationStatus", [])}
        earlier = status.get(replica.region)
        if earlier and earlier.get("Status") == "InProgress":
            return replace(replica, done="is still being replicated")
        if earlier:
            self._secrets.remove_regions_from_replication(
                SecretId=replica.secret, RemoveReplicaRegions=[replica.region]
            )
        region = {"Region": replica.region}
        if self.kms_key:
            region["KmsKeyId"] = self.kms_key
        started = self._secrets.replicate_secret_to_regions(
            SecretId=replica.secret, AddReplicaRegions=[region]
        )
        now = {r["Region"]: r for r in started.get("ReplicationStatus", [])}.get(replica.region, {})
        if now.get("Status") == "Failed":
            raise ReplicaError(now.get("StatusMessage", "Secrets Manager gave no reason"))
        again = f" after it failed ({earlier.get('StatusMessage', '')})" if earlier else ""
        return replace(replica, done=f"was replicated{again}", retried=bool(earlier))

    def _names(self, region: str) -> set[str]:
        """Names of this store's user secrets in `region` whose primary is in ours: a secret
        of the same name made there by someone else is no replica of ours."""
        secrets = (
            self._secrets
            if region == self.region
            else client(self._session, "secretsmanager", region)
        )
        prefix = f"{self.prefix}User_"
        pages = secrets.get_paginator("list_secrets").paginate(
            Filters=[{"Key": "name", "Values": [prefix]}]
        )
        return {
            entry["Name"]
            for page in pages
            for entry in page["SecretList"]
            if entry["Name"].startswith(prefix)
            and entry.get("PrimaryRegion", region) == self.region
        }

    def _refuse_foreign(self, name: str, described: dict) -> None:
        """A secret of that name set up to copy or hand its value elsewhere gets no key."""
        replicas = {r["Region"] for r in described.get("ReplicationStatus", [])}
        key = described.get("KmsKeyId")
        foreign = [
            what
            for what, present in (
                ("a rotation function", described.get("RotationEnabled")),
                ("replicas in other regions", replicas - set(self.regions)),
                ("a KMS key keyrotation does not use", key and not self._own_key(key, described)),
            )
            if present
        ]
        if foreign:
            raise RotationError(
                f"secret {name} already exists with {', '.join(foreign)}, which keyrotation did "
                "not set up; no key was stored. Inspect the secret and delete it if it is not "
                "yours."
            )

    def _own_key(self, key: str, described: dict) -> bool:
        """The central store's key: AWS may name it by alias, id or ARN, all in this account.

        Secrets in the users' own accounts use the default key, so any key there is foreign.
        """
        if not self.kms_key:
            return False
        account = described["ARN"].split(":")[4]
        return not key.startswith("arn:") or key.split(":")[4] == account


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
