"""Errors a user can cause: the CLI prints them as one line and exits non-zero."""


class BallastError(Exception):
    """A mistake in what the user asked for (bad option, bad file, bad image)."""


class MachineStopped(BaseException):
    """The VMM stopped the machine (a balloon violation in stop mode, a timeout); not a user error.
    A BaseException, so that no `except Exception` on the guest kernel's side can swallow it."""
