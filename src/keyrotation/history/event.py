"""One history event, the sink the pipeline writes to, and the filter readers apply."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from typing import Any, Protocol

from keyrotation.errors import HistoryError
from keyrotation.report import Outcome, Status


@dataclass(frozen=True)
class HistoryEvent:
    """A change or a notice for one key. Holds ids and codes, never key material."""

    time: datetime
    run_id: str
    mode: str
    account: str
    user: str
    key_id: str
    action: str
    reason: str
    outcome: str
    on: date
    step: str | None = None
    detail: str = ""
    error: str | None = None

    @classmethod
    def from_outcome(
        cls, run_id: str, mode: str, account: str, outcome: Outcome, time: datetime
    ) -> HistoryEvent:
        failed = outcome.status == Status.FAILED
        action = outcome.action
        return cls(
            time=time,
            run_id=run_id,
            mode=mode,
            account=account,
            user=outcome.user,
            key_id=action.key_id,
            action=action.kind.value,
            reason=action.reason.value,
            outcome=outcome.status,
            on=action.on,
            step=action.step.value if action.step else None,
            detail="" if failed else outcome.detail,
            error=outcome.detail if failed else None,
        )

    def to_json(self) -> str:
        values = asdict(self)
        values["time"] = self.time.astimezone(UTC).isoformat()
        values["on"] = self.on.isoformat()
        return json.dumps(values, sort_keys=True)

    @classmethod
    def from_json(cls, line: str) -> HistoryEvent:
        try:
            values: dict[str, Any] = json.loads(line)
            values["time"] = datetime.fromisoformat(values["time"])
            values["on"] = date.fromisoformat(values["on"])
            return cls(**values)
        except (ValueError, TypeError, KeyError) as exc:
            raise HistoryError(f"A history line does not parse ({exc}): {line[:120]!r}") from exc


class HistorySink(Protocol):
    """Where the pipeline appends events; each append is durable when it returns."""

    def append(self, event: HistoryEvent) -> None: ...


@dataclass(frozen=True)
class HistoryFilter:
    account: str | None = None
    user: str | None = None
    key_id: str | None = None
    since: date | None = None

    def matches(self, event: HistoryEvent) -> bool:
        return (
            (self.account is None or event.account == self.account)
            and (self.user is None or event.user == self.user)
            and (self.key_id is None or event.key_id == self.key_id)
            and (self.since is None or event.time.date() >= self.since)
        )


EVERYTHING = HistoryFilter()
