"""Errors a user can act on: the command line prints their message as one line (exit 2)."""


class QaqError(Exception):
    """A failure caused by input or configuration, whose message says what to fix."""


class LakeError(QaqError, LookupError):
    """A lake, table or table version that does not exist."""


class Interrupted(Exception):
    """A stop signal (SIGINT, SIGTERM) ended the command; nothing further was published."""

    def __init__(self, signum: int):
        import signal

        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum


def one_line(error: BaseException) -> str:
    """``Type: the message's first line``: a failure as a log line or a fallback's reason."""
    message = str(error).strip()
    return f"{type(error).__name__}: {message.splitlines()[0]}" if message else type(error).__name__
