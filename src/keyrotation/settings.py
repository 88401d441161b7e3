"""Settings, named as the CloudFormation parameters, from defaults, a file, env vars and options.

Later sources win: defaults, then a TOML or JSON config file, then environment variables of the
same names, then command-line overrides. Any invalid value stops the run with one line that
names the parameter.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from keyrotation.errors import SettingsError
from keyrotation.model import Mode, Periods

EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+", re.ASCII)
TEMPLATE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*", re.ASCII)
IAM_NAME = r"^[A-Za-z0-9+=,.@_-]{1,64}$"
HOST_NAME = r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$"
# A hierarchical SSM parameter name; the leading slash makes its ARN `...:parameter/<name>`.
SSM_PARAMETER_NAME = r"^/[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$"
# A tag key IAM allows; the aws: and keyrotation: prefixes are refused by a validator.
OWNER_TAG = r"^[A-Za-z0-9 _.:/=+@-]{1,128}$"
# A standard topic: a FIFO topic (name ending .fifo) would need a message group per publish.
TOPIC_ARN = r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}$"
# Every boolean setting, and what its two values mean for the one line that refuses a third.
FLAGS = {
    "DryRunFlag": "True (audit mode) or False (enforce mode)",
    "StoreSecretsInCentralAccount": "True (the main account keeps every secret) or False",
    "HoldWhileInUse": "True (hold a replaced key still in use) or False",
}
TRUE = frozenset({"true", "yes", "on", "1"})
FALSE = frozenset({"false", "no", "off", "0"})
# Settings that may be left out; an empty value from any source leaves them out.
OPTIONAL = (
    "OrganizationalUnitId",
    "ListPageSize",
    "SMTPHost",
    "SMTPUserParamName",
    "SMTPPasswordParamName",
    "ResourceOwnerTag",
    "SummaryTopicArn",
)
# What each pattern asks for, in words, for the one line that refuses a value.
PATTERN_WORDS = {
    "IAMExemptionGroup": "must be an IAM group name: 1 to 128 letters, digits or +=,.@_-",
    "IAMRoleName": "must be an IAM role name: 1 to 64 letters, digits or +=,.@_-",
    "OrganizationalUnitId": "must be an OU id (ou-abcd-12345678) or a root id (r-abcd)",
    "SMTPHost": "must be a host name such as email-smtp.eu-west-1.amazonaws.com, "
    "without scheme or port",
    "SMTPUserParamName": "must be an SSM parameter name starting with /, such as /smtp/user",
    "SMTPPasswordParamName": "must be an SSM parameter name starting with /, such as /smtp/pw",
    "ResourceOwnerTag": "must be a tag key: 1 to 128 letters, digits, spaces or _.:/=+@-",
    "SummaryTopicArn": "must be an SNS topic ARN (arn:aws:sns:<region>:<account id>:<name>) "
    "of a standard topic, not a FIFO one",
}
REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-[0-9]{1,2}", re.ASCII)


def _check_email(value: str) -> str:
    if not EMAIL.fullmatch(value):
        raise ValueError(f"{value!r} is not an email address")
    return value


EmailAddress = Annotated[str, AfterValidator(_check_email)]


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    RotationPeriod: int = Field(90, ge=1, le=3650)
    InactiveBuffer: int = Field(10, ge=1, le=3650)
    InactivePeriod: int = Field(100, ge=1, le=3650)
    RecoveryGracePeriod: int = Field(10, ge=1, le=3650)
    PendingActionWarnPeriod: int = Field(7, ge=0, le=3650)
    DryRunFlag: bool = True
    IAMExemptionGroup: str = Field(
        "IAMKeyRotationExemptionGroup", pattern=r"^[A-Za-z0-9+=,.@_-]{1,128}$"
    )
    IAMRoleName: str = Field("asa-iam-key-rotation-lambda-assumed-role", pattern=IAM_NAME)
    AdminEmailAddress: EmailAddress = "keyrotation@example.com"
    EmailTemplateAudit: str = "audit.html"
    EmailTemplateEnforce: str = "enforce.html"
    OrganizationalUnitId: str | None = Field(
        None, pattern=r"^(ou-[0-9a-z]{4,32}-[a-z0-9]{8,32}|r-[0-9a-z]{4,32})$"
    )
    ListPageSize: int | None = Field(None, ge=1, le=1000)
    # "report" reads each account's IAM credential report and calls per-user APIs only for
    # users due soon; "per-user" reads every user's keys, last use and records one by one.
    ScanMethod: Literal["report", "per-user"] = "report"
    # IAM and STS throttle per account and per caller; a few accounts at once stay well below.
    MaxConcurrentAccounts: int = Field(4, ge=1, le=32)
    # SMTP instead of SES: mail goes to SMTPHost over TLS, logging in with the user name and
    # password read from these SSM parameters at send time. Empty SMTPHost: SES.
    SMTPHost: str | None = Field(None, pattern=HOST_NAME, max_length=253)
    SMTPPort: int = Field(587, ge=1, le=65535)
    # "starttls" upgrades a plain connection (port 587); "tls" speaks TLS from the start (465).
    SMTPSecurity: Literal["starttls", "tls"] = "starttls"
    SMTPUserParamName: str | None = Field(None, pattern=SSM_PARAMETER_NAME, max_length=1011)
    SMTPPasswordParamName: str | None = Field(None, pattern=SSM_PARAMETER_NAME, max_length=1011)
    # Owner mails and account summaries for other tools: both off unless set.
    # The user tag holding the email address of the team that owns the user.
    ResourceOwnerTag: str | None = Field(None, pattern=OWNER_TAG)
    # The SNS topic, in the deployment's account, that gets one JSON summary per account run.
    SummaryTopicArn: str | None = Field(None, pattern=TOPIC_ARN)
    # Where new keys are kept: the main account's Secrets Manager instead of each user's own
    # account, and the regions each secret is replicated to.
    StoreSecretsInCentralAccount: bool = False
    CredentialReplicationRegions: tuple[str, ...] = ()
    # Hold while in use: a replaced key an application still uses, beside a replacement not
    # used, stays active past its deactivation date for at most MaxHoldDays days.
    HoldWhileInUse: bool = True
    MaxHoldDays: int = Field(30, ge=1, le=3650)

    @field_validator(*FLAGS, mode="before")
    @classmethod
    def _flag(cls, value: Any, info: ValidationInfo) -> Any:
        """One reading of true and false for every flag, from any source."""
        if isinstance(value, str):
            lowered = value.strip().lower()
            if lowered in TRUE:
                return True
            if lowered in FALSE:
                return False
            raise ValueError(f"must be {FLAGS[info.field_name]}")
        return value

    @field_validator(*OPTIONAL, mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("CredentialReplicationRegions", mode="before")
    @classmethod
    def _regions(cls, value: Any) -> Any:
        names = value.split(",") if isinstance(value, str) else value
        if not isinstance(names, list | tuple):
            return value
        regions = tuple(str(name).strip() for name in names if str(name).strip())
        for region in regions:
            if not REGION.fullmatch(region):
                raise ValueError(f"{region!r} is not a region name such as eu-west-1")
        if len(set(regions)) != len(regions):
            raise ValueError("names a region twice")
        return regions

    @field_validator("EmailTemplateAudit", "EmailTemplateEnforce")
    @classmethod
    def _template(cls, value: str) -> str:
        if not TEMPLATE_NAME.fullmatch(value) or ".." in value:
            raise ValueError(f"{value!r} must be a plain file name, without folders")
        return value

    @field_validator("ResourceOwnerTag")
    @classmethod
    def _owner_tag(cls, value: str | None) -> str | None:
        if value is not None and value.lower().startswith(("aws:", "keyrotation:")):
            raise ValueError(f"{value!r} is a reserved tag key (aws: or keyrotation:)")
        return value

    @model_validator(mode="after")
    def _cycle(self) -> Settings:
        if self.InactivePeriod <= self.RotationPeriod:
            raise _CycleError(
                "InactivePeriod",
                f"must exceed RotationPeriod ({self.InactivePeriod} <= {self.RotationPeriod})",
            )
        grace = self.InactiveBuffer + self.RecoveryGracePeriod
        if self.RotationPeriod <= grace:
            raise _CycleError(
                "RotationPeriod",
                f"must exceed InactiveBuffer + RecoveryGracePeriod ({self.RotationPeriod} <= "
                f"{grace}), or a new key would expire before the key it replaced is deleted",
            )
        if self.PendingActionWarnPeriod >= self.RotationPeriod:
            raise _CycleError(
                "PendingActionWarnPeriod",
                f"must be less than RotationPeriod ({self.PendingActionWarnPeriod} >= "
                f"{self.RotationPeriod}), or brand-new keys would get warnings",
            )
        if self.InactivePeriod + self.RecoveryGracePeriod >= 2 * self.RotationPeriod:
            raise _CycleError(
                "InactivePeriod",
                f"plus RecoveryGracePeriod must be less than twice RotationPeriod "
                f"({self.InactivePeriod} + {self.RecoveryGracePeriod} >= "
                f"2 x {self.RotationPeriod}), or a replaced key would outlive its replacement",
            )
        self._check_smtp()
        self._check_hold()
        return self

    def _check_smtp(self) -> None:
        user, password = self.SMTPUserParamName, self.SMTPPasswordParamName
        if (user is None) != (password is None):
            missing = "SMTPPasswordParamName" if password is None else "SMTPUserParamName"
            raise _CycleError(missing, "must be set too: the SMTP login needs both parameters")
        if user is not None and self.SMTPHost is None:
            raise _CycleError("SMTPHost", "must be set when the SMTP parameters are")

    def _check_hold(self) -> None:
        """A held key must still be deleted before its replacement is due for rotation."""
        if not self.HoldWhileInUse:
            return
        after_store = self.InactiveBuffer + self.MaxHoldDays + self.RecoveryGracePeriod
        if after_store >= self.RotationPeriod:
            raise _CycleError(
                "MaxHoldDays",
                f"plus InactiveBuffer and RecoveryGracePeriod must be less than RotationPeriod "
                f"({self.InactiveBuffer} + {self.MaxHoldDays} + {self.RecoveryGracePeriod} >= "
                f"{self.RotationPeriod}), or a held key could outlive its replacement",
            )
        after_creation = self.InactivePeriod + self.MaxHoldDays + self.RecoveryGracePeriod
        if after_creation >= 2 * self.RotationPeriod:
            raise _CycleError(
                "MaxHoldDays",
                f"plus InactivePeriod and RecoveryGracePeriod must be less than twice "
                f"RotationPeriod ({self.InactivePeriod} + {self.MaxHoldDays} + "
                f"{self.RecoveryGracePeriod} >= 2 x {self.RotationPeriod}), or a held key "
                f"could outlive its replacement",
            )

    @property
    def mode(self) -> Mode:
        return Mode.AUDIT if self.DryRunFlag else Mode.ENFORCE

    @property
    def periods(self) -> Periods:
        return Periods(
            rotation=self.RotationPeriod,
            inactive_buffer=self.InactiveBuffer,
            inactive=self.InactivePeriod,
            recovery_grace=self.RecoveryGracePeriod,
            warn=self.PendingActionWarnPeriod,
            max_hold=self.MaxHoldDays if self.HoldWhileInUse else None,
        )

    def template_for(self, mode: Mode) -> str:
        return self.EmailTemplateAudit if mode is Mode.AUDIT else self.EmailTemplateEnforce


class _CycleError(ValueError):
    def __init__(self, parameter: str, message: str):
        super().__init__(message)
        self.parameter = parameter


NAMES = tuple(Settings.model_fields)


def load_settings(
    config_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Merge every source into one validated Settings, or raise SettingsError."""
    values: dict[str, Any] = {}
    if config_file is not None:
        values.update(_read_config_file(config_file))
    environ = os.environ if environ is None else environ
    values.update({name: environ[name] for name in NAMES if environ.get(name, "") != ""})
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return validate_settings(values)


