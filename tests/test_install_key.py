"""`keyrotation install-key` on a temporary credentials file, against moto's server."""

from __future__ import annotations

import builtins
import os
import stat
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from keyrotation.aws.iam import NewKey
from keyrotation.aws.secrets import secret_name
from keyrotation.emulator.sample import SampleAccount, add_users, use_key
from keyrotation.install_key import replace_profile_key
from tests.orgs import UserSpec, keys_of, secret_of

OTHER = (
    "# the team laptop's default\n"
    "[default]\n"
    "aws_access_key_id = AKIADEFAULTEXAMPLE\n"
    "aws_secret_access_key = default-secret-stays\n"
    "\n"
)


def holder_with_key(org, account: SampleAccount, **settings) -> dict[str, str]:
    """alice with a 95-day key in use whose secret we know, rotated into her secret."""
    add_users(account, [UserSpec("alice")], org.now)
    with time_machine.travel(org.now - timedelta(days=95), tick=False):
        current = account.session.client("iam").create_access_key(UserName="alice")["AccessKey"]
    use_key(current["AccessKeyId"], current["SecretAccessKey"])  # an unused key is not renewed
    report = org.run([account], DryRunFlag=False, **settings)
    assert report.clean, report.to_dict()
    return current


def credentials_file(
    tmp_path, current: dict[str, str], mode: int = 0o600
) -> tuple[os.PathLike, str]:
    text = (
        f"{OTHER}"
        "[app]\n"
        "# the payments service\n"
        f"aws_access_key_id = {current['AccessKeyId']}\n"
        f"aws_secret_access_key = {current['SecretAccessKey']}\n"
        "region = us-east-1\n"
    )
    path = tmp_path / "credentials"
    path.write_text(text)
    path.chmod(mode)
    return path, text


def install(path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, COLUMNS="200", AWS_SHARED_CREDENTIALS_FILE=str(path))
    return subprocess.run(
        [sys.executable, "-m", "keyrotation", "install-key", "--profile", "app", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def assert_installed(path, before: str, current, new, result) -> None:
    assert result.returncode == 0, result.stderr
    expected = before.replace(current["AccessKeyId"], new["AccessKeyId"]).replace(
        current["SecretAccessKey"], new["SecretAccessKey"]
    )
    assert path.read_text() == expected, "only the profile's two key lines change"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    (backup,) = path.parent.glob("credentials.*.bak")
    assert backup.read_text() == before and stat.S_IMODE(backup.stat().st_mode) == 0o600
    printed = result.stdout + result.stderr
    assert new["AccessKeyId"] in printed and "Restart what uses profile app" in printed
    for secret in (new["SecretAccessKey"], current["SecretAccessKey"]):
        assert secret not in printed


def test_key_from_the_users_own_secret_replaces_the_profiles_key(org, tmp_path):
    account = org.account()
    current = holder_with_key(org, account)
    new = secret_of(account, "alice")
    path, before = credentials_file(tmp_path, current)

    result = install(path)

    assert_installed(path, before, current, new, result)
    assert use_key(new["AccessKeyId"], new["SecretAccessKey"]).endswith(":user/alice")

    again = install(path)

    assert again.returncode == 0 and "already in profile app" in again.stdout
    assert len(list(tmp_path.glob("credentials.*.bak"))) == 1, "no change, no new backup"


def test_key_from_the_central_secret_replaces_the_profiles_key(org, tmp_path):
    # moto finds a secret only in the caller's own account, so alice lives in the central
    # (management) account here; the name and partial ARN are those of any member account.
    central = SampleAccount(org.management_id, "management", "m@example.com", org.session)
    current = holder_with_key(org, central, StoreSecretsInCentralAccount=True)
    new = secret_of(central, "alice", org.session)
    path, before = credentials_file(tmp_path, current)

    refused = install(path)
    assert refused.returncode == 2 and "cannot read secret User_alice_AccessKey" in refused.stderr
    assert path.read_text() == before

    result = install(path, "--central-account", org.management_id)

    assert_installed(path, before, current, new, result)
    assert f"keyrotation/users/{org.management_id}/User_alice_AccessKey" in result.stdout


def test_key_from_a_secret_named_by_its_arn_replaces_the_profiles_key(org, tmp_path):
    account = org.account()
    current = holder_with_key(org, account)
    new = secret_of(account, "alice")
    arn = account.session.client("secretsmanager").describe_secret(SecretId=secret_name("alice"))[
        "ARN"
    ]
    path, before = credentials_file(tmp_path, current)

    result = install(path, "--secret-arn", arn)

    assert_installed(path, before, current, new, result)
    assert arn in result.stdout


def test_key_that_fails_sts_is_refused_and_nothing_changes(org, tmp_path):
    account = org.account()
    current = holder_with_key(org, account)
    new = secret_of(account, "alice")
    account.session.client("iam").delete_access_key(
        UserName="alice", AccessKeyId=new["AccessKeyId"]
    )
    path, before = credentials_file(tmp_path, current)

    result = install(path)

    assert result.returncode == 2
    assert f"new key {new['AccessKeyId']}" in result.stderr
    assert "profile app was not changed" in result.stderr
    assert path.read_text() == before and not list(tmp_path.glob("*.bak"))
    assert new["SecretAccessKey"] not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "cannot read secret User_alice_AccessKey with profile app"),
        (
            ("--secret-arn", "arn:aws:secretsmanager:us-east-1:111122223333:secret:absent"),
            "cannot read secret arn:aws:secretsmanager:us-east-1:111122223333:secret:absent",
        ),
        (("--central-account", "12345"), "--central-account expects a 12-digit account id"),
    ],
)
def test_unreadable_secret_or_bad_option_is_refused_in_one_line(org, tmp_path, args, message):
    account = org.account()
    add_users(account, [UserSpec("alice")], org.now)
    current = account.session.client("iam").create_access_key(UserName="alice")["AccessKey"]
    path, before = credentials_file(tmp_path, current)

    result = install(path, *args)

    assert result.returncode == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert path.read_text() == before and keys_of(account, "alice") == {
        current["AccessKeyId"]: "Active"
    }
    assert current["SecretAccessKey"] not in result.stdout + result.stderr


