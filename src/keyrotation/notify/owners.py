"""Owner mails: a user tag names the team that owns the user, and that team gets a mail about
its own users' keys. A tag that is missing or is not an email address, or an owner whose mail
was refused too many days running, leaves the user to the account email, and says so."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

# Stricter than the settings' check: a tag value is written by anyone who may tag users, and
# the address becomes a recipient, so only plain addresses are taken, and only ones SES and
# SMTP servers accept: dot-atoms (no leading, trailing or doubled dot), domain labels that
# neither start nor end with '-', a top-level domain of letters.
_ATOM = r"[A-Za-z0-9_%+-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
OWNER_EMAIL = re.compile(
    rf"(?=[^@]{{1,64}}@){_ATOM}(?:\.{_ATOM})*@(?:{_LABEL}\.)+[A-Za-z]{{2,63}}", re.ASCII
)
# An owner whose mail is refused this many run days in a row is not mailed on the next run: its
# kept lines and its users go to the account email. See "Owner mails" in the README for why 3.
REFUSED_DAYS = 3


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
    """One stored line per value (a mail line, or a refused day): the owner address, a space,
    the value. An owner address holds no space, so the first space splits them again."""
    return [f"{owner} {value}" for owner, values in sorted(by_owner.items()) for value in values]


def decode_lines(stored: Iterable[str]) -> dict[str, list[str]]:
    """Every stored value by its owner, also an owner no longer taken: the caller hands those
    lines to the account email, so that none is lost."""
    by_owner: dict[str, list[str]] = {}
    for entry in stored:
        owner, _, value = entry.partition(" ")
        if value:
            by_owner.setdefault(owner, []).append(value)
    return by_owner


def refusals_key(account_id: str) -> str:
    """Where the run days on which each owner's mail was refused are kept, since its last
    mail went out."""
    return f"{account_id}.owner-refusals"
