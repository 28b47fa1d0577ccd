"""Sizes and numbers as a user writes them ("256M", 1.5), checked; errors name the key to blame."""
import math

from guestos.kernel.cmdline import memparse

from .errors import BallastError

PAGE_SIZE = 4096
MiB = 1 << 20


def parse_size(text: str, what: str) -> int:
    """A size with an optional K/M/G/T suffix, as Linux's memparse() reads it."""
    try:
        return memparse(text)
    except ValueError:
        raise BallastError(f"{what}: cannot read '{text}' as a size (examples: 512M, 1G, 65536K)") from None


def size_value(value, what: str) -> int:
    """A positive size given as a string ("256M") or a number of bytes."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise BallastError(f"{what}: must be a size such as \"256M\", not {toml_type(value)}")
    size = value if isinstance(value, int) else parse_size(value.strip(), what)
    if size <= 0:
        raise BallastError(f"{what}: must be positive, not {value!r}")
    return size


def number_value(value, what: str, minimum=None, maximum=None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BallastError(f"{what}: must be a number, not {toml_type(value)} ({short_repr(value)})")
    if not math.isfinite(value):
        raise BallastError(f"{what}: must be a finite number, not {value}")
    if minimum is not None and value < minimum:
        raise BallastError(f"{what}: must be at least {minimum}, not {value:g}")
    if maximum is not None and value > maximum:
        raise BallastError(f"{what}: must be at most {maximum}, not {value:g}")
    return value


def short_repr(value) -> str:
    """A value for a one-line message: repr, cut short."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def typed_value(value, kind, what: str, noun: str):
    if not isinstance(value, kind):
        raise BallastError(f"{what}: must be {noun}, not {toml_type(value)}")
    return value


def toml_type(value) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "an array",
            dict: "a table"}.get(type(value), type(value).__name__)


def mib_text(size: int) -> str:
    return f"{size / MiB:g} MiB"
