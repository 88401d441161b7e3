"""The IAM credential report of one account: generated, awaited with a bound, parsed once.

The report is CSV. Its date columns may hold `N/A`, `no_information` or `not_supported`
instead of a date; a key slot whose `active` column is false still holds an inactive key when
its `last_rotated` column has a date; slot 2 may hold the older key; the first row is the
account's root (`<root_account>`), not an IAM user. It carries no access key ids, so it can
only tell which users to read live, never which key to act on.
"""

from __future__ import annotations

import csv
import io
import logging
import time
from dataclasses import dataclass
from datetime import datetime

from botocore.exceptions import BotoCoreError, ClientError

from keyrotation.errors import CredentialReportError, ReportNotReadyError
from keyrotation.model import AccessKey, KeyStatus
from keyrotation.permissions import MEMBER, requires

log = logging.getLogger(__name__)

ROOT_ROW = "<root_account>"
SLOTS = (1, 2)
NO_DATE = frozenset({"N/A", "no_information", "not_supported", ""})
KEY_COLUMNS = ("active", "last_rotated", "last_used_date")
REQUIRED_COLUMNS = (
    "user",
    "arn",
    *(f"access_key_{slot}_{column}" for slot in SLOTS for column in KEY_COLUMNS),
)
# AWS builds a report in seconds for most accounts and minutes for very large ones: ask again
# after 0.5 s, then wait twice as long each time up to 5 s, for about a minute and a half.
POLL_ATTEMPTS = 20
POLL_FIRST_DELAY_SECONDS = 0.5
POLL_MAX_DELAY_SECONDS = 5.0
# Errors that mean the report may become ready if asked again.
NOT_READY = frozenset({"ReportInProgress", "ReportNotPresent"})


@dataclass(frozen=True)
class ReportedKey:
    """One key slot that holds a key. `created` is the slot's `last_rotated` date."""

    slot: int
    active: bool
    created: datetime
    last_used: datetime | None

    def as_access_key(self) -> AccessKey:
        """The key as the policy takes it; the id is a stand-in, the report has none."""
        status = KeyStatus.ACTIVE if self.active else KeyStatus.INACTIVE
        return AccessKey(f"slot-{self.slot}", status, self.created, self.last_used)


@dataclass(frozen=True)
class ReportedUser:
    name: str
    arn: str
    keys: tuple[ReportedKey, ...]

    @property
    def path(self) -> str:
        """The user's path, from its ARN: `arn:aws:iam::1:user/team/alice` -> `/team/`."""
        resource = self.arn.split(":", 5)[-1].removeprefix("user")
        return resource[: resource.rfind("/") + 1] or "/"


@dataclass(frozen=True)
class CredentialReport:
    generated: datetime | None
    users: tuple[ReportedUser, ...]


@requires(MEMBER, "iam:GenerateCredentialReport", "iam:GetCredentialReport")
def read_credential_report(iam, attempts: int = POLL_ATTEMPTS) -> CredentialReport:
    """Ask for a fresh report, wait for it at most `attempts` times, and parse it.

    Raises ReportNotReadyError when the wait runs out, CredentialReportError when the report
    cannot be had at all (denied, expired, unreadable). `iam` is a boto3 IAM client."""
    waited = 0.0
    for attempt in range(attempts):
        if attempt:
            delay = min(POLL_FIRST_DELAY_SECONDS * 2 ** (attempt - 1), POLL_MAX_DELAY_SECONDS)
            _sleep(delay)
            waited += delay
        try:
            if iam.generate_credential_report()["State"] != "COMPLETE":
                continue
            response = iam.get_credential_report()
        except ClientError as exc:
            if _code(exc) in NOT_READY:
                continue
            raise CredentialReportError(f"the credential report cannot be read: {exc}") from exc
        except BotoCoreError as exc:
            raise CredentialReportError(f"the credential report cannot be read: {exc}") from exc
        return CredentialReport(response.get("GeneratedTime"), parse(response["Content"]))
    raise ReportNotReadyError(
        f"not scanned: the IAM credential report was still being generated after {attempts} "
        f"attempts over {waited:.0f} s. Run again later, or set ScanMethod=per-user."
    )


def parse(content: bytes | str) -> tuple[ReportedUser, ...]:
    """Every IAM user of the report, root excluded. Any row that does not read raises."""
    text = content.decode("utf-8") if isinstance(content, bytes) else content
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or ())]
    if missing:
        raise CredentialReportError(
            f"the credential report lacks the column(s) {', '.join(missing)}"
        )
    return tuple(_user(row, number) for number, row in enumerate(reader, 2) if _is_user(row))


def _is_user(row: dict[str, str | None]) -> bool:
    return row.get("user") != ROOT_ROW


def _user(row: dict[str, str | None], line: int) -> ReportedUser:
    name, arn = row.get("user") or "", row.get("arn") or ""
    if not name or ":user/" not in arn:
        raise CredentialReportError(f"credential report line {line} names no IAM user")
    keys = tuple(key for slot in SLOTS if (key := _key(row, slot, line)) is not None)
    return ReportedUser(name, arn, keys)


def _key(row: dict[str, str | None], slot: int, line: int) -> ReportedKey | None:
    """The key in one slot, or None for an empty slot. `active` false is not enough to say
    the slot is empty: an inactive key has `active` false and a `last_rotated` date."""
    active = _flag(row.get(f"access_key_{slot}_active"), line)
    created = _date(row.get(f"access_key_{slot}_last_rotated"), line)
    if created is None:
        if active:
            raise CredentialReportError(
                f"credential report line {line}: key {slot} is active but has no date"
            )
        return None
    last_used = _date(row.get(f"access_key_{slot}_last_used_date"), line)
    return ReportedKey(slot, active, created, last_used)


def _flag(text: str | None, line: int) -> bool:
    if text in ("true", "false"):
        return text == "true"
    raise CredentialReportError(f"credential report line {line}: {text!r} is not true or false")


def _date(text: str | None, line: int) -> datetime | None:
    if text is None or text in NO_DATE:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise CredentialReportError(
            f"credential report line {line}: {text!r} is not a date"
        ) from None
    if value.tzinfo is None:
        raise CredentialReportError(f"credential report line {line}: {text!r} has no time zone")
    return value


def _sleep(seconds: float) -> None:
    time.sleep(seconds)


def _code(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Code", "")
