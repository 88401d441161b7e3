"""Turn an account's report into the notification: recipient, subject and template values."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from keyrotation.aws.secrets import central_prefix, secret_name
from keyrotation.model import ActionKind, Mode
from keyrotation.report import AccountReport, Outcome, Status
from keyrotation.settings import Settings

_DONE = {
    ActionKind.ROTATE: "Rotated",
    ActionKind.DEACTIVATE: "Deactivated",
    ActionKind.DELETE: "Deleted",
}
_WOULD = {
    ActionKind.ROTATE: "Would rotate",
    ActionKind.DEACTIVATE: "Would deactivate",
    ActionKind.DELETE: "Would delete",
}
_FUTURE = {
    ActionKind.ROTATE: "will be rotated",
    ActionKind.DEACTIVATE: "will be deactivated",
    ActionKind.DELETE: "will be deleted",
}


@dataclass(frozen=True)
class Notification:
    to: str
    subject: str
    template: str
    values: dict[str, Any]
    # An owner mail tells of some users only, so it never links the account's whole page.
    whole_account: bool = True


def describe(outcome: Outcome, mode: Mode) -> str:
    """One line a person can read, e.g. 'Rotated key AKIA... of user alice: ...'."""
    action = outcome.action
    code = action.reason.value
    message = action.reason.text.message
    if action.kind is ActionKind.WARN:
        assert action.step is not None
        head = f"Key {action.key_id} of user {outcome.user} {_FUTURE[action.step]} on {action.on}"
    elif outcome.status == Status.FAILED:
        head = f"FAILED to {action.kind.value.lower()} key {action.key_id} of user {outcome.user}"
    elif mode is Mode.AUDIT:
        head = f"{_WOULD[action.kind]} key {action.key_id} of user {outcome.user}"
    else:
        head = f"{_DONE[action.kind]} key {action.key_id} of user {outcome.user}"
    detail = f" ({outcome.detail})" if outcome.detail else ""
    return f"{head}: {message}{detail} [{code}]"


def build(
    report: AccountReport,
    settings: Settings,
    partition: str,
    now: datetime,
    dated: bool = False,
    central_account: str = "",
) -> Notification | None:
    """The account's email, or None when there is nothing to tell. `central_account` is the
    account keeping the secrets with StoreSecretsInCentralAccount."""
    if not report.outcomes and not report.recoveries and not report.earlier:
        return None
    account = report.account
    verb = "audit" if report.mode is Mode.AUDIT else "actions"
    values = {
        "partition_name": partition,
        "account_id": account.account_id,
        "account_name": account.name,
        "timestamp": now.strftime("%Y-%m-%d %H:%M UTC"),
        "actions": [f"Not sent before: {line}" for line in report.earlier]
        + [describe(o, report.mode) for o in report.outcomes]
        + _notes(report, with_earlier=False),
        "rotation_period": settings.RotationPeriod,
        "installation_grace_period": settings.InactiveBuffer,
        "recovery_grace_period": settings.RecoveryGracePeriod,
        "entries": [
            {**o.to_dict(), "advice": o.action.reason.text.advice, "line": describe(o, report.mode)}
            for o in report.outcomes
        ],
        "notes": _notes(report, with_earlier=True),
        "mode": report.mode.value,
        "dated": now.date().isoformat() if dated else "",
        **_secret_values(account.account_id, settings, central_account),
    }
    return Notification(
        to=account.email,
        subject=(
            f"IAM access key {verb} for account {account.name} ({account.account_id}) "
            f"on {now.date().isoformat()}" + (" (dated run)" if dated else "")
        ),
        template=settings.template_for(report.mode),
        values=values,
    )


def build_for_owner(
    report: AccountReport,
    owner: str,
    settings: Settings,
    partition: str,
    now: datetime,
    dated: bool = False,
    central_account: str = "",
) -> Notification | None:
    """The mail to one owner: only the lines about its own users, and its unsent lines."""
    own = replace(
        report,
        outcomes=[o for o in report.outcomes if report.owners.get(o.user) == owner],
        earlier=report.owner_earlier.get(owner, []),
        recoveries=[],
        owner_fallbacks=[],
    )
    notification = build(own, settings, partition, now, dated, central_account)
    if notification is None:
        return None
    account = report.account
    verb = "audit" if report.mode is Mode.AUDIT else "actions"
    day = now.date().isoformat() + (" (dated run)" if dated else "")
    return replace(
        notification,
        to=owner,
        subject=(
            f"IAM access key {verb} for your users in account {account.name} "
            f"({account.account_id}) on {day}"
        ),
        values={**notification.values, "owner_email": owner},
        whole_account=False,
    )


def _secret_values(account_id: str, settings: Settings, central_account: str) -> dict[str, str]:
    """Where a user finds a new key, and the command that installs it in a profile."""
    name = secret_name("<user name>")
    command = "keyrotation install-key --profile NAME"
    if not settings.StoreSecretsInCentralAccount:
        return {
            "secret_name": name,
            "secret_account": "the user's own account",
            "install_command": command,
        }
    return {
        "secret_name": f"{central_prefix(account_id)}{name}",
        "secret_account": (
            f"keyrotation's central account {central_account}"
            if central_account
            else "keyrotation's central account"
        ),
        "install_command": f"{command} --central-account {central_account or 'ID'}",
    }


def _notes(report: AccountReport, with_earlier: bool) -> list[str]:
    earlier = [f"Not sent before: {line}" for line in report.earlier] if with_earlier else []
    return (
        earlier
        + [f"Repaired: {note}" for note in report.recoveries]
        + [f"Owner mail: {note}" for note in report.owner_fallbacks]
    )
