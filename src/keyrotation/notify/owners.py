"""Owner mails: a user tag names the team that owns the user, and that team gets a mail about
its own users' keys. A tag that is missing or is not an email address leaves the user to the
account email, and says so in the report."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

# Stricter than the settings' check: a tag value is written by anyone who may tag users, and
# the address becomes a recipient, so only plain addresses are taken.
OWNER_EMAIL = re.compile(
    r"[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(\.[A-Za-z0-9-]{1,63})*\.[A-Za-z]{2,63}", re.ASCII
)


@dataclass(frozen=True)
class Ownership:
    """Whose mail a user's lines go to: an owner address, or None with the reason."""

    owner: str | None
    fallback: str = ""


def owner_of(user: str, tags: Mapping[str, str], tag: str) -> Ownership:
    value = tags.get(tag)
    if value is None or not value.strip():
        return Ownership(None, f"user {user}: no owner tag {tag!r}; told the account email only")
    if not OWNER_EMAIL.fullmatch(value.strip()):
        return Ownership(
            None,
            f"user {user}: owner tag {tag!r} holds {value!r}, not an email address; "
            "told the account email only",
        )
    return Ownership(value.strip().lower())


def journal_key(account_id: str) -> str:
    """Where an account's unsent owner lines are kept, beside its own unsent lines."""
    return f"{account_id}.owners"


def encode_lines(by_owner: Mapping[str, Iterable[str]]) -> list[str]:
    """One stored line per mail line: the owner address, a space, the line. An owner address
    holds no space, so the first space splits them again."""
    return [f"{owner} {line}" for owner, lines in sorted(by_owner.items()) for line in lines]


def decode_lines(stored: Iterable[str]) -> dict[str, list[str]]:
    by_owner: dict[str, list[str]] = {}
    for entry in stored:
        owner, _, line = entry.partition(" ")
        if OWNER_EMAIL.fullmatch(owner) and line:
            by_owner.setdefault(owner, []).append(line)
    return by_owner
