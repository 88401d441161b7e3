"""A read-only walk over the organization: each user's keys and records, changing nothing.

The report and the forecast start here. It makes the same IAM calls as an audit run, minus
the emails, so it needs only the member role's read permissions.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from keyrotation import logs
from keyrotation.aws.iam import IamAccount
from keyrotation.aws.session import assume_role
from keyrotation.errors import AccountError, KeyRotationError
from keyrotation.model import Account, UserKeys
from keyrotation.pipeline import select_accounts
from keyrotation.settings import Settings

log = logging.getLogger(__name__)

__all__ = ["Inventory", "UserKeys", "read_account", "read_organization"]


@dataclass
class Inventory:
    accounts: list[Account] = field(default_factory=list)
    users: list[UserKeys] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def read_organization(
    session: boto3.Session, settings: Settings, only_accounts: Iterable[str] = ()
) -> Inventory:
    """Every user of every ACTIVE account; a failed account is listed in `errors`."""
    inventory = Inventory()
    try:
        inventory.accounts = select_accounts(session, settings, only_accounts)
    except AccountError as exc:
        inventory.errors.append(str(exc))
        return inventory

    for account in inventory.accounts:
        try:
            member = assume_role(session, account.account_id, settings.IAMRoleName)
            inventory.users += read_account(member, account, settings, inventory.errors)
        except (AccountError, ClientError, BotoCoreError) as exc:
            inventory.errors.append(f"account {account.account_id}: {exc}")
            logs.event(log, "account failed", logging.ERROR, account=account.account_id)
    return inventory


def read_account(
    session: boto3.Session, account: Account, settings: Settings, errors: list[str]
) -> list[UserKeys]:
    iam = IamAccount(session, settings.ListPageSize)
    exempt = iam.group_members(settings.IAMExemptionGroup)
    users = []
    for user in iam.users():
        try:
            keys = tuple(iam.access_keys(user.name))
            records = iam.records(user.name)
        except (KeyRotationError, ClientError, BotoCoreError) as exc:
            errors.append(f"account {account.account_id}, user {user.name}: {exc}")
            continue
        users.append(UserKeys(account, user, keys, records, user.name in exempt))
    return users
