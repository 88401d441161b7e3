"""Settings: names as the CloudFormation parameters, every source, one clear error each."""

from __future__ import annotations

import pytest

from keyrotation.cli import _overrides
from keyrotation.errors import SettingsError
from keyrotation.model import Mode
from keyrotation.settings import FLAGS, OPTIONAL, PATTERN_WORDS, Settings, load_settings


def test_defaults_are_the_documented_ones_and_audit_mode():
    settings = load_settings(environ={})
    assert (
        settings.RotationPeriod,
        settings.InactiveBuffer,
        settings.InactivePeriod,
        settings.RecoveryGracePeriod,
        settings.PendingActionWarnPeriod,
    ) == (90, 10, 100, 10, 7)
    assert settings.mode is Mode.AUDIT
    assert settings.IAMExemptionGroup == "IAMKeyRotationExemptionGroup"
    assert settings.IAMRoleName == "asa-iam-key-rotation-lambda-assumed-role"
    assert (settings.HoldWhileInUse, settings.MaxHoldDays) == (True, 30)
    assert settings.periods.max_hold == 30


def test_config_file_then_environment_then_options(tmp_path):
    config = tmp_path / "keyrotation.toml"
    # A shorter cycle needs a shorter hold: 100 + 30 + 9 days would outlive a 60-day key.
    config.write_text(
        'RotationPeriod = 60\nInactiveBuffer = 5\nDryRunFlag = "False"\nMaxHoldDays = 10\n'
    )
    environ = {"InactiveBuffer": "6", "RecoveryGracePeriod": "8"}

    settings = load_settings(config, environ, overrides={"RecoveryGracePeriod": "9"})

    assert (settings.RotationPeriod, settings.InactiveBuffer, settings.RecoveryGracePeriod) == (
        60,
        6,
        9,
    )
    assert settings.mode is Mode.ENFORCE


def test_hold_off_gives_the_policy_no_hold_and_skips_its_cycle_check():
    settings = load_settings(environ={"HoldWhileInUse": "False", "MaxHoldDays": "200"})
    assert settings.periods.max_hold is None


def test_json_config_file_is_read(tmp_path):
    config = tmp_path / "settings.json"
    config.write_text('{"IAMExemptionGroup": "Exempt"}')
    assert load_settings(config, environ={}).IAMExemptionGroup == "Exempt"


INVALID = [
    ({"RotationPeriod": "1"}, "Invalid setting RotationPeriod: must exceed InactiveBuffer"),
    ({"RotationPeriod": "soon"}, "Invalid setting RotationPeriod: Input should be a valid integer"),
    ({"RotationPeriod": "0"}, "Invalid setting RotationPeriod"),
    ({"InactivePeriod": "90"}, "Invalid setting InactivePeriod: must exceed RotationPeriod"),
    ({"InactivePeriod": "175"}, "Invalid setting InactivePeriod: plus RecoveryGracePeriod"),
    ({"InactiveBuffer": "0"}, "Invalid setting InactiveBuffer"),
    ({"RecoveryGracePeriod": "-3"}, "Invalid setting RecoveryGracePeriod"),
    ({"PendingActionWarnPeriod": "-1"}, "Invalid setting PendingActionWarnPeriod"),
    ({"DryRunFlag": "maybe"}, "Invalid setting DryRunFlag: must be True (audit mode) or False"),
    ({"AdminEmailAddress": "admin"}, "Invalid setting AdminEmailAddress"),
    ({"EmailTemplateAudit": "../x.html"}, "Invalid setting EmailTemplateAudit"),
    ({"EmailTemplateEnforce": "/etc/passwd"}, "Invalid setting EmailTemplateEnforce"),
    ({"IAMRoleName": "bad role"}, "Invalid setting IAMRoleName"),
    ({"OrganizationalUnitId": "finance"}, "Invalid setting OrganizationalUnitId"),
    ({"RotationPeriodDays": "30"}, "Unknown setting RotationPeriodDays"),
]


@pytest.mark.parametrize(("values", "message"), INVALID, ids=[m for _, m in INVALID])
def test_invalid_settings_are_refused_with_one_line_naming_the_parameter(values, message):
    with pytest.raises(SettingsError) as raised:
        load_settings(environ={}, overrides=values)
    text = str(raised.value)
    assert text.startswith(message)
    assert "\n" not in text


def test_a_broken_config_file_is_named(tmp_path):
    config = tmp_path / "broken.toml"
    config.write_text("RotationPeriod = = 3")
    with pytest.raises(SettingsError, match=r"broken\.toml is not valid"):
        load_settings(config, environ={})
    with pytest.raises(SettingsError, match="Cannot read config file"):
        load_settings(tmp_path / "missing.toml", environ={})


def test_environment_values_that_are_empty_count_as_unset():
    assert load_settings(environ={"RotationPeriod": ""}).RotationPeriod == 90


def test_scan_method_and_concurrency_default_to_the_report_and_four_accounts():
    settings = load_settings(environ={})
    assert (settings.ScanMethod, settings.MaxConcurrentAccounts) == ("report", 4)
    assert load_settings(environ={"ScanMethod": "per-user"}).ScanMethod == "per-user"


@pytest.mark.parametrize(
    ("name", "value"), [("ScanMethod", "listing"), ("MaxConcurrentAccounts", "0")]
)
def test_an_unknown_scan_method_or_no_concurrency_is_refused(name, value):
    with pytest.raises(SettingsError, match=f"Invalid setting {name}"):
        load_settings(environ={name: value})


FLAG_SPELLINGS = [
    ("True", True),
    ("true", True),
    ("yes", True),
    ("On", True),
    ("1", True),
    ("False", False),
    ("no", False),
    ("off", False),
    (" 0 ", False),
]


@pytest.mark.parametrize("name", ["DryRunFlag", "StoreSecretsInCentralAccount", "HoldWhileInUse"])
@pytest.mark.parametrize(("text", "expected"), FLAG_SPELLINGS)
def test_every_flag_reads_true_and_false_the_same_way(name, text, expected):
    assert getattr(load_settings(environ={}, overrides={name: text}), name) is expected


def test_every_boolean_setting_is_read_by_the_one_flag_parser():
    booleans = {name for name, field in Settings.model_fields.items() if field.annotation is bool}
    assert booleans == set(FLAGS)


def test_every_setting_that_may_be_left_out_is_one_an_empty_value_leaves_out():
    optional = {name for name, field in Settings.model_fields.items() if field.default is None}
    assert optional == set(OPTIONAL)


@pytest.mark.parametrize("name", OPTIONAL)
def test_an_empty_value_leaves_an_optional_setting_out_even_over_the_config_file(name, tmp_path):
    config = tmp_path / "keyrotation.json"
    config.write_text('{"ResourceOwnerTag": "owner", "ListPageSize": 50}')

    settings = load_settings(config, environ={}, overrides={name: ""})

    assert getattr(settings, name) is None


def test_an_empty_set_option_on_the_command_line_leaves_the_owner_tag_out():
    overrides = _overrides(["ResourceOwnerTag=", "SummaryTopicArn= "])

    settings = load_settings(environ={}, overrides=overrides)

    assert (settings.ResourceOwnerTag, settings.SummaryTopicArn) == (None, None)


def test_every_pattern_is_explained_in_words():
    patterned = {
        name
        for name, field in Settings.model_fields.items()
        if any(getattr(rule, "pattern", None) for rule in field.metadata)
    }
    assert patterned == set(PATTERN_WORDS)
