"""Secret names for every IAM user name, and the lifecycle records kept in user tags."""

from __future__ import annotations

import re
import string
from datetime import date

from hypothesis import given
from hypothesis import strategies as st

from keyrotation.aws.records import decode, encode, records_from_tags, tag_key
from keyrotation.aws.secrets import secret_name
from keyrotation.model import KeyRecord
from keyrotation.reasons import DAILY_WARNINGS, WARNINGS

IAM_NAME_CHARS = string.ascii_letters + string.digits + "+=,.@_-"
iam_names = st.text(alphabet=IAM_NAME_CHARS, min_size=1, max_size=64)
SECRET_NAME = re.compile(r"^[A-Za-z0-9/_+=.@-]{1,512}$")
TAG_VALUE = re.compile(r"^[\w\s.:/=+\-@]{0,256}$")


def test_plain_names_keep_the_name_applications_already_read():
    assert secret_name("alice") == "User_alice_AccessKey"
    assert secret_name("svc+ci=x.y@z_1-2") == "User_svc+ci=x.y@z_1-2_AccessKey"


@given(iam_names)
def test_every_iam_user_name_maps_to_a_valid_secret_name(name):
    assert SECRET_NAME.match(secret_name(name))


@given(iam_names, iam_names)
def test_two_users_never_share_a_secret(first, second):
    if first != second:
        assert secret_name(first) != secret_name(second)


def test_a_comma_name_cannot_collide_with_its_look_alike():
    assert secret_name("a,b") != secret_name("a.b")
    assert secret_name("a,b").startswith("User_a.b_AccessKey_")


records = st.builds(
    KeyRecord,
    replaced=st.none() | st.dates(date(2000, 1, 1), date(2100, 1, 1)),
    deactivated=st.none() | st.dates(date(2000, 1, 1), date(2100, 1, 1)),
    # A daily warning is recorded as the `held` day, never in `warned` (KeyRecord.after_warning).
    warned=st.frozensets(st.sampled_from(sorted(WARNINGS - DAILY_WARNINGS))),
    created=st.none() | st.dates(date(2000, 1, 1), date(2100, 1, 1)),
    held=st.none() | st.dates(date(2000, 1, 1), date(2100, 1, 1)),
)


@given(records)
def test_a_record_survives_a_round_trip_through_a_valid_tag_value(record):
    value = encode(record)
    assert TAG_VALUE.match(value)
    assert decode(value) == record


def test_unknown_parts_and_other_tags_are_ignored():
    tags = {
        tag_key(
            "AKIAIOSFODNN7EXAMPLE"
        ): "replaced=2026-01-02 bogus=1 deactivated=never warned=NOPE",
        "team": "payments",
    }
    assert records_from_tags(tags) == {"AKIAIOSFODNN7EXAMPLE": KeyRecord(replaced=date(2026, 1, 2))}
