"""The organization's accounts, from AWS Organizations."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from keyrotation.aws.session import client
from keyrotation.errors import AccountError
from keyrotation.model import Account
from keyrotation.permissions import INVENTORY, requires


@requires(
    INVENTORY,
    "organizations:ListAccounts",
    "organizations:ListAccountsForParent",
    "organizations:ListOrganizationalUnitsForParent",
)
def list_accounts(
    session: boto3.Session, unit_id: str | None = None, page_size: int | None = None
) -> list[Account]:
    """Every account of the organization, or of one OU and its child OUs, in id order."""
    organizations = client(session, "organizations")
    try:
        if unit_id is None:
            accounts = list(_pages(organizations, "list_accounts", "Accounts", page_size))
        else:
            accounts = list(_accounts_under(organizations, unit_id, page_size))
    except (ClientError, BotoCoreError) as exc:
        raise AccountError(
            f"Cannot list the organization's accounts: {exc}. Run from the management account "
            "or a delegated administrator, or assume a role there."
        ) from exc
    return sorted(
        (
            Account(a["Id"], a.get("Name", ""), a.get("Email", ""), a.get("Status", "ACTIVE"))
            for a in accounts
        ),
        key=lambda a: a.account_id,
    )


def _accounts_under(organizations, unit_id: str, page_size: int | None) -> Iterator[dict]:
    units = [unit_id]
    while units:
        parent = units.pop()
        yield from _pages(
            organizations, "list_accounts_for_parent", "Accounts", page_size, ParentId=parent
        )
        for unit in _pages(
            organizations,
            "list_organizational_units_for_parent",
            "OrganizationalUnits",
            page_size,
            ParentId=parent,
        ):
            units.append(unit["Id"])


def _pages(service_client, operation: str, key: str, page_size: int | None, **kwargs):
    paginator = service_client.get_paginator(operation)
    config = {"PageSize": page_size} if page_size else {}
    for page in paginator.paginate(PaginationConfig=config, **kwargs):
        yield from page[key]
