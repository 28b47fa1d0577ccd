"""Errors a user can cause: the CLI prints them as one line and exits non-zero."""


def one_line(text: str) -> str:
    """A message as one printable line: newlines, other control characters and undecodable bytes
    (surrogates) that came in with a user's key, value or file name are shown escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))


class BallastError(Exception):
    """A mistake in what the user asked for (bad option, bad file, bad image)."""


class MachineStopped(BaseException):
    """The VMM stopped the machine (a balloon violation in stop mode, a timeout); not a user error.
    A BaseException, so that no `except Exception` on the guest kernel's side can swallow it."""
