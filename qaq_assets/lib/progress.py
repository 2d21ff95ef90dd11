"""How far a long stage is, on the terminal: a live line on a TTY, plain lines through a pipe.

Each stage (ingest, scoring a model, curation) says when it starts, at least every
``interval`` seconds while it runs, even while nothing advances (a model loading, a first pass
compiling: a ticker redraws it), and when it ends: what is done of the total, the rate and the
time left. Rate and time left are measured from the first unit done, so the start-up (loading,
compiling) does not inflate the estimate.
"""

from __future__ import annotations

import sys
import threading
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
    done: int | None = 0
    note: str = ""
    # When the first unit was done, and how many were by then: the rate is measured from there.
    rate_from: tuple[float, int] | None = None


class TerminalProgress:
    """Stages' progress lines on ``stream`` (default: the real stderr, which Dagster does not
    capture)."""

    def __init__(self, stream: TextIO | None = None, interval: float = PLAIN_INTERVAL_SECONDS):
        self.stream = stream or sys.__stderr__
        self.live = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval = LIVE_INTERVAL_SECONDS if self.live else interval
        self.stages: dict[str, _Stage] = {}
        self._lock = threading.RLock()
        self._ticker: threading.Thread | None = None

    def start(self, stage: str, total: int | None, unit: str = "", note: str = "") -> None:
        """A stage begins: ``total`` units to do (None: a stage without a count)."""
        with self._lock:
            self.stages[stage] = _Stage(total, unit)
            self._show(stage, 0, note, force=True)
            if self.interval > 0 and (self._ticker is None or not self._ticker.is_alive()):
                self._ticker = threading.Thread(target=self._tick, name="progress-ticker", daemon=True)
                self._ticker.start()

    def update(self, stage: str, done: int, note: str = "") -> None:
        with self._lock:
            if stage in self.stages:
                self._show(stage, done, note)

    def finish(self, stage: str, done: int | None = None, note: str = "") -> None:
        with self._lock:
            if stage not in self.stages:
                return
            state = self.stages[stage]
            self._show(stage, state.total if done is None else done, note, force=True, final=True)
            if self.live:
                self._write("\n")
            del self.stages[stage]

    def _tick(self) -> None:
        """Redraw every stage that has said nothing for an interval; ends with the last stage."""
        while True:
            time.sleep(min(max(self.interval, 0.1), 1.0))
            with self._lock:
                if not self.stages:
                    return
                now = time.monotonic()
                for stage, state in list(self.stages.items()):
                    if now - state.shown >= self.interval:
                        self._show(stage, state.done, state.note, force=True)

    def _show(self, stage: str, done: int | None, note: str, force: bool = False, final: bool = False) -> None:
        state = self.stages[stage]
        now = time.monotonic()
        state.done, state.note = done, note
        if done and state.rate_from is None:
            state.rate_from = (now, done)  # the first unit's start-up (a model load) is not the rate
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
        if state.total is not None and done and state.rate_from is not None:
            since, before = state.rate_from
            if done > before and now > since:
                rate = (done - before) / (now - since)
                parts.append(f"{rate:,.1f} {state.unit}/s")
                if done < state.total:
                    parts.append(f"ETA {duration((state.total - done) / rate)}")
            elif done < state.total:
                parts.append("ETA after the next update")
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
