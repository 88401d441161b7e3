"""What a run did and found: outcomes per action, a report per account, one per run."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from keyrotation.model import Account, Action, ActionKind, Mode, UserKeys


class Status:
    DONE = "done"
    PLANNED = "planned"
    FAILED = "failed"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class Outcome:
    """One action for one key, and what became of it. Never holds key material."""

    user: str
    action: Action
    status: str
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "user": self.user,
            "key_id": self.action.key_id,
            "action": self.action.kind.value,
            "step": self.action.step.value if self.action.step else None,
            "reason": self.action.reason.value,
            "date": self.action.on.isoformat(),
            "status": self.status,
            "detail": self.detail,
        }


@dataclass
class AccountReport:
    account: Account
    mode: Mode
    users_scanned: int = 0
    users_exempt: int = 0
    outcomes: list[Outcome] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    not_scanned: list[str] = field(default_factory=list)
    recoveries: list[str] = field(default_factory=list)
    earlier: list[str] = field(default_factory=list)
    forced_found: set[str] = field(default_factory=set)
    busy: str = ""
    failed: bool = False
    notification: str = "not needed"
    # How the users were read: "credential report", "per-user", or why the report was not used.
    scan: str = "not scanned"
    # Owner mails (ResourceOwnerTag): each user's owner address, the lines not yet sent to
    # each owner, what became of each owner's mail, and users told the account email instead.
    owners: dict[str, str] = field(default_factory=dict)
    owner_earlier: dict[str, list[str]] = field(default_factory=dict)
    owner_mails: dict[str, str] = field(default_factory=dict)
    owner_fallbacks: list[str] = field(default_factory=list)
    # Each user's keys as last read, for the compliance report; kept only when it is written.
    keys: list[UserKeys] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.failed and not self.errors and not self.not_scanned

    def count(self, kind: ActionKind) -> int:
        return sum(1 for o in self.outcomes if o.action.kind is kind and o.status != Status.FAILED)

    def to_dict(self) -> dict[str, Any]:
        kinds = Counter(o.action.kind.value for o in self.outcomes if o.status != Status.FAILED)
        return {
            "account_id": self.account.account_id,
            "account_name": self.account.name,
            "mode": self.mode.value,
            "users_scanned": self.users_scanned,
            "users_exempt": self.users_exempt,
            "actions": dict(kinds),
            "outcomes": [o.to_dict() for o in self.outcomes],
            "errors": self.errors,
            "skipped": self.skipped,
            "not_scanned": self.not_scanned,
            "recoveries": self.recoveries,
            "earlier": self.earlier,
            "busy": self.busy,
            "failed": self.failed,
            "scan": self.scan,
            "notification": self.notification,
            "owner_mails": self.owner_mails,
            "owner_fallbacks": self.owner_fallbacks,
        }


@dataclass
class RunReport:
    run_id: str
    started: datetime
    mode: Mode
    dated: date | None = None
    accounts: list[AccountReport] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.errors and all(a.clean for a in self.accounts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "started": self.started.isoformat(),
            "mode": self.mode.value,
            "dated": self.dated.isoformat() if self.dated else None,
            "clean": self.clean,
            "errors": self.errors,
            "accounts": [a.to_dict() for a in self.accounts],
        }
