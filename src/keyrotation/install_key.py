"""`keyrotation install-key`: a key holder puts the key from their secret into a profile.

Run with the profile's current key: it finds the user's secret (in the user's own account, or
in the central account), checks the new key with STS, and rewrites only that profile's two key
lines of the shared credentials file, after a backup. The secret access key is never printed.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import boto3
from botocore.exceptions import BotoCoreError, ClientError, ProfileNotFound

from keyrotation.aws.iam import NewKey
from keyrotation.aws.secrets import CURRENT, central_prefix, secret_name
from keyrotation.aws.session import DEFAULT_REGION, client
from keyrotation.aws.sts import KeyChecker
from keyrotation.errors import InstallError, RotationError
from keyrotation.model import User
from keyrotation.permissions import KEY_HOLDER, requires

SECTION = re.compile(r"^\s*\[\s*([^\]]+?)\s*\]\s*$")
OPTION = re.compile(r"^(\s*)([A-Za-z_]+)(\s*=\s*)(.*?)(\r?\n)?$")
KEY_LINES = ("aws_access_key_id", "aws_secret_access_key")
# A session token belongs to temporary credentials; next to a long-term key it breaks signing.
DROPPED = ("aws_session_token", "aws_security_token")
# The file holds secret keys: whatever its mode was, group and others lose their bits.
OWNER_ONLY = 0o600


@dataclass(frozen=True)
class Replaced:
    """The file that was rewritten (a link's target, when the path is a link) and its backup."""

    target: Path
    backup: Path
    through_link: bool
    mode_before: int
    mode: int


@dataclass(frozen=True)
class Installed:
    profile: str
    path: Path
    old_key_id: str
    new_key_id: str
    secret_id: str
    replaced: Replaced | None

    @property
    def changed(self) -> bool:
        return self.replaced is not None


def credentials_path() -> Path:
    """The shared credentials file, where the AWS CLI and SDKs look for it."""
    configured = os.environ.get("AWS_SHARED_CREDENTIALS_FILE")
    return Path(configured or "~/.aws/credentials").expanduser()


def install_key(
    profile: str,
    central_account: str | None = None,
    secret_arn: str | None = None,
    checker: KeyChecker | None = None,
) -> Installed:
    """Replace the profile's key with the current one of the user's secret, or change nothing."""
    path = credentials_path()
    old_key_id = profile_key_id(path, profile)
    session = _profile_session(profile)
    user = _caller(session, profile)
    secret_id = secret_arn or _secret_id(session, user, central_account)
    value = read_secret(session, secret_id, profile)
    new = NewKey(value["AccessKeyId"], datetime.now(UTC), value["SecretAccessKey"])
    if new.key_id == old_key_id:
        return Installed(profile, path, old_key_id, new.key_id, secret_id, None)

    try:
        (checker or KeyChecker(session.region_name, attempts=3)).check(user, new)
    except RotationError as exc:
        raise InstallError(f"{exc}; profile {profile} was not changed") from exc
    replaced = replace_profile_key(path, profile, new)
    return Installed(profile, path, old_key_id, new.key_id, secret_id, replaced)


def profile_key_id(path: Path, profile: str) -> str:
    """The access key id the profile holds in the file; refuse a profile it does not hold."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise InstallError(f"cannot read credentials file {path}: {exc.strerror}") from None
    section = None
    for line in lines:
        header = SECTION.match(line)
        if header:
            section = header.group(1)
            continue
        option = OPTION.match(line)
        if section == profile and option and option.group(2).lower() == KEY_LINES[0]:
            return option.group(4).strip()
    raise InstallError(f"profile {profile} has no aws_access_key_id in {path}; nothing was changed")


def _profile_session(profile: str) -> boto3.Session:
    try:
        session = boto3.Session(profile_name=profile)
    except ProfileNotFound as exc:
        raise InstallError(f"{exc}; nothing was changed") from None
    return boto3.Session(profile_name=profile, region_name=session.region_name or DEFAULT_REGION)


def _caller(session: boto3.Session, profile: str) -> User:
    """The IAM user the profile's current key belongs to."""
    try:
        arn = client(session, "sts").get_caller_identity()["Arn"]
    except (ClientError, BotoCoreError) as exc:
        raise InstallError(
            f"the current key of profile {profile} does not work ({exc}); nothing was changed"
        ) from exc
    if ":user/" not in arn:
        raise InstallError(f"profile {profile} is {arn}, not an IAM user's key; nothing changed")
    return User(arn.rsplit("/", 1)[1], arn)


def _secret_id(session: boto3.Session, user: User, central_account: str | None) -> str:
    """The user's own secret by name, or its central copy by partial ARN (the ARN's random
    suffix is unknown; Secrets Manager accepts the ARN without it)."""
    if central_account is None:
        return secret_name(user.name)
    partition, account = user.arn.split(":")[1], user.arn.split(":")[4]
    name = f"{central_prefix(account)}{secret_name(user.name)}"
    return f"arn:{partition}:secretsmanager:{session.region_name}:{central_account}:secret:{name}"


@requires(KEY_HOLDER, "secretsmanager:GetSecretValue")
def read_secret(session: boto3.Session, secret_id: str, profile: str) -> dict[str, str]:
    try:
        value = client(session, "secretsmanager").get_secret_value(
            SecretId=secret_id, VersionStage=CURRENT
        )
        parsed = json.loads(value["SecretString"])
        return {"AccessKeyId": parsed["AccessKeyId"], "SecretAccessKey": parsed["SecretAccessKey"]}
    except (ClientError, BotoCoreError) as exc:
        raise InstallError(
            f"cannot read secret {secret_id} with profile {profile} ({exc}); nothing was changed"
        ) from exc
    except (KeyError, TypeError, ValueError):
        raise InstallError(
            f"secret {secret_id} does not hold an access key; nothing was changed"
        ) from None


def replace_profile_key(path: Path, profile: str, key: NewKey) -> Replaced:
    """Rewrite the profile's key lines, keeping every other line; the old file is kept beside
    it as `<name>.<UTC time>.bak`. Both are readable by the owner only: the backup holds the
    old key, which works until keyrotation deactivates it. A link is written through: its
    target is rewritten in its own folder and the link stays as it was."""
    target = path.resolve()
    original = target.read_bytes()
    updated = _with_key(original.decode("utf-8").splitlines(keepends=True), profile, key)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    backup = target.with_name(f"{target.name}.{stamp}.bak")
    _write_private(backup, original)

    mode_before = target.stat().st_mode & 0o777
    mode = mode_before & OWNER_ONLY
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        os.fchmod(handle, mode)
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as file:
            file.write("".join(updated))
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return Replaced(target, backup, path.is_symlink(), mode_before, mode)


def _write_private(path: Path, content: bytes) -> None:
    """Create the file readable by its owner only from the start; never overwrite one."""
    handle = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, OWNER_ONLY)
    with os.fdopen(handle, "wb") as file:
        file.write(content)


def _with_key(lines: list[str], profile: str, key: NewKey) -> list[str]:
    values = {KEY_LINES[0]: key.key_id, KEY_LINES[1]: key.secret}
    result, section = [], None
    for line in lines:
        header = SECTION.match(line)
        if header:
            section = header.group(1)
        option = OPTION.match(line)
        name = option.group(2).lower() if option and not header else ""
        if section != profile or not name:
            result.append(line)
        elif name in values:
            indent, _, equals, _, end = option.groups()
            result.append(f"{indent}{option.group(2)}{equals}{values.pop(name)}{end or ''}")
        elif name not in DROPPED:
            result.append(line)
    if values:
        raise InstallError(f"profile {profile} has no {', '.join(values)} line; nothing changed")
    return result