def test_symlinked_credentials_file_is_written_through_and_stays_a_link(org, tmp_path):
    # given a credentials file kept in another folder (a dotfiles repository) and linked in
    account = org.account()
    current = holder_with_key(org, account)
    new = secret_of(account, "alice")
    (tmp_path / "dotfiles").mkdir()
    target, before = credentials_file(tmp_path / "dotfiles", current)
    (tmp_path / "aws").mkdir()
    link = tmp_path / "aws" / "credentials"
    link.symlink_to(target)

    # when the key is installed through the link
    result = install(link)

    # then the link still points at its target, and the target holds the new key
    assert result.returncode == 0, result.stderr
    assert link.is_symlink() and link.resolve() == target.resolve()
    assert_installed(target, before, current, new, result)
    assert list((tmp_path / "aws").iterdir()) == [link], "no backup or temporary file by the link"
    assert f"{link} is a link; wrote to its target {target.resolve()}" in result.stdout


def test_credentials_file_readable_by_others_is_tightened_to_the_owner(org, tmp_path):
    account = org.account()
    current = holder_with_key(org, account)
    new = secret_of(account, "alice")
    path, before = credentials_file(tmp_path, current, mode=0o644)

    result = install(path)

    assert_installed(path, before, current, new, result)
    assert f"Tightened the mode of {path} from 0644 to 0600" in result.stdout


def test_backup_is_never_created_readable_by_others(tmp_path, monkeypatch):
    # given a 0600 file and a umask that leaves new files readable by everyone
    current = {"AccessKeyId": "AKIAOLDKEYEXAMPLE0001", "SecretAccessKey": "old-secret"}
    path, before = credentials_file(tmp_path, current)
    created: dict[str, int] = {}
    real_os_open, real_open = os.open, builtins.open

    def spy_os_open(file, flags, mode=0o777, *args, **kwargs):
        fd = real_os_open(file, flags, mode, *args, **kwargs)
        if flags & os.O_CREAT:
            created[os.fsdecode(file)] = stat.S_IMODE(os.fstat(fd).st_mode)
        return fd

    def spy_open(file, mode="r", *args, **kwargs):
        handle = real_open(file, mode, *args, **kwargs)
        if any(letter in mode for letter in "wxa") and isinstance(file, (str, os.PathLike)):
            created[os.fsdecode(file)] = stat.S_IMODE(os.fstat(handle.fileno()).st_mode)
        return handle

    monkeypatch.setattr(os, "open", spy_os_open)
    monkeypatch.setattr(builtins, "open", spy_open)
    umask = os.umask(0o022)
    try:
        # when the profile's key is replaced
        new = NewKey("AKIANEWKEYEXAMPLE0002", datetime.now(UTC), "new-secret")
        replaced = replace_profile_key(path, "app", new)
    finally:
        os.umask(umask)

    # then the backup, holding the old key that still works, was 0600 from its first byte
    assert created[str(replaced.backup)] == 0o600, created
    assert all(mode & 0o077 == 0 for mode in created.values()), created
    assert replaced.backup.read_text() == before
