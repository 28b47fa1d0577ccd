"""Root file systems for `ballast run --root`: an ext2 image as given, or one made from a
directory with mke2fs -d and cached between runs (keyed by the directory's contents)."""
import os
from pathlib import Path

from guestos.sha256 import sha256

from .errors import BallastError
from .firmware import program_path
from .hostinput import regular_file

EXT2_MAGIC_OFFSET = 1024 + 56
EXT2_SUPER_MAGIC = b"\x53\xef"


def cache_dir() -> Path:
    base = os.environ.get("BALLAST_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "ballast")
    return Path(base) / "roots"


def tree_digest(path: str) -> str:
    """Names, modes, sizes and mtimes of everything under path: what makes an image stale."""
    h = sha256()
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(dirs + files):
            full = os.path.join(root, name)
            st = os.lstat(full)
            h.update(f"{os.path.relpath(full, path)}\0{st.st_mode}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:24]


BUILTIN_PROGRAMS = ("hello", "memhog", "compute", "seqread", "randread", "mmapread", "writer", "mixed",
                    "vdread", "vdwrite", "vdsha256")


def builtin_spec(spec: str) -> int | None:
    """The source tree size of a built-in root spec: 0 for "builtin", N for "builtin:SIZE" (a
    /tree of SIZE bytes for a build at a real machine's scale, e.g. "builtin:3G"); None if the spec
    names no built-in root."""
    if spec == "builtin":
        return 0
    if not spec.startswith("builtin:"):
        return None
    from .units import parse_size
    size = parse_size(spec[len("builtin:"):], "root")
    if size <= 0 or size > MAX_TREE:
        raise BallastError(f"root: {spec}: the tree must be between 1 byte and {MAX_TREE >> 30} GiB")
    return size


MAX_TREE = 64 << 30


def builtin_root(extra_programs: dict = None, tree_bytes: int = 0) -> str:
    """The built-in root: our workload programs in /bin, and /data and /src made by mkdata;
    `extra_programs` ({name: ELF bytes}) go to /bin beside them; with tree_bytes, mkdata's /tree
    of that many bytes too (built once and kept: a few GB take a minute)."""
    images = cache_dir()
    extra = dict(sorted((extra_programs or {}).items()))
    programs = {name: program_path(name) for name in BUILTIN_PROGRAMS + ("mkdata",)}
    # hashing ~10 MB of programs costs more than a small guest's boot: a note keyed by their
    # stat() says which image their contents made last time
    note = None if extra else _stat_note(images, list(programs.values()), tree_bytes)
    if note is not None and note.exists():
        image = images / note.read_text()
        if image.exists():
            return str(image)
    h = sha256()
    for name, path in programs.items():
        h.update(name.encode() + b"\0" + path.read_bytes())
    for name, data in extra.items():
        h.update(b"extra\0" + name.encode() + b"\0" + data)
    if tree_bytes:
        h.update(f"tree\0{tree_bytes}".encode())
    image = images / f"builtin-{h.hexdigest()[:24]}.img"
    if image.exists():
        _write_note(note, image.name)
        return str(image)
    import shutil                       # lazily (i13-perf): only building an image needs these
    import subprocess
    import tempfile
    from .mkdisk import mkdisk
    images.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=images) as staging:
        tree = Path(staging) / "root"
        (tree / "bin").mkdir(parents=True)
        for name in BUILTIN_PROGRAMS:
            shutil.copy(programs[name], tree / "bin" / name)
            (tree / "bin" / name).chmod(0o755)
        for name, data in extra.items():
            (tree / "bin" / name).write_bytes(data)
            (tree / "bin" / name).chmod(0o755)
        # run a private copy: an installed package need not keep the executable bit
        mkdata = Path(staging) / "mkdata"
        shutil.copy(programs["mkdata"], mkdata)
        mkdata.chmod(0o755)
        proc = subprocess.run([str(mkdata), str(tree)] + ([str(tree_bytes)] if tree_bytes else []),
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise BallastError(f"building the built-in root: mkdata failed: {proc.stderr.strip()}")
        (tree / "tmp").mkdir()
        tmp = image.with_suffix(f".tmp{os.getpid()}")
        mkdisk(str(tree), str(tmp))
        os.replace(tmp, image)
    _write_note(note, image.name)
    return str(image)


def _stat_note(images: Path, paths, tree_bytes: int = 0) -> Path | None:
    h = sha256(b"stat-note-1\0")
    if tree_bytes:
        h.update(f"tree\0{tree_bytes}\n".encode())
    for path in paths:
        try:
            st = os.stat(path)
        except (OSError, TypeError):
            return None
        h.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ino}\n".encode())
    return images / f"builtin-stat-{h.hexdigest()[:24]}"


def _write_note(note: Path | None, name: str) -> None:
    if note is None:
        return
    try:
        note.parent.mkdir(parents=True, exist_ok=True)
        tmp = note.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(name)
        os.replace(tmp, note)
    except OSError:
        pass                    # only a shortcut


def root_image(spec: str) -> str:
    tree = builtin_spec(spec)
    if tree is not None:
        return builtin_root(tree_bytes=tree)
    if os.path.isdir(spec):
        images = cache_dir()
        images.mkdir(parents=True, exist_ok=True)
        image = images / f"{tree_digest(spec)}.img"
        if not image.exists():
            tmp = image.with_suffix(f".tmp{os.getpid()}")
            from .mkdisk import mkdisk
            mkdisk(spec, str(tmp))
            os.replace(tmp, image)
        return str(image)
    regular_file(spec, "--root", allow_dir=True)      # a FIFO or a device would block or change
    try:
        with open(spec, "rb") as f:
            f.seek(EXT2_MAGIC_OFFSET)
            magic = f.read(2)
    except OSError as e:
        raise BallastError(f"--root {spec}: {e.strerror}") from None
    if magic != EXT2_SUPER_MAGIC:
        raise BallastError(f"--root {spec}: not a directory or an ext2 image")
    return spec
