"""Swap disks for `ballast run --swap SIZE`: a temporary image made by the real mkswap."""
import os

from .errors import BallastError

MIN_SWAP = 64 << 10
MAX_SWAP = 64 << 30                  # a sparse file; more than the host's file systems may take


def make_swap_image(size: int) -> str:
    """A new swap image of `size` bytes in the temporary directory; the caller deletes it."""
    if size < MIN_SWAP or size % 4096:
        raise BallastError(f"--swap must be a multiple of 4K and at least {MIN_SWAP >> 10}K")
    if size > MAX_SWAP:
        raise BallastError(f"--swap: at most {MAX_SWAP >> 30}G")
    import shutil                       # here: only a swap disk needs them (start-up time)
    import subprocess
    import tempfile
    mkswap = shutil.which("mkswap") or next((p for p in ("/sbin/mkswap", "/usr/sbin/mkswap")
                                             if os.path.exists(p)), None)
    if mkswap is None:
        raise BallastError("mkswap not found: install util-linux")
    fd, path = tempfile.mkstemp(prefix="ballast-swap-", suffix=".img")
    try:
        os.ftruncate(fd, size)
    except OSError as e:
        os.unlink(path)
        raise BallastError(f"--swap: cannot make a {size >> 20} MiB image: {e.strerror}") from None
    finally:
        os.close(fd)
    proc = subprocess.run([mkswap, "-q", path], capture_output=True, text=True)
    if proc.returncode != 0:
        os.unlink(path)
        raise BallastError(f"mkswap failed: {(proc.stderr or proc.stdout).strip().splitlines()[-1:]}")
    return path
