"""History in a local JSON Lines file: the CLI's store. One line per event, flushed at once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from keyrotation.errors import HistoryError
from keyrotation.history.event import EVERYTHING, HistoryEvent, HistoryFilter

DEFAULT_FILE = Path("~/.keyrotation/history.jsonl")


class HistoryFile:
    def __init__(self, path: Path):
        self.path = path.expanduser()

    def append(self, event: HistoryEvent) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as file:
                file.write(event.to_json() + "\n")
        except OSError as exc:
            raise HistoryError(
                f"Cannot append to the history file {self.path}: {exc.strerror}. "
                "Choose another file with --history."
            ) from exc

    def read(self, wanted: HistoryFilter = EVERYTHING) -> Iterator[HistoryEvent]:
        if not self.path.exists():
            return
        try:
            with self.path.open(encoding="utf-8") as file:
                for line in file:
                    if line.strip():
                        event = HistoryEvent.from_json(line)
                        if wanted.matches(event):
                            yield event
        except OSError as exc:
            raise HistoryError(f"Cannot read the history file {self.path}: {exc}") from exc
