"""The domain's values: accounts, users, keys, lifecycle records, actions and plans."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime

from keyrotation.reasons import DAILY_WARNINGS, Reason


class KeyStatus(enum.StrEnum):
    ACTIVE = "Active"
    INACTIVE = "Inactive"


class ActionKind(enum.StrEnum):
    ROTATE = "ROTATE"
    DEACTIVATE = "DEACTIVATE"
    DELETE = "DELETE"
    WARN = "WARN"


class Mode(enum.StrEnum):
    AUDIT = "audit"
    ENFORCE = "enforce"


@dataclass(frozen=True)
class Account:
    account_id: str
    name: str
    email: str
    status: str = "ACTIVE"


@dataclass(frozen=True)
class User:
    name: str
    arn: str
    path: str = "/"
    user_id: str = ""


@dataclass(frozen=True)
class AccessKey:
    key_id: str
    status: KeyStatus
    created: datetime
    last_used: datetime | None = None

    @property
    def active(self) -> bool:
        return self.status is KeyStatus.ACTIVE

    @property
    def used(self) -> bool:
        return self.last_used is not None


@dataclass(frozen=True)
class KeyRecord:
    """Lifecycle dates IAM does not keep, recorded by this tool beside the key."""

    replaced: date | None = None
    deactivated: date | None = None
    warned: frozenset[Reason] = frozenset()
    # The day this tool created the key; differs from IAM's date only in runs dated --as-of.
    created: date | None = None
    # The last day a warning that the key's deactivation is held was sent.
    held: date | None = None

    def sent(self, reason: Reason, today: date) -> bool:
        """Whether this warning already went out: a daily one today, any other ever."""
        if reason in DAILY_WARNINGS:
            return self.held == today
        return reason in self.warned

    def after_warning(self, reason: Reason, today: date) -> KeyRecord:
        if reason in DAILY_WARNINGS:
            return replace(self, held=today)
        return replace(self, warned=self.warned | {reason})


@dataclass(frozen=True)
class Periods:
    """The lifecycle settings, in days, as the pure policy needs them."""

    rotation: int
    inactive_buffer: int
    inactive: int
    recovery_grace: int
    warn: int
    # Days a replaced key still in use may stay active past its deactivation date, waiting
    # for its replacement to be used; None: no hold (HoldWhileInUse false).
    max_hold: int | None = None


@dataclass(frozen=True)
class Action:
    """One step for one key. For WARN, `step` is the warned step and `on` its date."""

    kind: ActionKind
    key_id: str
    reason: Reason
    on: date
    step: ActionKind | None = None

    @property
    def changes(self) -> bool:
        return self.kind is not ActionKind.WARN


@dataclass(frozen=True)
class Plan:
    actions: tuple[Action, ...] = field(default_factory=tuple)

    @property
    def changes(self) -> tuple[Action, ...]:
        return tuple(a for a in self.actions if a.changes)

    @property
    def warnings(self) -> tuple[Action, ...]:
        return tuple(a for a in self.actions if not a.changes)


@dataclass(frozen=True)
class UserKeys:
    """One user as read today: its keys, the records kept beside them, and its exemption."""

    account: Account
    user: User
    keys: tuple[AccessKey, ...]
    records: Mapping[str, KeyRecord]
    exempt: bool = False