def validate_settings(values: Mapping[str, Any]) -> Settings:
    try:
        return Settings(**values)
    except ValidationError as exc:
        raise SettingsError(_describe(exc)) from None
    except _CycleError as exc:
        raise SettingsError(f"Invalid setting {exc.parameter}: {exc}") from None


def _describe(exc: ValidationError) -> str:
    error = exc.errors()[0]
    if error["type"] == "value_error" and isinstance(
        error.get("ctx", {}).get("error"), _CycleError
    ):
        cycle = error["ctx"]["error"]
        return f"Invalid setting {cycle.parameter}: {cycle}"
    name = ".".join(str(part) for part in error["loc"]) or "settings"
    if error["type"] == "extra_forbidden":
        close = difflib.get_close_matches(name, NAMES, n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        return f"Unknown setting {name}: {hint}known settings are {', '.join(NAMES)}"
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "string_pattern_mismatch":
        message = PATTERN_WORDS.get(name, message)
    return f"Invalid setting {name}: {message} (got {error.get('input')!r})"


def _read_config_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SettingsError(f"Cannot read config file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise SettingsError(f"Config file {path} is not UTF-8 text") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise SettingsError(f"Config file {path} is not valid: {exc}") from None
    if not isinstance(data, dict):
        raise SettingsError(f"Config file {path} must hold a table of settings")
    return data
