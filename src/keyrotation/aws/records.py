"""Lifecycle records kept as IAM user tags, one tag per key: `keyrotation:<key id>`.

IAM tag values allow letters, digits, spaces and `_.:/=+-@`, so a record reads
`replaced=2026-12-04 deactivated=2026-12-14 warned=KEY_PENDING_ROTATION/KEY_PENDING_DELETION`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date

from keyrotation.model import KeyRecord
from keyrotation.reasons import Reason

TAG_PREFIX = "keyrotation:"
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
    )


def records_from_tags(tags: Mapping[str, str]) -> dict[str, KeyRecord]:
    return {
        name.removeprefix(TAG_PREFIX): decode(value)
        for name, value in tags.items()
        if name.startswith(TAG_PREFIX)
    }


def _date(text: str | None) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None
