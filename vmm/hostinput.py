"""Checks of what a user hands the VMM from the host side (files, output paths, the kernel command
line, disk counts, times), shared by `ballast run`, scenarios and Machine. Each raises a
BallastError whose text names the option or key, before anything boots."""
import math
import os
import shlex
import stat

from .errors import BallastError

DISK_LETTERS = "abcdefghijklmnopqrstuvwxyz"
MAX_DISKS = len(DISK_LETTERS)           # vda..vdz
MAX_GUEST_SECONDS = 1_000_000           # a timeout or a sleep: ~11.6 days of guest time at most

_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISDIR, "a directory"))


def disk_name(index: int) -> str:
    """The kernel's name for the index-th virtio disk: vda, vdb, ..."""
    if not 0 <= index < MAX_DISKS:
        raise BallastError(f"too many disks: at most {MAX_DISKS} (vda to vdz)")
    return "vd" + DISK_LETTERS[index]


def check_disk_count(count: int, what: str = "--disk") -> None:
    if count > MAX_DISKS:
        raise BallastError(f"{what}: {count} disks, at most {MAX_DISKS} (vda to vdz)")


def regular_file(path: str, what: str, allow_dir: bool = False) -> str:
    """path names a regular file (or, with allow_dir, a directory) that exists. A FIFO, socket or
    device would block on open or read, or change under us: refused. Returns path."""
    try:
        st = os.stat(path)
    except OSError as e:
        raise BallastError(f"{what}: {path}: {e.strerror}") from None
    except ValueError:                  # a NUL in the name (from a file, not a shell)
        raise BallastError(f"{what}: {path}: a file name cannot hold NUL") from None
    if stat.S_ISREG(st.st_mode) or (allow_dir and stat.S_ISDIR(st.st_mode)):
        return path
    kind = next((name for test, name in _KINDS if test(st.st_mode)), "not a regular file")
    wanted = "a regular file or a directory" if allow_dir else "a regular file"
    raise BallastError(f"{what}: {path}: is {kind}, not {wanted}")


def read_regular_file(path: str, what: str, max_size: int = None) -> bytes:
    """The contents of a regular file, opened without blocking (a FIFO swapped in after the check
    cannot hang us) and checked again on the open descriptor; larger than max_size is refused
    before it is read."""
    regular_file(path, what)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise BallastError(f"{what}: {path}: {e.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise BallastError(f"{what}: {path}: is not a regular file")
        if max_size is not None and st.st_size > max_size:
            raise BallastError(f"{what}: {path}: {st.st_size >> 20} MiB does not fit in {max_size >> 20} MiB of RAM")
        try:
            return f.read()
        except OSError as e:
            raise BallastError(f"{what}: {path}: {e.strerror}") from None


def output_file(path: str, what: str) -> None:
    """An output (`-` is stdout) must go into a directory that exists, and not be a directory."""
    if path in (None, "", "-"):
        return
    directory = os.path.dirname(path) or "."
    if not os.path.isdir(directory):
        raise BallastError(f"{what}: directory '{directory}' does not exist")
    if not os.access(directory, os.W_OK):
        raise BallastError(f"{what}: directory '{directory}' is not writable")
    if os.path.isdir(path):
        raise BallastError(f"{what}: '{path}' is a directory")


def kernel_cmdline(cmdline: str, ram_bytes: int, what: str = "--cmdline") -> None:
    """The kernel's own check of its command line (guestos.kernel.cmdline), run on the host first."""
    from guestos.kernel.cmdline import ParamError, check_cmdline
    if "\0" in cmdline:
        raise BallastError(f"{what}: holds a NUL character")
    try:
        cmdline.encode()
    except UnicodeEncodeError:
        raise BallastError(f"{what}: not UTF-8 text") from None
    try:
        check_cmdline(cmdline, ram_bytes)
    except ParamError as e:
        raise BallastError(f"{what}: {e}") from None
    if "--" in shlex.split(cmdline):    # the VMM puts the program's arguments after its own '--'
        raise BallastError(f"{what}: '--' ends the kernel's options; the program's arguments go after PROGRAM")


def guest_arguments(args: list, what: str = "ARGS") -> None:
    """Program arguments travel on the kernel command line as UTF-8 text."""
    for arg in args:
        try:
            arg.encode()
        except UnicodeEncodeError:
            raise BallastError(f"{what}: {arg.encode(errors='backslashreplace').decode()}: not UTF-8 text") \
                from None


def guest_seconds(value, what: str, allow_zero: bool = False) -> float:
    """A duration in seconds of guest time: a finite number, positive (or 0 if allowed), bounded."""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise BallastError(f"{what}: '{value}' is not a number of seconds") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BallastError(f"{what}: must be a number of seconds")
    if not math.isfinite(value):
        raise BallastError(f"{what}: must be a finite number of seconds, not {value}")
    if value < 0 or (value == 0 and not allow_zero):
        raise BallastError(f"{what}: must be {'at least 0' if allow_zero else 'positive'}, not {value:g}")
    if value > MAX_GUEST_SECONDS:
        raise BallastError(f"{what}: at most {MAX_GUEST_SECONDS} s of guest time, not {value:g}")
    return value


def cost_overrides(specs: list, what: str = "--cost") -> dict:
    """`--cost NAME=VALUE` options as {name: value} for guestos.kernel.costs.CostModel: a known name,
    a number (a whole number of ns, or a positive float for cpu_ghz and cpi)."""
    from dataclasses import fields
    from guestos.kernel.costs import CostModel
    types = {f.name: f.type for f in fields(CostModel)}
    out = {}
    for spec in specs:
        name, sep, text = spec.partition("=")
        if not sep:
            raise BallastError(f"{what} {spec}: expected NAME=VALUE")
        if name not in types:
            raise BallastError(f"{what} {spec}: unknown cost (known: {', '.join(types)})")
        try:
            value = float(text) if types[name] in (float, "float") else int(text, 10)
        except ValueError:
            kind = "a number" if types[name] in (float, "float") else "a whole number of nanoseconds"
            raise BallastError(f"{what} {spec}: not {kind}") from None
        if value < 0 or value > 10**12 or (types[name] in (float, "float") and not value > 0):
            raise BallastError(f"{what} {spec}: out of range")
        out[name] = value
    return out
