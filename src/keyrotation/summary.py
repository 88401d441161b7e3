"""The JSON summary of one account run that other tools (chat, ticketing) subscribe to.

Counts, not keys: it names no key id and holds no key material, so any subscriber may read it.
"""

from __future__ import annotations

import re
from collections import Counter
from datetime import datetime
from typing import Any

from keyrotation.report import AccountReport

SCHEMA = "keyrotation.account-summary.v1"
# SNS refuses a message over 256 KB. At most 50 lines of 400 characters keep the summary near
# 20 KB (under 120 KB even if every character needed a six-byte JSON escape); the full lines
# are in the run report and the log.
FAILURES_KEPT = 50
LINE_CHARACTERS = 400
# Access key ids in failure texts are shortened to their first and last four characters.
_KEY_ID = re.compile(r"\b(A[A-Z0-9]{3})[A-Z0-9]{8,120}([A-Z0-9]{4})\b")


def summarize(report: AccountReport, run_id: str, now: datetime, dated: bool) -> dict[str, Any]:
    failures = [*report.errors, *report.not_scanned]
    counts = Counter(
        (o.action.kind.value, o.action.reason.value, o.status) for o in report.outcomes
    )
    return {
        "schema": SCHEMA,
        "run_id": run_id,
        "time": now.isoformat(),
        "dated": now.date().isoformat() if dated else None,
        "mode": report.mode.value,
        "account_id": report.account.account_id,
        "account_name": report.account.name,
        "scan": shorten(report.scan),
        "users_scanned": report.users_scanned,
        "users_exempt": report.users_exempt,
        "counts": [
            {"action": action, "reason": reason, "status": status, "count": count}
            for (action, reason, status), count in sorted(counts.items())
        ],
        "failed": report.failed,
        "busy": bool(report.busy),
        "failures": [shorten(mask_key_ids(line)) for line in failures[:FAILURES_KEPT]],
        "failures_total": len(failures),
        "notification": shorten(mask_key_ids(report.notification)),
    }


def mask_key_ids(text: str) -> str:
    return _KEY_ID.sub(r"\1…\2", text)


def shorten(text: str) -> str:
    if len(text) <= LINE_CHARACTERS:
        return text
    return f"{text[: LINE_CHARACTERS - 1]}…"
