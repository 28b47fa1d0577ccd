"""Errors a user can cause: the CLI prints them as one line and exits non-zero."""


class BallastError(Exception):
    """A mistake in what the user asked for (bad option, bad file, bad image)."""
