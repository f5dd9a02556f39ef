"""The exception hierarchy. Every error carries a one-line message and a hint that says
what to do; its class decides the exit code (mapped in one place, ``cli.main``)."""

from __future__ import annotations


class SyncctlError(Exception):
    """Base class: a message for the operator and a hint with the fix."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class UsageError(SyncctlError):
    """Bad input: an option, a name, an interval, a URL."""

    exit_code = 2


class DatabaseError(SyncctlError):
    """The database cannot be opened or is not a syncctl database."""

    exit_code = 3


class BusyError(SyncctlError):
    """The integration is being synced by another process right now."""

    exit_code = 75


class SyncError(SyncctlError):
    """A sync failed. ``retryable`` faults are retried within the sync (backoff) and
    across runs; ``retry_after`` is the earliest time, in seconds from now, the source
    asked us to come back."""

    def __init__(
        self,
        message: str,
        hint: str | None = None,
        *,
        retryable: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, hint)
        self.retryable = retryable
        self.retry_after = retry_after
