"""Stop signals for long commands: which one arrived, whoever's handler ran for it."""

from __future__ import annotations

import signal
import socket
import threading

from qaq_assets.lib.errors import Interrupted


class SignalWatch:
    """Which stop signal (SIGINT, SIGTERM) arrived, whoever's handler ran for it.

    Python writes every handled signal's number to the wakeup file descriptor before any
    handler runs; a thread reads it. Dagster swaps the handlers during a run (and maps
    SIGTERM to its SIGINT handler), so a handler alone cannot be trusted to see the signal."""

    STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signum: int | None = None
        self._reader, self._writer = socket.socketpair()
        self._writer.setblocking(False)
        self._previous_fd: int | None = None
        self._previous_handlers: dict[int, object] = {}

    def __enter__(self) -> SignalWatch:
        if threading.current_thread() is not threading.main_thread():
            return self  # signals reach only the main thread; nothing to watch here
        self._previous_fd = signal.set_wakeup_fd(self._writer.fileno(), warn_on_full_buffer=False)
        for signum in self.STOP_SIGNALS:
            self._previous_handlers[signum] = signal.signal(signum, self._handle)
        threading.Thread(target=self._read, daemon=True, name="qaq-signal-watch").start()
        return self

    def __exit__(self, *_exc) -> None:
        if self._previous_fd is None:  # never watched (not the main thread): no reader thread either
            self._reader.close()
            self._writer.close()
            return
        signal.set_wakeup_fd(self._previous_fd)
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler)
        self._writer.close()

    def _handle(self, signum: int, _frame) -> None:
        # Outside a Dagster run: stop right here (the runner turns this into Interrupted).
        self.signum = self.signum or signum
        raise Interrupted(signum)

    def _read(self) -> None:
        try:
            while data := self._reader.recv(64):
                for signum in data:
                    if signum in self.STOP_SIGNALS and self.signum is None:
                        self.signum = signum
        except OSError:
            pass
        finally:
            self._reader.close()  # the writer closed on exit: nothing more will arrive

    def check(self) -> None:
        """Raise :class:`Interrupted` if a stop signal has arrived."""
        if self.signum is not None:
            raise Interrupted(self.signum)
