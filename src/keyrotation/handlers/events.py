"""The events the Lambda functions accept, validated with one clear line per mistake."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from keyrotation.errors import EventError
from keyrotation.settings import EmailAddress

USER_NAME = re.compile(r"[A-Za-z0-9+=,.@_-]{1,64}")
ACCOUNT_ID = re.compile(r"\d{12}")
# Under any prefix main.yaml's S3BucketPrefix allows.
REPORT_PAGE = re.compile(r"([A-Za-z0-9!_.*'()-]+/)*Reports/dt=\d{4}-\d{2}-\d{2}/\d{12}\.html")


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RotationEvent(_Event):
    account: str
    name: str = Field(min_length=1, max_length=100)
    email: EmailAddress
    ForceRotate: tuple[str, ...] = ()
    dryrun: bool | None = None

    @field_validator("account")
    @classmethod
    def _account(cls, value: str) -> str:
        if not ACCOUNT_ID.fullmatch(value):
            raise ValueError(f"{value!r} is not a 12-digit account id")
        return value

    @field_validator("ForceRotate", mode="before")
    @classmethod
    def _users(cls, value: Any) -> Any:
        names = [value] if isinstance(value, str) else value
        if names is None:
            return ()
        if not isinstance(names, list | tuple):
            raise ValueError("must be a user name or a list of user names")
        for name in names:
            if not isinstance(name, str) or not USER_NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not a valid IAM user name")
        return tuple(names)

    @field_validator("dryrun", mode="before")
    @classmethod
    def _flag(cls, value: Any) -> Any:
        if value is not None and not isinstance(value, bool | str):
            raise ValueError('must be "true" or "false"')
        if isinstance(value, str):
            if value.strip().lower() not in {"true", "false"}:
                raise ValueError('must be "true" or "false"')
            return value.strip().lower() == "true"
        return value


class TemplateValues(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    account_id: str = Field(pattern=r"^\d{12}$")
    account_name: str
    timestamp: str
    actions: list[str]
    rotation_period: int
    installation_grace_period: int
    recovery_grace_period: int
    partition_name: str


class NotifyEvent(_Event):
    email: EmailAddress
    invokedby: str = ""
    subject: str = Field(min_length=1, max_length=998)
    email_template: str = Field(min_length=1)
    template_values: TemplateValues
    # The bucket key of the account's report page, from the rotation function; empty for none.
    report_page: str = Field(default="", max_length=1024)

    @field_validator("report_page")
    @classmethod
    def _page(cls, value: str) -> str:
        if value and not REPORT_PAGE.fullmatch(value):
            raise ValueError(f"{value!r} is not a <prefix>/Reports/dt=<date>/<account id>.html key")
        return value


def parse(model: type[_Event], event: Any) -> Any:
    """Validate `event`, or raise EventError naming the first bad field."""
    if not isinstance(event, dict):
        raise EventError(f"Invalid event: expected a JSON object, got {type(event).__name__}")
    try:
        return model.model_validate(event)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(part) for part in error["loc"]) or "event"
        if error["type"] == "missing":
            raise EventError(f"Invalid event: field {field!r} is missing") from None
        if error["type"] == "extra_forbidden":
            known = ", ".join(model.model_fields)
            raise EventError(f"Invalid event: unknown field {field!r} (known: {known})") from None
        message = error["msg"].removeprefix("Value error, ")
        raise EventError(f"Invalid event: field {field!r}: {message}") from None
