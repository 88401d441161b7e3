"""Build organizations on the emulator: accounts, users, and keys of any age and use.

moto stamps a key with the current time and records its last use when a request is signed
with it, so ages and uses are made by moving this process's clock (the server shares it).
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import boto3
import time_machine

from keyrotation.aws import records as record_tags
from keyrotation.model import KeyRecord

REGION = "us-east-1"


@dataclass(frozen=True)
class KeySpec:
    """A key to create: `age` days old, used `used_days_ago` days ago (None: never)."""

    age: int
    used_days_ago: int | None = 0
    active: bool = True
    record: KeyRecord | None = None


@dataclass(frozen=True)
class UserSpec:
    name: str
    keys: tuple[KeySpec, ...] = ()
    path: str = "/"
    exempt: bool = False


@dataclass
class SampleAccount:
    account_id: str
    name: str
    email: str
    session: boto3.Session
    key_ids: dict[str, list[str]] = field(default_factory=dict)


def session_in(account_id: str, base: boto3.Session | None = None) -> boto3.Session:
    """A session in any account: moto lets every role name be assumed in every account."""
    base = base or boto3.Session(region_name=REGION)
    credentials = base.client("sts").assume_role(
        RoleArn=f"arn:aws:iam::{account_id}:role/sample-builder", RoleSessionName="sample"
    )["Credentials"]
    return boto3.Session(
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
        region_name=REGION,
    )


def new_management_session(seed: int | None = None) -> boto3.Session:
    """A fresh management account with its own organization, so tests never share one."""
    account_id = f"{random.Random(seed).randrange(10**11, 10**12):012d}"
    session = session_in(account_id)
    session.client("organizations").create_organization(FeatureSet="ALL")
    return session


def add_account(management: boto3.Session, name: str, email: str) -> SampleAccount:
    organizations = management.client("organizations")
    status = organizations.create_account(AccountName=name, Email=email)["CreateAccountStatus"]
    account_id = status["AccountId"]
    return SampleAccount(account_id, name, email, session_in(account_id))


def add_users(
    account: SampleAccount,
    users: Iterable[UserSpec],
    now: datetime,
    exemption_group: str = "IAMKeyRotationExemptionGroup",
) -> None:
    iam = account.session.client("iam")
    for user in users:
        iam.create_user(UserName=user.name, Path=user.path)
        if user.exempt:
            _ensure_group(iam, exemption_group)
            iam.add_user_to_group(GroupName=exemption_group, UserName=user.name)
        account.key_ids[user.name] = [
            _add_key(account, iam, user.name, spec, now) for spec in user.keys
        ]


def _ensure_group(iam, group: str) -> None:
    try:
        iam.get_group(GroupName=group)
    except iam.exceptions.NoSuchEntityException:
        iam.create_group(GroupName=group)


def _add_key(account: SampleAccount, iam, user: str, spec: KeySpec, now: datetime) -> str:
    with time_machine.travel(now - timedelta(days=spec.age), tick=False):
        key = iam.create_access_key(UserName=user)["AccessKey"]
    if spec.used_days_ago is not None:
        with time_machine.travel(now - timedelta(days=spec.used_days_ago), tick=False):
            use_key(key["AccessKeyId"], key["SecretAccessKey"])
    if not spec.active:
        iam.update_access_key(UserName=user, AccessKeyId=key["AccessKeyId"], Status="Inactive")
    if spec.record is not None:
        iam.tag_user(
            UserName=user,
            Tags=[
                {
                    "Key": record_tags.tag_key(key["AccessKeyId"]),
                    "Value": record_tags.encode(spec.record),
                }
            ],
        )
    return key["AccessKeyId"]


def use_key(key_id: str, secret: str) -> str:
    """Sign one request with the key, as an application would; returns the caller's ARN."""
    sts = boto3.client(
        "sts",
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        aws_session_token=None,
        region_name=REGION,
    )
    return sts.get_caller_identity()["Arn"]


def utc(year: int, month: int, day: int) -> datetime:
    return datetime(year, month, day, 12, tzinfo=UTC)
