"""The decision table, row by row, on the pure policy; then its safety rules over random states."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keyrotation.errors import PolicyError
from keyrotation.model import AccessKey, ActionKind, KeyRecord, KeyStatus, Periods
from keyrotation.policy import decide
from keyrotation.reasons import WARNINGS, Reason

NOW = datetime(2026, 6, 15, 9, 30, tzinfo=UTC)
TODAY = NOW.date()
PERIODS = Periods(
    rotation=90, inactive_buffer=10, inactive=100, recovery_grace=10, warn=7, max_hold=30
)
ROTATE, DEACTIVATE, DELETE, WARN = ActionKind


def key(name: str, age: int, used: int | None = 0, active: bool = True) -> AccessKey:
    return AccessKey(
        key_id=name,
        status=KeyStatus.ACTIVE if active else KeyStatus.INACTIVE,
        created=NOW - timedelta(days=age),
        last_used=None if used is None else NOW - timedelta(days=used),
    )


def ago(days: int) -> date:
    return TODAY - timedelta(days=days)


def plan(*keys, records=None, forced=False):
    actions = decide(keys, records or {}, PERIODS, NOW, forced).actions
    return [(a.kind, a.key_id, a.reason, (a.on - TODAY).days) for a in actions]


# (row, keys, records, forced, expected [(kind, key, reason, days from today)])
DECISION_TABLE = [
    ("one active key, young", [key("A", 10)], {}, False, []),
    (
        "one active key, due soon",
        [key("A", 85)],
        {},
        False,
        [(WARN, "A", Reason.KEY_PENDING_ROTATION, 5)],
    ),
    (
        "one active key, due soon, already warned",
        [key("A", 85)],
        {"A": KeyRecord(warned=frozenset({Reason.KEY_PENDING_ROTATION}))},
        False,
        [],
    ),
    (
        "one active key, expired, used",
        [key("A", 90)],
        {},
        False,
        [(ROTATE, "A", Reason.EXPIRED_ACTIVE_KEY, 0)],
    ),
    (
        "one active key, expired, never used",
        [key("A", 90, used=None)],
        {},
        False,
        [(DELETE, "A", Reason.UNUSED_EXPIRED_KEY, 0)],
    ),
    (
        "one active key, never used, due soon",
        [key("A", 84, used=None)],
        {},
        False,
        [(WARN, "A", Reason.UNUSED_KEY_PENDING_DELETION, 6)],
    ),
    ("one active key, forced", [key("A", 5)], {}, True, [(ROTATE, "A", Reason.FORCED_ROTATION, 0)]),
    ("one inactive key, first seen", [key("A", 40, active=False)], {}, False, []),
    (
        "one inactive key, recovery ends soon",
        [key("A", 40, active=False)],
        {"A": KeyRecord(deactivated=ago(5))},
        False,
        [(WARN, "A", Reason.KEY_PENDING_DELETION, 5)],
    ),
    (
        "one inactive key, recovery over",
        [key("A", 40, active=False)],
        {"A": KeyRecord(deactivated=ago(10))},
        False,
        [(DELETE, "A", Reason.RECOVER_GRACE_PERIOD_END, 0)],
    ),
    ("one inactive key, forced: nothing to rotate", [key("A", 40, active=False)], {}, True, []),
    ("two active, replaced recently", [key("A", 92), key("B", 2)], {}, False, []),
    (
        "two active, deactivation soon",
        [key("A", 95), key("B", 5)],
        {},
        False,
        [(WARN, "A", Reason.KEY_PENDING_DEACTIVATION, 5)],
    ),
    (
        "two active, install grace over",
        [key("A", 100), key("B", 10)],
        {},
        False,
        [(DEACTIVATE, "A", Reason.INSTALL_GRACE_PERIOD_END, 0)],
    ),
    (
        "two active, buffer counts from the recorded replacement",
        [key("A", 120), key("B", 30)],
        {"A": KeyRecord(replaced=ago(4))},
        False,
        [(WARN, "A", Reason.KEY_PENDING_DEACTIVATION, 6)],
    ),
    (
        "two active, both expired, older one least recently used",
        [key("A", 97, used=30), key("B", 92, used=1)],
        {},
        False,
        [(DEACTIVATE, "A", Reason.EXPIRED_ACTIVE_KEY_CONFLICT_LRU, 0)],
    ),
    (
        "two active, both expired, newer one never used",
        [key("A", 97, used=1), key("B", 92, used=None)],
        {},
        False,
        [(DEACTIVATE, "B", Reason.EXPIRED_ACTIVE_KEY_CONFLICT_LRU, 0)],
    ),
    (
        "two active, newer one expires while the older lingers",
        [key("A", 95, used=1), key("B", 85)],
        {"A": KeyRecord(replaced=ago(1))},
        False,
        [(WARN, "A", Reason.KEY_PENDING_EXPIRATION_CONFLICT, 5)],
    ),
    (
        "two active, forced",
        [key("A", 60, used=1), key("B", 20, used=None)],
        {},
        True,
        [
            (DELETE, "B", Reason.FORCED_ROTATION_CONFLICT_LRU, 0),
            (ROTATE, "A", Reason.FORCED_ROTATION, 0),
        ],
    ),
    (
        "inactive older, active newer, recovery ends soon",
        [key("A", 110, active=False), key("B", 20)],
        {"A": KeyRecord(deactivated=ago(4))},
        False,
        [(WARN, "A", Reason.KEY_PENDING_DELETION, 6)],
    ),
    (
        "inactive older, active newer, recovery over",
        [key("A", 110, active=False), key("B", 20)],
        {"A": KeyRecord(deactivated=ago(11))},
        False,
        [(DELETE, "A", Reason.RECOVER_GRACE_PERIOD_END, 0)],
    ),
    (
        "active expired, inactive key never used",
        [key("A", 95), key("B", 30, used=None, active=False)],
        {},
        False,
        [
            (DELETE, "B", Reason.EXPIRED_INACTIVE_KEY_CONFLICT, 0),
            (ROTATE, "A", Reason.EXPIRED_ACTIVE_KEY, 0),
        ],
    ),
    (
        "active expired, used inactive key still in recovery",
        [key("A", 95), key("B", 30, active=False)],
        {"B": KeyRecord(deactivated=ago(2))},
        False,
        [(WARN, "A", Reason.KEY_PENDING_DELETION_CONFLICT, 8)],
    ),
    (
        "active expired, inactive key's recovery over",
        [key("A", 95), key("B", 30, active=False)],
        {"B": KeyRecord(deactivated=ago(10))},
        False,
        [
            (DELETE, "B", Reason.RECOVER_GRACE_PERIOD_END, 0),
            (ROTATE, "A", Reason.EXPIRED_ACTIVE_KEY, 0),
        ],
    ),
    (
        "active due soon, inactive key outlives its rotation date",
        [key("A", 85), key("B", 30, active=False)],
        {"B": KeyRecord(deactivated=ago(0))},
        False,
        [(WARN, "A", Reason.KEY_PENDING_EXPIRATION_CONFLICT, 5)],
    ),
    (
        "active and inactive, forced",
        [key("A", 50), key("B", 20, active=False)],
        {},
        True,
        [
            (DELETE, "B", Reason.FORCED_INACTIVE_KEY_CONFLICT, 0),
            (ROTATE, "A", Reason.FORCED_ROTATION, 0),
        ],
    ),
    (
        "forced again on the day of a rotation changes nothing",
        [key("A", 50), key("B", 0)],
        {"A": KeyRecord(replaced=TODAY)},
        True,
        [],
    ),
    (
        "two inactive keys, both recovered",
        [key("A", 50, active=False), key("B", 20, active=False)],
        {"A": KeyRecord(deactivated=ago(10)), "B": KeyRecord(deactivated=ago(12))},
        False,
        [
            (DELETE, "A", Reason.RECOVER_GRACE_PERIOD_END, 0),
            (DELETE, "B", Reason.RECOVER_GRACE_PERIOD_END, 0),
        ],
    ),
    (
        "two active, both expired, the old one in use: the unused one goes",
        [key("A", 120, used=0), key("B", 95, used=None)],
        {},
        False,
        [(DEACTIVATE, "B", Reason.EXPIRED_ACTIVE_KEY_CONFLICT_LRU, 0)],
    ),
    (
        "two active, forced again: the key already replaced goes, not the unused new one",
        [key("A", 60, used=0), key("B", 1, used=None)],
        {"A": KeyRecord(replaced=ago(1))},
        True,
        [
            (DELETE, "A", Reason.FORCED_ROTATION_CONFLICT_LRU, 0),
            (ROTATE, "B", Reason.FORCED_ROTATION, 0),
        ],
    ),
    (
        "a key this tool created in a dated run counts from the recorded day",
        [key("A", 95)],
        {"A": KeyRecord(created=ago(30))},
        False,
        [],
    ),
    (
        "one active key stored by this tool, never used, expired: rotated, not deleted",
        [key("A", 90, used=None)],
        {"A": KeyRecord(created=ago(90))},
        False,
        [(ROTATE, "A", Reason.EXPIRED_ACTIVE_KEY, 0)],
    ),
    (
        "two active, old key used after its replacement, new never used: held",
        [key("A", 100, used=0), key("B", 10, used=None)],
        {},
        False,
        [(WARN, "A", Reason.KEY_HELD_IN_USE, 30)],
    ),
    (
        "two active, held, warned today: quiet",
        [key("A", 105, used=0), key("B", 15, used=None)],
        {"A": KeyRecord(held=TODAY)},
        False,
        [],
    ),
    (
        "two active, held, warned yesterday: warned again today",
        [key("A", 105, used=0), key("B", 15, used=None)],
        {"A": KeyRecord(held=ago(1), warned=frozenset({Reason.KEY_PENDING_DEACTIVATION}))},
        False,
        [(WARN, "A", Reason.KEY_HELD_IN_USE, 25)],
    ),
    (
        "two active, held to the hard limit",
        [key("A", 130, used=0), key("B", 40, used=None)],
        {"A": KeyRecord(held=ago(1))},
        False,
        [(DEACTIVATE, "A", Reason.MAX_HOLD_PERIOD_END, 0)],
    ),
    (
        "two active, held key's replacement now used: deactivated at once",
        [key("A", 112, used=0), key("B", 22, used=0)],
        {"A": KeyRecord(held=ago(1))},
        False,
        [(DEACTIVATE, "A", Reason.REPLACEMENT_IN_USE, 0)],
    ),
    (
        "two active, new key used only on the day it was stored (our check): held",
        [key("A", 100, used=0), key("B", 10, used=10)],
        {},
        False,
        [(WARN, "A", Reason.KEY_HELD_IN_USE, 30)],
    ),
    (
        "two active, old key last used on the day its replacement was stored: no hold",
        [key("A", 100, used=10), key("B", 10, used=None)],
        {},
        False,
        [(DEACTIVATE, "A", Reason.INSTALL_GRACE_PERIOD_END, 0)],
    ),
    ("no keys", [], {}, False, []),
    ("no keys, forced", [], {}, True, []),
]


@pytest.mark.parametrize(
    ("keys", "records", "forced", "expected"),
    [pytest.param(k, r, f, e, id=row) for row, k, r, f, e in DECISION_TABLE],
)
def test_decision_table_row(keys, records, forced, expected):
    assert plan(*keys, records=records, forced=forced) == expected


def test_every_reason_appears_in_the_decision_table():
    seen = {reason for *_, expected in DECISION_TABLE for _, _, reason, _ in expected}
    assert seen == set(Reason)


def test_every_reason_has_a_message_and_advice():
    for reason in Reason:
        assert reason.text.message.endswith(".") and reason.text.advice.endswith(".")


def test_without_hold_a_key_in_use_is_deactivated_on_schedule():
    periods = replace(PERIODS, max_hold=None)
    keys = [key("A", 100, used=0), key("B", 10, used=None)]

    (action,) = decide(keys, {}, periods, NOW).actions

    assert (action.kind, action.key_id, action.reason) == (
        DEACTIVATE,
        "A",
        Reason.INSTALL_GRACE_PERIOD_END,
    )


def test_the_check_of_a_key_made_after_midnight_is_not_taken_for_the_switch():
    # The run began on the store day and made the new key a minute into the next day; its
    # own STS check of that key is then dated the day after the store day.
    made = datetime.combine(ago(9), datetime.min.time(), UTC) + timedelta(minutes=1)
    new = AccessKey("B", KeyStatus.ACTIVE, made, made + timedelta(seconds=2))
    records = {"A": KeyRecord(replaced=ago(10)), "B": KeyRecord(created=ago(10))}

    (action,) = decide([key("A", 100, used=0), new], records, PERIODS, NOW).actions

    assert (action.kind, action.key_id, action.reason) == (WARN, "A", Reason.KEY_HELD_IN_USE)


def test_a_hold_in_sight_warns_of_the_new_keys_expiration_conflict():
    # Periods outside the cycle checks (as after a forced rotation): the old key is due
    # tomorrow and gone in 6 days without a hold, when the new key expires; held, it lingers.
    periods = Periods(rotation=40, inactive_buffer=10, inactive=41, recovery_grace=5, warn=7)
    keys = [key("A", 40, used=0), key("B", 34, used=None)]

    def warnings(periods):
        return [(a.key_id, a.reason, a.on) for a in decide(keys, {}, periods, NOW).actions]

    deactivation = ("A", Reason.KEY_PENDING_DEACTIVATION, ago(-1))
    assert warnings(periods) == [deactivation]
    assert warnings(replace(periods, max_hold=30)) == [
        deactivation,
        ("B", Reason.KEY_PENDING_EXPIRATION_CONFLICT, ago(-6)),
    ]


def test_policy_refuses_a_naive_time():
    with pytest.raises(PolicyError, match="timezone"):
        decide([], {}, PERIODS, NOW.replace(tzinfo=None))


def test_policy_refuses_three_keys():
    with pytest.raises(PolicyError, match="two keys"):
        decide([key("A", 1), key("B", 2), key("C", 3)], {}, PERIODS, NOW)


# Safety rules, over random users and settings.
periods_strategy = st.builds(
    lambda rotation, buffer, recovery, extra, warn, hold: Periods(
        rotation, buffer, rotation + 1 + extra, recovery, warn, hold
    ),
    rotation=st.integers(3, 400),
    buffer=st.integers(1, 30),
    recovery=st.integers(1, 30),
    extra=st.integers(0, 60),
    warn=st.integers(0, 30),
    hold=st.none() | st.integers(1, 60),
).filter(lambda p: p.rotation > p.inactive_buffer + p.recovery_grace)

key_strategy = st.builds(
    lambda n, age, used, active: key(n, age, used if used is None else min(used, age), active),
    n=st.sampled_from(["A", "B"]),
    age=st.integers(0, 800),
    used=st.none() | st.integers(0, 800),
    active=st.booleans(),
)
record_strategy = st.builds(
    KeyRecord,
    replaced=st.none() | st.integers(0, 400).map(ago),
    deactivated=st.none() | st.integers(0, 400).map(ago),
)


@settings(max_examples=400, deadline=None)
@given(
    keys=st.lists(key_strategy, max_size=2, unique_by=lambda k: k.key_id),
    records=st.dictionaries(st.sampled_from(["A", "B"]), record_strategy),
    periods=periods_strategy,
    forced=st.booleans(),
)
def test_safety_rules_hold_for_any_user(keys, records, periods, forced):
    actions = decide(keys, records, periods, NOW, forced).actions
    by_id = {k.key_id: k for k in keys}
    count = len(keys)
    for action in actions:
        target = by_id[action.key_id]
        if action.kind is ROTATE:
            assert count < 2, "a key is never created while the user has two"
            assert target.active
            count += 1
        elif action.kind is DELETE:
            count -= 1
            if target.active and target.used:
                assert forced, "a used key is deleted while active only by a forced rotation"
        elif action.kind is DEACTIVATE:
            assert target.active
            newer = [k for k in keys if k.created > target.created]
            if newer:
                replaced = records.get(target.key_id, KeyRecord()).replaced
                replaced = replaced or newer[0].created.date()
                assert replaced + timedelta(days=periods.inactive_buffer) <= TODAY
                _check_hold(action.reason, target, newer[0], replaced, periods)
        else:
            assert action.on > TODAY, "a warning names a future date"
    assert count <= 2
    assert len({(a.kind, a.key_id) for a in actions}) == len(actions)


def _check_hold(reason, old, new, replaced, periods) -> None:
    """An old key used after its replacement was stored, beside a replacement not used since,
    is deactivated only at the hard limit (or as the least recently used of two expired keys)."""
    old_used = old.last_used is not None and old.last_used.date() > replaced
    new_used = new.last_used is not None and new.last_used.date() > replaced
    if periods.max_hold is not None and old_used and not new_used:
        assert reason in {Reason.MAX_HOLD_PERIOD_END, Reason.EXPIRED_ACTIVE_KEY_CONFLICT_LRU}
    if reason is Reason.MAX_HOLD_PERIOD_END:
        limit = replaced + timedelta(days=periods.inactive_buffer + periods.max_hold)
        assert limit <= TODAY


def test_warnings_carry_only_warning_reasons():
    warned = {
        reason for *_, expected in DECISION_TABLE for kind, _, reason, _ in expected if kind is WARN
    }
    acted = {
        reason
        for *_, expected in DECISION_TABLE
        for kind, _, reason, _ in expected
        if kind is not WARN
    }
    assert warned == WARNINGS
    assert not acted & WARNINGS


def test_the_readme_decision_table_names_every_reason():
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    table = readme.split("## Decision table", 1)[1].split("\n## ", 1)[0]
    assert {reason for reason in Reason if f"`{reason.value}`" in table} == set(Reason)
