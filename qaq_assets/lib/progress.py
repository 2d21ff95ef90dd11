"""How far a long stage is, on the terminal: a live line on a TTY, plain lines through a pipe.

Each stage (ingest, scoring a model, curation) says when it starts, at least every
``interval`` seconds while it runs (a live line on a terminal is redrawn at most twice a
second), and when it ends: what is done of the total, the rate and the time left.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import TextIO

PLAIN_INTERVAL_SECONDS = 10.0
LIVE_INTERVAL_SECONDS = 0.5


def duration(seconds: float) -> str:
    """``seconds`` as ``42s``, ``3m05s`` or ``1h02m``."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


@dataclass
class _Stage:
    total: int | None  # None: a stage without a count (says when it starts and ends)
    unit: str
    started: float = field(default_factory=time.monotonic)
    shown: float = 0.0
    last_line: str = ""


class TerminalProgress:
    """Stages' progress lines on ``stream`` (default: the real stderr, which Dagster does not
    capture)."""

    def __init__(self, stream: TextIO | None = None, interval: float = PLAIN_INTERVAL_SECONDS):
        self.stream = stream or sys.__stderr__
        self.live = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval = LIVE_INTERVAL_SECONDS if self.live else interval
        self.stages: dict[str, _Stage] = {}

    def start(self, stage: str, total: int | None, unit: str = "", note: str = "") -> None:
        """A stage begins: ``total`` units to do (None: a stage without a count)."""
        self.stages[stage] = _Stage(total, unit)
        self._show(stage, 0, note, force=True)

    def update(self, stage: str, done: int, note: str = "") -> None:
        if stage in self.stages:
            self._show(stage, done, note)

    def finish(self, stage: str, done: int | None = None, note: str = "") -> None:
        if stage not in self.stages:
            return
        state = self.stages[stage]
        self._show(stage, state.total if done is None else done, note, force=True, final=True)
        if self.live:
            self._write("\n")
        del self.stages[stage]

    def _show(self, stage: str, done: int | None, note: str, force: bool = False, final: bool = False) -> None:
        state = self.stages[stage]
        now = time.monotonic()
        if not force and now - state.shown < self.interval:
            return
        state.shown = now
        elapsed = now - state.started
        if state.total is None:
            parts = [f"{stage}: {'done' if final else 'running'}"]
        else:
            parts = [f"{stage}: {done:,}/{state.total:,} {state.unit}"]
        if note:
            parts.append(note)
        if state.total is not None and done and elapsed > 0:
            parts.append(f"{done / elapsed:,.1f} {state.unit}/s")
            if done < state.total:
                parts.append(f"ETA {duration(elapsed / done * (state.total - done))}")
        parts.append(f"{duration(elapsed)} elapsed")
        line = ", ".join(parts)
        if final and not self.live and line == state.last_line:
            return  # the last update already said it
        state.last_line = line
        self._write(f"\r\x1b[2K{line}" if self.live else f"{line}\n")

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):
            pass  # a closed terminal never stops the work
