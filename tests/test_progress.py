"""The build's progress display, and how its output sits in migrate's."""

from __future__ import annotations

import io
from typing import Any

import pytest
from django.core.management import call_command
from django.test.utils import override_settings

from tenant_indexes import buildcontrol
from tenant_indexes.progress import BuildOutput, ProgressBar, ProgressLines, progress_reporter
from tests.test_operations import seed_indexes_unapplied


def _sample(phase: str, done: int, total: int) -> buildcontrol.BuildProgress:
    return buildcontrol.BuildProgress(phase, total, done, 0, 0, 0, 0, blocker=None)


def test_progress_lines__one_line_per_phase_change_or_interval() -> None:
    now = [0.0]
    out = io.StringIO()
    lines = ProgressLines(BuildOutput(out), "idx_x", interval=10.0, clock=lambda: now[0])
    lines(_sample("building index: scanning table", 10, 100))
    now[0] = 5.0
    lines(_sample("building index: scanning table", 50, 100))  # too soon: skipped
    now[0] = 10.5
    lines(_sample("building index: scanning table", 90, 100))
    lines(_sample("waiting for old snapshots", 0, 0))  # phase change: printed at once
    assert out.getvalue().splitlines() == [
        "    idx_x: building index: scanning table 10%",
        "    idx_x: building index: scanning table 90%",
        "    idx_x: waiting for old snapshots",
    ]


def test_progress_bar__redraws_in_place() -> None:
    out = io.StringIO()
    bar = ProgressBar(BuildOutput(out), "idx_x")
    bar(_sample("building index: scanning table", 50, 100))
    bar.close()
    assert out.getvalue() == (
        "\r    [" + "#" * 15 + "-" * 15 + "] idx_x: building index: scanning table 50%\n"
    )


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("stream", "verbosity", "mode", "expected"),
    [
        (_Tty(), 1, "auto", ProgressBar),
        (io.StringIO(), 1, "auto", ProgressLines),
        (_Tty(), 0, "auto", type(None)),
        (io.StringIO(), 2, "off", type(None)),
        (io.StringIO(), 1, "bar", ProgressBar),
        (_Tty(), 1, "lines", ProgressLines),
    ],
)
def test_progress_reporter__bar_on_tty_lines_otherwise_nothing_at_verbosity_0(
    stream: Any, verbosity: int, mode: str, expected: type
) -> None:
    config = {"BUILD_PROGRESS": mode, "BUILD_PROGRESS_INTERVAL": 10.0}
    reporter = progress_reporter(BuildOutput(stream, verbosity), "idx_x", config)
    assert type(reporter) is expected


def test_migrate_output__build_lines_leave_djangos_ok_a_line_of_its_own() -> None:
    """Django's ``Applying ...`` line is ended before the bar; ``OK`` follows a closed line."""
    from django.core.management.base import OutputWrapper

    from tenant_indexes import progress

    out = io.StringIO()
    stdout = OutputWrapper(out)
    progress._remember_migrate_output(sender=None, verbosity=1, using="probe", stdout=stdout)
    try:
        output = progress.migrate_output("probe")
        assert output is not None and output.inline
        stdout.write("  Applying app.0002_indexes...", ending="")
        bar = ProgressBar(output, "idx_x")
        bar(_sample("building index: scanning table", 50, 100))
        bar.close()
        output.write('    built index "idx_x"')
        stdout.write(" OK")
    finally:
        progress._forget_migrate_output(sender=None, using="probe")
    assert out.getvalue() == (
        "  Applying app.0002_indexes...\n"
        "    [" + "#" * 15 + "-" * 15 + "] idx_x: building index: scanning table 50%\n"
        '    built index "idx_x"\n'
        " OK\n"
    )
    assert not isinstance(stdout._out, progress._LineTracker)  # migrate's stream is restored


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("mode", ["bar", "lines"])
def test_migrate_output__ok_is_not_glued_to_the_last_build_line(settings: Any, mode: str) -> None:
    with seed_indexes_unapplied():
        out = io.StringIO()
        config = {**getattr(settings, "TENANT_INDEXES", {}), "BUILD_PROGRESS": mode}
        with override_settings(TENANT_INDEXES=config):
            call_command("migrate", "tenant_indexes_helpdesk", stdout=out, no_color=True)
    text = out.getvalue()
    _, applying, rest = text.partition("Applying tenant_indexes_helpdesk.0002_tenant_indexes...")
    assert applying, text
    ours, ok, _ = rest.partition(" OK")
    assert ok and 'built index "' in ours, text
    assert ours.startswith("\n"), text  # the build's first line leaves Django's line
    assert ours.endswith("\n"), text  # and its last one is ended: OK stands alone
    assert all(line.strip() == "OK" for line in text.splitlines() if "OK" in line and "[" in line)
