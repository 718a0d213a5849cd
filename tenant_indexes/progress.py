"""What a build shows while it runs: its output, a progress bar or lines, the sampling thread.

Inside ``migrate`` the output goes to migrate's own stdout (found through the
``pre_migrate`` signal), after the ``Applying ...`` line that Django leaves open: the first
line of a build starts a new line, and every line the build writes ends with a newline, so
Django's ``OK`` lands on a line of its own and never on the progress bar.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.core.management.base import OutputWrapper
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models.signals import post_migrate, pre_migrate
from django.dispatch import receiver

from .buildcontrol import BlockingSession, BuildProgress, build_progress

logger = logging.getLogger(__name__)


class _LineTracker:
    """A stream that remembers whether its current line is open (no newline written yet).

    Wraps migrate's stdout so a build knows whether Django left its ``Applying ...`` line
    open; everything else is the wrapped stream's.
    """

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.line_open = False

    def write(self, text: str) -> Any:
        if text:
            self.line_open = not text.endswith("\n")
        return self.stream.write(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


@dataclass(frozen=True)
class BuildOutput:
    """Where a build reports what it does: a stream and the verbosity of the command.

    Attributes:
        stream: a Django ``OutputWrapper`` (a command's ``self.stdout``) or a text stream.
        verbosity: the command's verbosity; 0 prints nothing.
        inline: True inside ``migrate``, whose ``Applying ...`` line may still be open: a
            line is then started before the build's first one.
    """

    stream: Any
    verbosity: int = 1
    inline: bool = False

    def isatty(self) -> bool:
        isatty = getattr(self.stream, "isatty", None)
        return bool(isatty and isatty())

    def line_open(self) -> bool:
        """Someone else (Django's ``Applying ...``) left the current line open."""
        if not self.inline:
            return False
        tracker = getattr(self.stream, "_out", self.stream)
        return not isinstance(tracker, _LineTracker) or tracker.line_open

    def write(self, text: str, *, newline: bool = True) -> None:
        if newline and self.line_open():
            text = "\n" + text
        end = "\n" if newline else ""
        if isinstance(self.stream, OutputWrapper):
            self.stream.write(text, ending=end)
        else:
            self.stream.write(text + end)
        flush = getattr(self.stream, "flush", None)
        if flush:
            flush()


ProgressReporter = Callable[[BuildProgress], None]


def format_progress(index_name: str, sample: BuildProgress) -> str:
    """``idx_x: building index: scanning table 42%`` (no percent when the phase has none)."""
    percent = sample.percent
    text = f"{index_name}: {sample.phase}"
    if percent is not None:
        text += f" {percent:.0f}%"
    if sample.blocker is not None and sample.phase.startswith("waiting"):
        text += f" (waiting for pid {sample.blocker.pid})"
    return text


class ProgressBar:
    """A one-line progress bar redrawn in place, for an interactive terminal."""

    width = 30

    def __init__(self, output: BuildOutput, index_name: str) -> None:
        self.output = output
        self.index_name = index_name
        self.started = False
        self._last_len = 0

    def __call__(self, sample: BuildProgress) -> None:
        percent = sample.percent or 0.0
        filled = int(self.width * percent / 100)
        bar = "#" * filled + "-" * (self.width - filled)
        line = f"    [{bar}] {format_progress(self.index_name, sample)}"
        padding = " " * max(0, self._last_len - len(line))
        self._last_len = len(line)
        prefix = "\n" if (not self.started and self.output.line_open()) else "\r"
        self.started = True
        self.output.write(prefix + line + padding, newline=False)

    def close(self) -> None:
        """End the bar's line, so whatever comes next starts on a line of its own."""
        if self.started:
            self.output.write("", newline=True)


class ProgressLines:
    """One line per phase change or per ``interval`` seconds, for logs and CI output."""

    def __init__(
        self,
        output: BuildOutput,
        index_name: str,
        interval: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.output = output
        self.index_name = index_name
        self.interval = interval
        self.clock = clock
        self._last_phase: str | None = None
        self._last_time = float("-inf")

    def __call__(self, sample: BuildProgress) -> None:
        now = self.clock()
        if sample.phase == self._last_phase and now - self._last_time < self.interval:
            return
        self._last_phase, self._last_time = sample.phase, now
        self.output.write(f"    {format_progress(self.index_name, sample)}")

    def close(self) -> None:
        pass


def progress_reporter(
    output: BuildOutput | None, index_name: str, config: dict[str, Any]
) -> ProgressBar | ProgressLines | None:
    """The reporter for ``output``: a bar on a terminal, lines otherwise, none at verbosity 0.

    ``BUILD_PROGRESS`` forces ``"bar"``, ``"lines"`` or ``"off"``.
    """
    mode = config["BUILD_PROGRESS"]
    if output is None or output.verbosity < 1 or mode == "off":
        return None
    if mode == "bar" or (mode == "auto" and output.isatty()):
        return ProgressBar(output, index_name)
    return ProgressLines(output, index_name, float(config["BUILD_PROGRESS_INTERVAL"]))


class BuildMonitor(threading.Thread):
    """Samples the build's progress and blocker from a second connection while it runs."""

    poll_interval = 0.5
    stop_wait = 1.0

    def __init__(
        self, alias: str, build_pid: int, on_sample: ProgressReporter | None = None
    ) -> None:
        super().__init__(name=f"tenant_indexes build monitor {build_pid}", daemon=True)
        self.alias = alias
        self.build_pid = build_pid
        self.on_sample = on_sample
        self.last_blocker: BlockingSession | None = None
        self._stop_event = threading.Event()

    def run(self) -> None:
        # An independent connection: the build's own one is busy with the statement.
        connection = connections.create_connection(self.alias)
        try:
            while True:
                sample = build_progress(connection, self.build_pid)
                if sample is not None:
                    if sample.blocker is not None:
                        self.last_blocker = sample.blocker
                    if self.on_sample is not None:
                        self.on_sample(sample)
                if self._stop_event.wait(self.poll_interval):
                    return
        except Exception:  # the monitor must never break the build it watches
            logger.debug("progress monitor of pid %s stopped", self.build_pid, exc_info=True)
        finally:
            connection.close()

    def stop(self) -> None:
        """Stop sampling. Waits at most :attr:`stop_wait` seconds: a monitor still waiting
        for a connection (a full session pool) is left to end on its own, and the build
        never waits for it."""
        self._stop_event.set()
        self.join(self.stop_wait)


# migrate's verbosity and stdout, per database alias, from its pre_migrate signal: the
# operation API gives an operation only the schema editor, but pre_migrate carries both.
# pre_migrate and post_migrate are sent once per app, so both receivers are idempotent.
_migrate_output: dict[str, BuildOutput] = {}


def migrate_output(alias: str) -> BuildOutput | None:
    """The output of the ``migrate`` running on ``alias``, ``None`` outside one."""
    return _migrate_output.get(alias)


@receiver(pre_migrate, dispatch_uid="tenant_indexes.progress.remember_migrate_output")
def _remember_migrate_output(
    sender: Any, verbosity: int = 1, using: str = DEFAULT_DB_ALIAS, **kwargs: Any
) -> None:
    stream = kwargs.get("stdout") or OutputWrapper(sys.stdout)
    if isinstance(stream, OutputWrapper):
        # OutputWrapper writes to the stream it keeps in _out (not in django-stubs).
        if not isinstance(stream._out, _LineTracker):
            stream._out = _LineTracker(stream._out)  # type: ignore[attr-defined]
    elif not isinstance(stream, _LineTracker):
        stream = _LineTracker(stream)
    _migrate_output[using] = BuildOutput(stream=stream, verbosity=verbosity, inline=True)


@receiver(post_migrate, dispatch_uid="tenant_indexes.progress.forget_migrate_output")
def _forget_migrate_output(sender: Any, using: str = DEFAULT_DB_ALIAS, **kwargs: Any) -> None:
    output = _migrate_output.pop(using, None)
    if output is not None and isinstance(output.stream, OutputWrapper):
        tracker = output.stream._out
        if isinstance(tracker, _LineTracker):
            output.stream._out = tracker.stream
