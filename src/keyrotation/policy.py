"""The lifecycle policy: from one user's keys and records to a plan of actions.

Pure: no AWS calls and no clock reads. The README's decision table describes this module; each
branch below names the row it implements. Dates are whole UTC days.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime, timedelta

from keyrotation.errors import PolicyError
from keyrotation.model import AccessKey, Action, ActionKind, KeyRecord, Periods, Plan
from keyrotation.reasons import Reason

ROTATE, DEACTIVATE, DELETE, WARN = (
    ActionKind.ROTATE,
    ActionKind.DEACTIVATE,
    ActionKind.DELETE,
    ActionKind.WARN,
)


def decide(
    keys: Sequence[AccessKey],
    records: Mapping[str, KeyRecord],
    periods: Periods,
    now: datetime,
    forced: bool = False,
) -> Plan:
    """Plan the day's actions for one user; actions come in the order they must run."""
    if now.tzinfo is None:
        raise PolicyError("the policy needs a timezone-aware time")
    if len(keys) > 2:
        raise PolicyError(f"IAM allows two keys per user, found {len(keys)}")

    day = _Day(now.date(), periods, records)
    keys = sorted(keys, key=lambda k: (day.created(k), k.created, k.key_id))
    active = [k for k in keys if k.active]
    inactive = [k for k in keys if not k.active]

    if forced and active and not day.rotated_today(keys):
        return Plan(tuple(_forced(day, active, inactive)))

    actions: list[Action] = []
    for key in inactive:
        actions += day.inactive_key_steps(key)
    deleting = {a.key_id for a in actions if a.kind is DELETE}
    blocker = next((k for k in inactive if k.key_id not in deleting), None)

    if len(active) == 2:
        actions += _two_active(day, *active)
    elif len(active) == 1:
        actions += _one_active(day, active[0], blocker)
    return Plan(tuple(day.unwarned(actions)))


class _Day:
    """Date arithmetic for one decision: today, the periods and what was recorded."""

    def __init__(self, today: date, periods: Periods, records: Mapping[str, KeyRecord]):
        self.today = today
        self.periods = periods
        self.records = records

    def record(self, key: AccessKey) -> KeyRecord:
        return self.records.get(key.key_id, KeyRecord())

    def created(self, key: AccessKey) -> date:
        return self.record(key).created or key.created.date()

    def in_use(self, key: AccessKey) -> bool:
        """Used, or handed to its user through the secret: either way someone may rely on it."""
        return key.used or self.record(key).created is not None

    def rotation_date(self, key: AccessKey) -> date:
        return self.created(key) + timedelta(days=self.periods.rotation)

    def expired(self, key: AccessKey) -> bool:
        return self.today >= self.rotation_date(key)

    def deletion_date(self, key: AccessKey) -> date:
        # A key found inactive with nothing recorded starts its recovery period today.
        deactivated = self.record(key).deactivated or self.today
        return deactivated + timedelta(days=self.periods.recovery_grace)

    def warn_window(self, on: date) -> bool:
        return on - timedelta(days=self.periods.warn) <= self.today < on

    def act(self, kind: ActionKind, key: AccessKey, reason: Reason) -> Action:
        return Action(kind, key.key_id, reason, self.today)

    def warn(self, step: ActionKind, key: AccessKey, reason: Reason, on: date) -> Action:
        return Action(WARN, key.key_id, reason, on, step)

    def rotated_today(self, keys: Sequence[AccessKey]) -> bool:
        return any(self.created(k) >= self.today for k in keys)

    def inactive_key_steps(self, key: AccessKey) -> list[Action]:
        on = self.deletion_date(key)
        if self.today >= on:
            return [self.act(DELETE, key, Reason.RECOVER_GRACE_PERIOD_END)]
        if self.warn_window(on):
            return [self.warn(DELETE, key, Reason.KEY_PENDING_DELETION, on)]
        return []

    def used_since(self, key: AccessKey, stored: date) -> bool:
        """Used on a later day than the replacement was stored. A use on that day may have come
        before it, or be this tool's own check that the new key works."""
        return key.last_used is not None and key.last_used.date() > stored

    def replacement_used(self, new: AccessKey, stored: date) -> bool:
        """The new key used after the day it was made, so after this tool's own check of it,
        even when a run that began before midnight made it after."""
        return self.used_since(new, max(stored, new.created.date()))

    def hold_end(self, old: AccessKey, new: AccessKey, stored: date, on: date) -> date | None:
        """The last day of a hold on the old key due on `on`, or None when there is no hold."""
        if self.periods.max_hold is None or self.replacement_used(new, stored):
            return None
        if not self.used_since(old, stored):
            return None
        return on + timedelta(days=self.periods.max_hold)

    def unwarned(self, actions: list[Action]) -> list[Action]:
        """Each warning goes out once per key and reason (a daily one once a day)."""
        return [
            a
            for a in actions
            if a.kind is not WARN
            or not self.records.get(a.key_id, KeyRecord()).sent(a.reason, self.today)
        ]


