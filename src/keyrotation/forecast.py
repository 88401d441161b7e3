"""The policy run forward, day by day, from today's keys and records. Pure: no AWS, no clock.

Each simulated day does what an enforce run would: date inactive keys on first sight, decide,
apply the plan, decide again after changes, and record the warnings sent. Applications are
modelled as one per user, using its most recently used active key every day and switching to
a new key when the chosen assumption says so.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from itertools import islice

from keyrotation.errors import SettingsError
from keyrotation.inventory import UserKeys
from keyrotation.model import AccessKey, Account, Action, ActionKind, KeyRecord, KeyStatus, Periods
from keyrotation.pipeline import MAX_ROUNDS
from keyrotation.policy import decide

NEW_KEY = "new-key-{}"


@dataclass(frozen=True)
class Apps:
    """When applications start using a new key: `after` days after it is stored, or never."""

    after: int | None = 0

    @classmethod
    def parse(cls, text: str) -> Apps:
        if text == "now":
            return cls(0)
        if text == "never":
            return cls(None)
        name, _, days = text.partition(":")
        if name == "after" and days.isdigit():
            return cls(int(days))
        raise SettingsError(f"--apps expects now, after:DAYS or never, got {text!r}")

    def __str__(self) -> str:
        if self.after is None:
            return "never"
        return "now" if self.after == 0 else f"after:{self.after}"


@dataclass(frozen=True)
class ForecastEvent:
    day: date
    account: Account
    user: str
    action: Action


class _SimulatedUser:
    def __init__(self, keys: Iterable[AccessKey], records: Mapping[str, KeyRecord], apps: Apps):
        self.keys = list(keys)
        self.records = dict(records)
        self.apps = apps
        self.created = 0
        self.pending: tuple[str, date] | None = None
        used = [k for k in self.keys if k.active and k.used]
        self.app_key = max(used, key=lambda k: k.last_used).key_id if used else None

    def day(self, periods: Periods, now: datetime) -> list[Action]:
        self._use(self.app_key, now)
        actions = self._run(periods, now)
        if self.pending and now.date() >= self.pending[1]:
            self.app_key = self.pending[0]
            self.pending = None
            self._use(self.app_key, now)
        return actions

    def _run(self, periods: Periods, now: datetime) -> list[Action]:
        self._keep_records(now.date())
        done: list[Action] = []
        seen: set[tuple] = set()
        for _ in range(MAX_ROUNDS):
            plan = decide(self.keys, self.records, periods, now)
            fresh = [a for a in plan.actions if (a.key_id, a.kind, a.reason) not in seen]
            seen.update((a.key_id, a.kind, a.reason) for a in fresh)
            for action in fresh:
                self._apply(action, now)
            done += fresh
            if not any(a.changes for a in fresh):
                break
        return done

    def _keep_records(self, today: date) -> None:
        ids = {k.key_id for k in self.keys}
        self.records = {k: r for k, r in self.records.items() if k in ids}
        for key in self.keys:
            record = self.records.get(key.key_id, KeyRecord())
            if not key.active and record.deactivated is None:
                self.records[key.key_id] = replace(record, deactivated=today)

    def _apply(self, action: Action, now: datetime) -> None:
        record = self.records.get(action.key_id, KeyRecord())
        if action.kind is ActionKind.WARN:
            self.records[action.key_id] = record.after_warning(action.reason, now.date())
        elif action.kind is ActionKind.ROTATE:
            self.created += 1
            new = AccessKey(NEW_KEY.format(self.created), KeyStatus.ACTIVE, now)
            self.keys.append(new)
            self.records[new.key_id] = KeyRecord(created=now.date())
            self.records[action.key_id] = replace(record, replaced=now.date())
            if self.apps.after is not None:
                self.pending = (new.key_id, now.date() + timedelta(days=self.apps.after))
        elif action.kind is ActionKind.DEACTIVATE:
            self._set(action.key_id, status=KeyStatus.INACTIVE)
            self.records[action.key_id] = replace(record, deactivated=now.date())
        elif action.kind is ActionKind.DELETE:
            self.keys = [k for k in self.keys if k.key_id != action.key_id]
            self.records.pop(action.key_id, None)

    def _use(self, key_id: str | None, now: datetime) -> None:
        key = next((k for k in self.keys if k.key_id == key_id), None)
        if key is not None and key.active:
            self._set(key.key_id, last_used=now)

    def _set(self, key_id: str, **changes) -> None:
        self.keys = [replace(k, **changes) if k.key_id == key_id else k for k in self.keys]


def walk(
    keys: Iterable[AccessKey],
    records: Mapping[str, KeyRecord],
    periods: Periods,
    start: datetime,
    apps: Apps = Apps(),
) -> Iterator[tuple[date, list[Action]]]:
    """Each day's actions from `start` on, without end. New keys are named `new-key-<n>`."""
    user = _SimulatedUser(keys, records, apps)
    day = 0
    while True:
        now = start + timedelta(days=day)
        yield now.date(), user.day(periods, now)
        day += 1


def forecast(
    users: Iterable[UserKeys], periods: Periods, start: datetime, days: int, apps: Apps
) -> list[ForecastEvent]:
    """Every dated action of the next `days` days (today included), exempt users left out."""
    events = [
        ForecastEvent(day, user.account, user.user.name, action)
        for user in users
        if not user.exempt
        for day, actions in islice(walk(user.keys, user.records, periods, start, apps), days)
        for action in actions
    ]
    return sorted(events, key=lambda e: (e.day, e.account.account_id, e.user))
