"""Lifecycle records kept as IAM user tags, one tag per key: `keyrotation:<key id>`.

IAM tag values allow letters, digits, spaces and `_.:/=+-@`, so a record reads
`replaced=2026-12-04 deactivated=2026-12-14 warned=KEY_PENDING_ROTATION/KEY_PENDING_DELETION`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date

from keyrotation.model import KeyRecord
from keyrotation.reasons import Reason

TAG_PREFIX = "keyrotation:"
EARLIEST, LATEST = date(2000, 1, 1), date(2999, 12, 31)
ROTATION_TAG = "keyrotation:rotation-in-progress"
_KEY_ID = re.compile(r"^[A-Z0-9]{16,128}$")
_CODES = frozenset(reason.value for reason in Reason)


def tag_key(key_id: str) -> str:
    return f"{TAG_PREFIX}{key_id}"


def encode(record: KeyRecord) -> str:
    parts = []
    if record.replaced:
        parts.append(f"replaced={record.replaced.isoformat()}")
    if record.deactivated:
        parts.append(f"deactivated={record.deactivated.isoformat()}")
    if record.warned:
        parts.append("warned=" + "/".join(sorted(record.warned)))
    if record.created:
        parts.append(f"created={record.created.isoformat()}")
    if record.held:
        parts.append(f"held={record.held.isoformat()}")
    return " ".join(parts)


def decode(value: str) -> KeyRecord:
    """Read a record; a part that does not parse is dropped, so the policy falls back to IAM."""
    fields: dict[str, str] = {}
    for part in value.split():
        name, _, text = part.partition("=")
        fields[name] = text
    return KeyRecord(
        replaced=_date(fields.get("replaced")),
        deactivated=_date(fields.get("deactivated")),
        warned=frozenset(
            Reason(code) for code in fields.get("warned", "").split("/") if code in _CODES
        ),
        created=_date(fields.get("created")),
        held=_date(fields.get("held")),
    )


@dataclass(frozen=True)
class PendingRotation:
    """A rotation that was started and not finished: which key it replaces, and when."""

    old_key_id: str
    started: date
    new_key_id: str = ""


@dataclass(frozen=True)
class Lifecycle:
    """Everything this tool keeps on one user: per-key records and a rotation under way."""

    records: dict[str, KeyRecord]
    rotation: PendingRotation | None = None
    # Every tag of the user as read, for settings that name a tag (ResourceOwnerTag): one
    # ListUserTags call serves both.
    tags: Mapping[str, str] = field(default_factory=dict)


def lifecycle_from_tags(tags: Mapping[str, str]) -> Lifecycle:
    records = {
        name.removeprefix(TAG_PREFIX): decode(value)
        for name, value in tags.items()
        if name.startswith(TAG_PREFIX) and _KEY_ID.match(name.removeprefix(TAG_PREFIX))
    }
    return Lifecycle(records, _rotation(tags.get(ROTATION_TAG)), dict(tags))


def records_from_tags(tags: Mapping[str, str]) -> dict[str, KeyRecord]:
    return lifecycle_from_tags(tags).records


def encode_rotation(rotation: PendingRotation) -> str:
    text = f"old={rotation.old_key_id} started={rotation.started.isoformat()}"
    return f"{text} new={rotation.new_key_id}" if rotation.new_key_id else text


def _rotation(value: str | None) -> PendingRotation | None:
    if not value:
        return None
    fields = dict(part.partition("=")[::2] for part in value.split())
    started = _date(fields.get("started"))
    if not fields.get("old") or started is None:
        return None
    return PendingRotation(fields["old"], started, fields.get("new", ""))


def _date(text: str | None) -> date | None:
    """A date, or None for anything else. Dates far from now are edits by hand, not ours."""
    if not text:
        return None
    try:
        parsed = date.fromisoformat(text)
    except ValueError:
        return None
    return parsed if EARLIEST <= parsed <= LATEST else None
