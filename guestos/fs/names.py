"""File names are bytes, as on Linux: whatever a disk or a program gives, the program gets back.

Paths the kernel keeps for itself (a task's cwd and executable, an open file's name) are str decoded
with surrogateescape, which maps every byte string to a str and back to the same bytes; these two
functions are the only way across."""


def fs_decode(name: bytes) -> str:
    return name.decode("utf-8", "surrogateescape")


def fs_encode(name: str) -> bytes:
    return name.encode("utf-8", "surrogateescape")
