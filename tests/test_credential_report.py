"""Reading the IAM credential report: each quirk of its CSV, with a small hand-written report."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from keyrotation.aws.credential_report import ReportedKey, parse
from keyrotation.errors import CredentialReportError

HEADER = (
    "user,arn,user_creation_time,password_enabled,password_last_used,password_last_changed,"
    "password_next_rotation,mfa_active,access_key_1_active,access_key_1_last_rotated,"
    "access_key_1_last_used_date,access_key_1_last_used_region,access_key_1_last_used_service,"
    "access_key_2_active,access_key_2_last_rotated,access_key_2_last_used_date,"
    "access_key_2_last_used_region,access_key_2_last_used_service,cert_1_active,"
    "cert_1_last_rotated,cert_2_active,cert_2_last_rotated"
)
ROOT = (
    "<root_account>,arn:aws:iam::111122223333:root,2020-01-01T00:00:00+00:00,not_supported,"
    "2024-05-01T10:00:00+00:00,not_supported,not_supported,true,false,N/A,N/A,N/A,N/A,false,"
    "N/A,N/A,N/A,N/A,false,N/A,false,N/A"
)


def row(name: str, key1: str, key2: str, path: str = "/") -> str:
    """`key1`/`key2` are `active,last_rotated,last_used_date`."""
    arn = f"arn:aws:iam::111122223333:user{path}{name}"
    k1, k2 = (f"{k},N/A,N/A" for k in (key1, key2))
    password = "2020-01-01T00:00:00+00:00,false,N/A,N/A,N/A,false"
    return f"{name},{arn},{password},{k1},{k2},false,N/A,false,N/A"


def report(*rows: str) -> bytes:
    return "\n".join((HEADER, ROOT, *rows)).encode()


def at(day: int) -> datetime:
    return datetime(2026, 3, day, 8, 30, tzinfo=UTC)


NO_KEY = "false,N/A,N/A"


def test_the_root_row_is_not_a_user():
    assert parse(report()) == ()


def test_date_columns_without_a_date_read_as_no_date():
    users = parse(
        report(
            row("never-used", "true,2026-03-01T08:30:00+00:00,N/A", NO_KEY),
            row("no-info", "true,2026-03-01T08:30:00+00:00,no_information", NO_KEY),
            row("unsupported", "true,2026-03-01T08:30:00+00:00,not_supported", NO_KEY),
        )
    )

    assert [(u.name, [k.last_used for k in u.keys]) for u in users] == [
        ("never-used", [None]),
        ("no-info", [None]),
        ("unsupported", [None]),
    ]


def test_a_slot_that_is_not_active_but_has_a_date_holds_an_inactive_key():
    (user,) = parse(
        report(row("ann", "false,2026-03-01T08:30:00+00:00,2026-03-02T08:30:00+00:00", NO_KEY))
    )

    assert user.keys == (ReportedKey(1, False, at(1), at(2)),)
    assert not user.keys[0].as_access_key().active


def test_a_slot_that_is_not_active_and_has_no_date_is_empty():
    (user,) = parse(report(row("nokeys", NO_KEY, NO_KEY)))

    assert user.keys == ()


def test_key_2_may_be_older_than_key_1_and_both_are_kept():
    (user,) = parse(
        report(
            row(
                "bo",
                "true,2026-03-20T08:30:00+00:00,N/A",
                "true,2026-03-01T08:30:00+00:00,2026-03-21T08:30:00+00:00",
            )
        )
    )

    assert [(k.slot, k.created) for k in user.keys] == [(1, at(20)), (2, at(1))]
    assert user.keys[1].last_used == at(21)


def test_key_2_alone_is_read_when_slot_1_is_empty():
    (user,) = parse(report(row("cy", NO_KEY, "true,2026-03-05T08:30:00+00:00,N/A")))

    assert [(k.slot, k.active, k.created) for k in user.keys] == [(2, True, at(5))]


def test_the_user_path_comes_from_the_arn():
    (plain, nested) = parse(
        report(row("di", NO_KEY, NO_KEY), row("ed", NO_KEY, NO_KEY, path="/team/app/"))
    )

    assert (plain.path, nested.path) == ("/", "/team/app/")


@pytest.mark.parametrize(
    "content",
    [
        b"user,arn\nann,arn:aws:iam::1:user/ann\n",
        report(row("ann", "maybe,2026-03-01T08:30:00+00:00,N/A", NO_KEY)),
        report(row("ann", "true,N/A,N/A", NO_KEY)),
        report(row("ann", "true,yesterday,N/A", NO_KEY)),
        report(row("ann", "true,2026-03-01T08:30:00,N/A", NO_KEY)),
    ],
    ids=["missing-columns", "bad-flag", "active-without-date", "bad-date", "no-time-zone"],
)
def test_a_report_that_does_not_read_is_refused_as_a_whole(content):
    with pytest.raises(CredentialReportError):
        parse(content)
