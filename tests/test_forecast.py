"""The forecast against the real thing: the pipeline run day by day on moto's server."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from itertools import islice

import pytest
import time_machine
from moto.iam.models import iam_backends

from keyrotation.emulator.sample import use_key
from keyrotation.errors import SettingsError
from keyrotation.forecast import Apps, forecast, walk
from keyrotation.inventory import read_organization
from keyrotation.model import AccessKey, ActionKind, KeyRecord, KeyStatus
from keyrotation.reasons import Reason
from keyrotation.settings import validate_settings as org_settings
from tests.orgs import KeySpec, UserSpec, secret_of
from tests.test_cli import cli

DAYS = 24
USERS = [
    UserSpec("due-in-two", (KeySpec(88),)),
    UserSpec("never-used", (KeySpec(85, used_days_ago=None),)),
    UserSpec("replaced", (KeySpec(97, used_days_ago=3), KeySpec(4))),
    UserSpec(
        "blocked",
        (KeySpec(89), KeySpec(30, active=False, record=KeyRecord(deactivated=None))),
    ),
    UserSpec("young", (KeySpec(20),)),
]


def test_apps_assumption_parses_the_three_forms():
    assert [Apps.parse(text).after for text in ("now", "after:5", "never")] == [0, 5, None]
    with pytest.raises(SettingsError, match="--apps"):
        Apps.parse("later")


class Applications:
    """One application per user, doing on moto what the forecast assumes it does."""

    def __init__(self, account, users, apps: Apps):
        backend = iam_backends[account.account_id]["global"]
        self.secrets = {k.access_key_id: k.secret_access_key for k in backend.access_keys.values()}
        self.account = account
        self.apps = apps
        self.current = {}
        for user in users:
            used = [k for k in user.keys if k.active and k.used]
            if used:
                self.current[user.user.name] = max(used, key=lambda k: k.last_used).key_id
        self.pending = {}
        self.labels = {u.user.name: {k.key_id: k.key_id for k in u.keys} for u in users}

    def use_keys(self) -> None:
        iam = self.account.session.client("iam")
        for user, key_id in self.current.items():
            listed = iam.list_access_keys(UserName=user)["AccessKeyMetadata"]
            if any(k["AccessKeyId"] == key_id and k["Status"] == "Active" for k in listed):
                use_key(key_id, self.secrets[key_id])

    def stored(self, user: str, day: int) -> None:
        secret = secret_of(self.account, user)
        self.secrets[secret["AccessKeyId"]] = secret["SecretAccessKey"]
        labels = self.labels[user]
        labels[secret["AccessKeyId"]] = f"new-key-{len(labels) - len(self._originals(user)) + 1}"
        if self.apps.after is not None:
            self.pending[user] = (secret["AccessKeyId"], day + self.apps.after)

    def _originals(self, user: str) -> list[str]:
        return [k for k, label in self.labels[user].items() if k == label]

    def switch(self, day: int) -> None:
        for user, (key_id, on) in list(self.pending.items()):
            if day >= on:
                self.current[user] = key_id
                del self.pending[user]
                use_key(key_id, self.secrets[key_id])


# A short hold, so that holds end within DAYS: due-in-two is rotated on day 2, due for
# deactivation on day 12 and held, at most to day 17.
SHORT_HOLD = {"MaxHoldDays": 5}
# Which reasons of the hold each assumption must show.
HOLD_REASONS = {
    "now": set(),
    "after:3": set(),
    "after:13": {Reason.KEY_HELD_IN_USE, Reason.REPLACEMENT_IN_USE},
    "never": {Reason.KEY_HELD_IN_USE, Reason.MAX_HOLD_PERIOD_END},
}


@pytest.mark.parametrize("apps", list(HOLD_REASONS))
def test_forecast_matches_the_pipeline_run_day_by_day(org, apps):
    account = org.account(USERS)
    settings = org.settings(DryRunFlag=False, **SHORT_HOLD)
    start = org.now
    assumption = Apps.parse(apps)

    # Given today's state, the forecast.
    users = read_organization(org.session, settings, [account.account_id]).users
    predicted = [
        (e.day - start.date(), e.user, e.action.kind, e.action.key_id, e.action.reason,
         e.action.on - start.date())
        for e in forecast(users, settings.periods, start, DAYS, assumption)
    ]  # fmt: skip

    # When the real pipeline runs every day, with applications doing what was assumed.
    applications = Applications(account, users, assumption)
    happened = []
    for day in range(DAYS):
        with time_machine.travel(start + timedelta(days=day), tick=True):
            applications.use_keys()
        report = org.run([account], days=day, DryRunFlag=False, **SHORT_HOLD)
        assert report.clean, report.to_dict()
        for outcome in report.accounts[0].outcomes:
            if outcome.action.kind is ActionKind.ROTATE:
                applications.stored(outcome.user, day)
        for outcome in report.accounts[0].outcomes:
            action = outcome.action
            happened.append(
                (timedelta(days=day), outcome.user, action.kind,
                 applications.labels[outcome.user][action.key_id], action.reason,
                 action.on - start.date())
            )  # fmt: skip
        with time_machine.travel(start + timedelta(days=day, hours=1), tick=True):
            applications.switch(day)

    # Then both have the same events on the same days.
    assert sorted(happened, key=str) == sorted(predicted, key=str)
    kinds = {kind for _, _, kind, *_ in predicted}
    assert kinds == set(ActionKind), "the scenario walks every kind of step"
    reasons = {reason for *_, reason, _ in predicted}
    hold = {Reason.KEY_HELD_IN_USE, Reason.MAX_HOLD_PERIOD_END, Reason.REPLACEMENT_IN_USE}
    assert reasons & hold == HOLD_REASONS[apps]


def test_a_held_key_is_warned_every_day_of_the_hold_then_deactivated():
    start = datetime(2026, 6, 1, tzinfo=UTC)
    keys = [
        AccessKey("OLD", KeyStatus.ACTIVE, start - timedelta(days=100), start),
        AccessKey("NEW", KeyStatus.ACTIVE, start - timedelta(days=10)),
    ]
    periods = replace(org_settings({}).periods, max_hold=5)

    days = list(islice(walk(keys, {}, periods, start, Apps.parse("never")), 7))

    steps = [[(a.kind, a.key_id, a.reason, a.on - start.date()) for a in acts] for _, acts in days]
    held = (ActionKind.WARN, "OLD", Reason.KEY_HELD_IN_USE, timedelta(days=5))
    assert steps[:5] == [[held]] * 5
    assert steps[5] == [
        (ActionKind.DEACTIVATE, "OLD", Reason.MAX_HOLD_PERIOD_END, timedelta(days=5))
    ]
    assert steps[6] == []


def test_a_new_key_nobody_uses_is_rotated_at_expiry_as_the_pipeline_does_not_deleted():
    start = datetime(2026, 6, 1, tzinfo=UTC)
    keys = [AccessKey("OLD", KeyStatus.ACTIVE, start - timedelta(days=90), start)]
    periods = org_settings({}).periods

    days = islice(walk(keys, {}, periods, start, Apps.parse("never")), 91)
    changes = [(a.key_id, a.reason) for _, actions in days for a in actions if a.changes]

    assert ("new-key-1", Reason.EXPIRED_ACTIVE_KEY) in changes
    assert ("new-key-1", Reason.UNUSED_EXPIRED_KEY) not in changes


def test_forecast_command_lists_dated_events(org):
    account = org.account([UserSpec("kim", (KeySpec(88),))])
    credentials = org.session.get_credentials().get_frozen_credentials()

    result = cli(
        "forecast", "--days", "25", "--apps", "after:2", "--account", account.account_id,
        "--json", credentials=credentials,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert '"apps": "after:2"' in result.stdout
    for action in ("WARN", "ROTATE", "DEACTIVATE", "DELETE"):
        assert f'"action": "{action}"' in result.stdout
