"""Bad settings and bad arguments: one line and exit code 2, from the shell and from code."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings

from tenant_indexes.checks import check_tenant_index_declarations
from tenant_indexes.conf import get_config

COMMANDS = ["check_tenant_indexes", "tenant_index_stats", "repair_tenant_indexes"]
BAD_SETTINGS = [
    ({"CHECK_STATMENT_TIMEOUT_MS": 10}, "Unknown TENANT_INDEXES key"),
    ({"CHECK_STATEMENT_TIMEOUT_MS": "abc"}, "must be int or float"),
    ({"CHECK_INCLUDES_USAGE": 1}, "must be bool"),
    ({"UNUSED_MAX_SCANS": True}, "must be int or float"),
    ({"ACKNOWLEDGED_REDUNDANT": "idx_tickets_tenant_id"}, "must be list or tuple"),
    ({"TENANT_MODEL": "Organization"}, "must be a model label like 'accounts.Organization'"),
    ({"TENANT_MODEL": 42}, "must be a model label"),
    ({"TENANT_MODEL": "accounts.Organi zation"}, "must be a model label"),
]


@pytest.mark.parametrize(("setting", "message"), BAD_SETTINGS)
def test_get_config__rejects_unknown_keys_and_wrong_types(setting, message) -> None:
    with override_settings(TENANT_INDEXES=setting):
        with pytest.raises(ImproperlyConfigured, match=message):
            get_config()


def test_get_config__accepts_the_documented_types() -> None:
    good = {
        "BUILD_LOCK_TIMEOUT": 5000,
        "STATS_MIN_AGE_DAYS": 0.5,
        "HEALTH_TOKEN": ["a", "b"],
        "TENANT_MODEL": "accounts.Organization",
    }
    with override_settings(TENANT_INDEXES=good):
        assert get_config()["BUILD_LOCK_TIMEOUT"] == 5000
        assert get_config()["TENANT_MODEL"] == "accounts.Organization"
    assert get_config()["TENANT_MODEL"] is None


@pytest.mark.django_db
@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize(("setting", "message"), BAD_SETTINGS[:2])
def test_commands__bad_setting_exits_2_with_the_reason(command, setting, message) -> None:
    with override_settings(TENANT_INDEXES=setting):
        with pytest.raises(CommandError, match=message) as e:
            call_command(command, stdout=StringIO(), stderr=StringIO())
    assert e.value.returncode == 2


@pytest.mark.parametrize("command", COMMANDS)
def test_commands__bad_arguments_from_code_exit_2(command) -> None:
    with pytest.raises(CommandError, match="Error: ") as e:
        call_command(command, "--no-such-option", stdout=StringIO(), stderr=StringIO())
    assert e.value.returncode == 2


@pytest.mark.parametrize("command", COMMANDS[:2])
def test_commands__bad_format_from_code_exits_2(command) -> None:
    with pytest.raises(CommandError, match="invalid choice") as e:
        call_command(command, "--format", "xml", stdout=StringIO())
    assert e.value.returncode == 2


def test_system_check__bad_setting_is_e009_not_a_traceback() -> None:
    with override_settings(TENANT_INDEXES={"CHECK_INCLUDES_USAGE": "yes"}):
        messages = check_tenant_index_declarations()
    assert [m.id for m in messages] == ["tenant_indexes.E009"]
    assert "must be bool" in messages[0].msg


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"BUILD_LOCK_RETRIES": -1}, "must be a whole number, 0 or more"),
        ({"BUILD_LOCK_TIMEOUT": "five"}, "must be a PostgreSQL duration above zero"),
        ({"BUILD_LOCK_TIMEOUT": 0}, "must be a PostgreSQL duration above zero"),
        ({"BUILD_LOCK_TIMEOUT": "0s"}, "must be a PostgreSQL duration above zero"),
        ({"BUILD_CLIENT_CHECK_INTERVAL": "2 fortnights"}, "must be a PostgreSQL duration"),
        ({"BUILD_BUILDER_WAIT": 0}, "must be a number above zero"),
        ({"BUILD_RETRY_BACKOFF": -1.0}, "must be a number, 0 or more"),
        ({"BUILD_PROGRESS": "loud"}, "must be one of 'auto', 'bar', 'lines', 'off'"),
        ({"CHECK_STATEMENT_TIMEOUT_MS": 0}, "must be a number above zero"),
        ({"CHECK_SCHEMAS": ["", "x"]}, "must be a list of names"),
        ({"HEALTH_FAIL_LEVEL": "fatal"}, "must be one of 'error', 'warning'"),
        ({"HEALTH_TIMEOUT": -5}, "must be a number above zero"),
        ({"HEALTH_TOKEN": ["ok", 5]}, "must be a token string"),
        ({"TENANT_COLUMN": 5}, "must be a column name"),
        ({"TENANT_COLUMN": ""}, "must be a column name"),
    ],
)
def test_get_config__rejects_values_out_of_range(setting, message) -> None:
    with override_settings(TENANT_INDEXES=setting), pytest.raises(ImproperlyConfigured) as info:
        get_config()
    assert message in str(info.value)


@pytest.mark.parametrize(
    "setting",
    [
        {"BUILD_LOCK_TIMEOUT": "500ms"},
        {"BUILD_LOCK_TIMEOUT": "1 min"},
        {"BUILD_LOCK_TIMEOUT": 5000},
        {"BUILD_CLIENT_CHECK_INTERVAL": ""},
        {"BUILD_LOCK_RETRIES": 0},
        {"HEALTH_TOKEN": ["a", "b"]},
        {"HEALTH_DATABASES": ["default"]},
    ],
)
def test_get_config__accepts_values_in_range(setting) -> None:
    with override_settings(TENANT_INDEXES=setting):
        assert get_config()[next(iter(setting))] == next(iter(setting.values()))
