"""`ballast mkdisk`: an ext2 image of a host directory, made by the real mke2fs -d."""
import os
import shutil
import subprocess

from .errors import BallastError

MIN_IMAGE = 8 << 20
BLOCK_SIZE = 4096


def tree_bytes(path: str) -> tuple[int, int]:
    """(bytes of file data rounded to blocks, number of entries) under path."""
    total, entries = 0, 0
    for root, dirs, files in os.walk(path):
        entries += len(dirs) + len(files)
        for name in files:
            try:
                size = os.lstat(os.path.join(root, name)).st_size
            except OSError:
                continue
            total += -(-size // BLOCK_SIZE) * BLOCK_SIZE
    return total, entries


def default_size(path: str) -> int:
    """Room for the files, their metadata and as much again free, in whole MiB."""
    data, entries = tree_bytes(path)
    size = max(MIN_IMAGE, 2 * data + entries * 2 * BLOCK_SIZE + (4 << 20))
    return -(-size // (1 << 20)) << 20


def mkdisk(directory: str, image: str, size: int = None) -> int:
    if not os.path.isdir(directory):
        raise BallastError(f"{directory}: not a directory")
    mke2fs = shutil.which("mke2fs") or shutil.which("mkfs.ext2") or \
        next((p for p in ("/sbin/mke2fs", "/usr/sbin/mke2fs") if os.path.exists(p)), None)
    if mke2fs is None:
        raise BallastError("mke2fs not found: install e2fsprogs")
    if size is None:
        size = default_size(directory)
    if size < MIN_IMAGE or size % BLOCK_SIZE:
        raise BallastError(f"--size must be a multiple of 4K and at least {MIN_IMAGE >> 20}M")
    if os.path.lexists(image):
        from .hostinput import regular_file
        regular_file(image, "IMG")      # a FIFO would block the open; a device would be overwritten
    try:
        with open(image, "wb") as f:
            f.truncate(size)
    except OSError as e:
        raise BallastError(f"{image}: {e.strerror}") from None
    proc = subprocess.run([mke2fs, "-q", "-F", "-t", "ext2", "-b", str(BLOCK_SIZE), "-E", "root_owner=0:0",
                           "-d", directory, image, f"{size // 1024}k"], capture_output=True, text=True)
    if proc.returncode != 0:
        os.unlink(image)
        lines = [ln for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()]
        raise BallastError(f"mke2fs failed: {lines[-1] if lines else 'exit status %d' % proc.returncode}")
    return size
