"""The command line as a user runs it: a separate process, talking to moto's server."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.orgs import KeySpec, UserSpec, keys_of


def cli(*args: str, credentials=None, timeout: int = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ, COLUMNS="200")
    if credentials is not None:
        env.update(
            AWS_ACCESS_KEY_ID=credentials.access_key,
            AWS_SECRET_ACCESS_KEY=credentials.secret_key,
            AWS_SESSION_TOKEN=credentials.token,
        )
    return subprocess.run(
        [sys.executable, "-m", "keyrotation", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )


def test_run_enforces_and_prints_a_table_per_account(org, tmp_path):
    account = org.account([UserSpec("alice", (KeySpec(95),))])
    credentials = org.session.get_credentials().get_frozen_credentials()

    result = cli(
        "run",
        "--enforce",
        "--account",
        account.account_id,
        "--outbox",
        str(tmp_path),
        "--set",
        f"AdminEmailAddress={'admin@example.com'}",
        credentials=credentials,
    )

    assert result.returncode == 0, result.stderr
    assert account.account_id in result.stdout
    assert "enforce mode" in result.stdout
    assert len(keys_of(account, "alice")) == 2
    assert len(list(tmp_path.glob("*.html"))) == 1


def test_run_json_is_machine_readable_and_dated(org):
    account = org.account([UserSpec("bob", (KeySpec(80),))])
    credentials = org.session.get_credentials().get_frozen_credentials()
    as_of = (org.now.date().replace(day=1)).isoformat()

    result = cli(
        "run",
        "--json",
        "--account",
        account.account_id,
        "--as-of",
        as_of,
        "--outbox",
        "unused-outbox",
        credentials=credentials,
    )

    report = json.loads(result.stdout)
    assert report["dated"] == as_of and report["mode"] == "audit"
    assert report["accounts"][0]["account_id"] == account.account_id


def test_an_account_outside_the_organization_is_bad_input(org, tmp_path):
    credentials = org.session.get_credentials().get_frozen_credentials()

    result = cli(
        "run", "--account", "999999999999", "--outbox", str(tmp_path), credentials=credentials
    )

    assert result.returncode == 2
    assert "999999999999 are not in the organization; nothing was changed" in result.stderr


def test_forcing_a_user_of_no_account_changes_nothing(org, tmp_path):
    account = org.account([UserSpec("alice", (KeySpec(95),))])
    credentials = org.session.get_credentials().get_frozen_credentials()

    result = cli(
        "run",
        "--enforce",
        "--force-rotate",
        "nobody",
        "--account",
        account.account_id,
        "--outbox",
        str(tmp_path),
        credentials=credentials,
    )

    assert result.returncode == 2
    assert "nobody" in result.stderr and "nothing was changed" in result.stderr
    assert len(keys_of(account, "alice")) == 1


BAD_INPUT = [
    (["run", "--set", "RotationPeriod=1"], "Invalid setting RotationPeriod"),
    (["run", "--set", "RotationPeriod"], "--set expects NAME=VALUE"),
    (["run", "--set", "Rotation=30"], "Unknown setting Rotation"),
    (["run", "--as-of", "2026-13-01"], "--as-of expects a date"),
    (["run", "--set", "EmailTemplateEnforce=../x.html"], "Invalid setting EmailTemplateEnforce"),
    (["run", "--set", "EmailTemplateEnforce=missing.html"], "'missing.html' not found"),
    (["run", "--config", "/nonexistent/keyrotation.toml"], "Cannot read config file"),
    (["run", "--set", "OrganizationalUnitId=bogus"], "Invalid setting OrganizationalUnitId"),
    (["run", "--set", "PendingActionWarnPeriod=200"], "must be less than RotationPeriod"),
    (["run", "--enforce", "--as-of", "2020-01-01"], "use it with --dry-run only"),
    (["run", "--as-of", "9999-12-31"], "more than ten years from today"),
    (["run", "--template-dir", "/nonexistent"], "is not a folder"),
    (["run", "--outbox", "/dev/null/x"], "cannot be used"),
]


@pytest.mark.parametrize(("args", "message"), BAD_INPUT, ids=[m for _, m in BAD_INPUT])
def test_bad_input_gets_one_clear_line_and_no_traceback(emulator, args, message):
    result = cli(*args)

    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert len(result.stderr.strip().splitlines()) == 1