def _one_active(day: _Day, key: AccessKey, blocker: AccessKey | None) -> list[Action]:
    """One active key, maybe beside an inactive key that is not deleted today."""
    if not day.expired(key):
        return _before_expiry(day, key, blocker)
    if not day.in_use(key):
        return [day.act(DELETE, key, Reason.UNUSED_EXPIRED_KEY)]
    if blocker is None:
        return [day.act(ROTATE, key, Reason.EXPIRED_ACTIVE_KEY)]
    if not day.in_use(blocker):
        return [
            day.act(DELETE, blocker, Reason.EXPIRED_INACTIVE_KEY_CONFLICT),
            day.act(ROTATE, key, Reason.EXPIRED_ACTIVE_KEY),
        ]
    # The inactive key was used once: its recovery period is kept, the rotation waits.
    on = day.deletion_date(blocker)
    return [day.warn(ROTATE, key, Reason.KEY_PENDING_DELETION_CONFLICT, on)]


def _before_expiry(day: _Day, key: AccessKey, blocker: AccessKey | None) -> list[Action]:
    on = day.rotation_date(key)
    if not day.warn_window(on):
        return []
    if not day.in_use(key):
        return [day.warn(DELETE, key, Reason.UNUSED_KEY_PENDING_DELETION, on)]
    if blocker is not None and day.deletion_date(blocker) > on:
        return [day.warn(ROTATE, key, Reason.KEY_PENDING_EXPIRATION_CONFLICT, on)]
    return [day.warn(ROTATE, key, Reason.KEY_PENDING_ROTATION, on)]


def _two_active(day: _Day, old: AccessKey, new: AccessKey) -> list[Action]:
    """Two active keys: the newer one replaced the older, which waits for deactivation."""
    replaced = day.record(old).replaced or day.created(new)
    buffer_end = replaced + timedelta(days=day.periods.inactive_buffer)
    deactivation = max(day.created(old) + timedelta(days=day.periods.inactive), buffer_end)

    # Both expired: neither can be rotated while both exist. Keep the key in use, so a key
    # nobody uses never pushes out the one an application does.
    if day.expired(new):
        lru = _least_recently_used(old, new)
        if lru is new or day.today >= buffer_end:
            return [day.act(DEACTIVATE, lru, Reason.EXPIRED_ACTIVE_KEY_CONFLICT_LRU)]

    hold_end = day.hold_end(old, new, replaced, deactivation)
    if day.today >= deactivation:
        return [_deactivate_or_hold(day, old, new, replaced, hold_end)]

    actions = []
    if day.warn_window(deactivation):
        actions.append(day.warn(DEACTIVATE, old, Reason.KEY_PENDING_DEACTIVATION, deactivation))
    new_rotation = day.rotation_date(new)
    old_gone = (hold_end or deactivation) + timedelta(days=day.periods.recovery_grace)
    if day.warn_window(new_rotation) and old_gone > new_rotation:
        lru = _least_recently_used(old, new)
        actions.append(
            day.warn(DEACTIVATE, lru, Reason.KEY_PENDING_EXPIRATION_CONFLICT, new_rotation)
        )
    return actions


def _deactivate_or_hold(
    day: _Day, old: AccessKey, new: AccessKey, stored: date, hold_end: date | None
) -> Action:
    """The old key's deactivation date is reached; an application may still need it."""
    if hold_end is not None and day.today < hold_end:
        return day.warn(DEACTIVATE, old, Reason.KEY_HELD_IN_USE, hold_end)
    if hold_end is not None:
        return day.act(DEACTIVATE, old, Reason.MAX_HOLD_PERIOD_END)
    if day.record(old).held is not None and day.replacement_used(new, stored):
        return day.act(DEACTIVATE, old, Reason.REPLACEMENT_IN_USE)
    return day.act(DEACTIVATE, old, Reason.INSTALL_GRACE_PERIOD_END)


def _forced(day: _Day, active: list[AccessKey], inactive: list[AccessKey]) -> list[Action]:
    """Forced rotation: free a slot at once if needed, then rotate the remaining key."""
    if inactive:
        return [
            day.act(DELETE, inactive[0], Reason.FORCED_INACTIVE_KEY_CONFLICT),
            day.act(ROTATE, active[0], Reason.FORCED_ROTATION),
        ]
    if len(active) == 2:
        # A key already replaced goes first: that is the one a forced rotation wants gone.
        replaced = [k for k in active if day.record(k).replaced is not None]
        victim = replaced[0] if replaced else _least_recently_used(*active)
        keep = active[1] if victim is active[0] else active[0]
        return [
            day.act(DELETE, victim, Reason.FORCED_ROTATION_CONFLICT_LRU),
            day.act(ROTATE, keep, Reason.FORCED_ROTATION),
        ]
    return [day.act(ROTATE, active[0], Reason.FORCED_ROTATION)]


def _least_recently_used(old: AccessKey, new: AccessKey) -> AccessKey:
    """A never-used key counts as least recently used; a tie goes to the older key."""
    if new.last_used is None and old.last_used is not None:
        return new
    if old.last_used is None or new.last_used is None:
        return old
    return new if new.last_used < old.last_used else old
