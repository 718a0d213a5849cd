"""Bad inputs x the three commands and ``migrate``: a documented exit code, never a traceback.

Each case runs the real ``manage.py`` in a subprocess (``tests/scenario_settings.py``) with a
bad ``TENANT_INDEXES`` value, a database that cannot be reached, or an unknown alias or app
label. The expected code is the one docs/commands.md documents: 2 for "could not check /
bad configuration" and for an unreachable server; ``migrate`` reports a bad setting through
the system check framework (E009, exit 1).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.support import manage

COMMANDS = {
    "check": ["check_tenant_indexes", "killed_build"],
    "stats": ["tenant_index_stats", "killed_build"],
    "repair": ["repair_tenant_indexes", "killed_build"],
    "migrate": ["migrate", "killed_build", "--no-input"],
}

BAD_SETTINGS = {
    "retries -1": {"BUILD_LOCK_RETRIES": -1},
    "lock timeout 'five'": {"BUILD_LOCK_TIMEOUT": "five"},
    "tenant column 5": {"TENANT_COLUMN": 5},
    "progress 'loud'": {"BUILD_PROGRESS": "loud"},
    "check timeout 0": {"CHECK_STATEMENT_TIMEOUT_MS": 0},
    "health level 'x'": {"HEALTH_FAIL_LEVEL": "x"},
}

# command -> exit code for a bad setting (migrate: Django's system checks, E009)
BAD_SETTING_EXIT = {"check": 2, "stats": 2, "repair": 2, "migrate": 1}


def _run(args: list[str], *, config: dict[str, Any], db: dict[str, Any] | None = None) -> Any:
    env = manage.scenario_env(db or manage.database_entry(), config)
    return manage.run(env, *args)


@pytest.mark.django_db
@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("case", sorted(BAD_SETTINGS))
def test_bad_setting__documented_exit_code_and_no_traceback(command: str, case: str) -> None:
    result = _run(COMMANDS[command], config=BAD_SETTINGS[case])
    key = next(iter(BAD_SETTINGS[case]))
    assert result.returncode == BAD_SETTING_EXIT[command], result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert key in result.stderr, result.stderr


@pytest.mark.django_db
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_unreachable_server__exit_code_and_one_line(command: str) -> None:
    db = {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "nowhere",
        "USER": "postgres",
        "HOST": "127.0.0.1",
        "PORT": "1",
        "OPTIONS": {"connect_timeout": 2},
    }
    result = _run(COMMANDS[command], config={}, db=db)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 2, result.stdout + result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


@pytest.mark.django_db
@pytest.mark.parametrize("command", ["check", "stats", "repair"])
@pytest.mark.parametrize("bad", [["--database", "nope"], ["no_such_app"]])
def test_unknown_alias_or_app__exit_2(command: str, bad: list[str]) -> None:
    result = _run([COMMANDS[command][0], *bad], config={})
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
